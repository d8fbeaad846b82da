import { describe, expect, it } from "vitest";
import { KeyTimers } from "../src/lanes.js";

const sleep = (ms: number): Promise<void> => new Promise((resolve) => setTimeout(resolve, ms));

/** The per-key timer of the stores' renewal flushes (src/lanes.ts), on the real clock. */
describe("KeyTimers", () => {
  it("keeps one timer per key: a second schedule while one is pending changes nothing; once it ran, the key can be scheduled again", async () => {
    const ran: string[] = [];
    const timers = new KeyTimers((key) => ran.push(key));
    timers.schedule("a", 30);
    timers.schedule("a", 1);
    timers.schedule("b", 1);
    await sleep(15);
    expect(ran).toEqual(["b"]);
    await sleep(40);
    expect(ran).toEqual(["b", "a"]);
    timers.schedule("a", 1);
    await sleep(20);
    expect(ran).toEqual(["b", "a", "a"]);
  });

  it("runNow runs the key at once and drops its pending timer; stop clears every timer and refuses new ones", async () => {
    const ran: string[] = [];
    const timers = new KeyTimers((key) => ran.push(key));
    timers.schedule("a", 20);
    timers.runNow("a");
    expect(ran).toEqual(["a"]);
    await sleep(40);
    expect(ran).toEqual(["a"]);
    timers.schedule("b", 10);
    timers.stop();
    timers.schedule("c", 1);
    await sleep(30);
    expect(ran).toEqual(["a"]);
  });
});
