import { mkdtemp, readFile, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { pino } from "pino";
import { afterEach, beforeEach, describe, expect, it } from "vitest";
import { Directory } from "../../src/directory/directory.js";
import { DirectoryView } from "../../src/directory/view.js";
import type { GroupId } from "../../src/model.js";

/**
 * The view's writes and re-reads are the worker thread's (src/directory/file-worker.ts). A
 * thread that dies is the one failure the view did not have before: the service must go on,
 * the writes it had must be tried again, and the next call starts a new thread.
 */
const group = (application: string): GroupId => ({ kind: "targets", application, environment: "prod" });
const text = (target: string): string => `${JSON.stringify([{ targets: [target], labels: {} }], null, 2)}\n`;

async function until(condition: () => Promise<boolean>, timeoutMs = 10_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!(await condition())) {
    if (Date.now() > deadline) throw new Error(`not true within ${timeoutMs} ms`);
    await new Promise((resolve) => setTimeout(resolve, 20));
  }
}

describe("the view's worker thread", () => {
  let path: string;
  let view: DirectoryView;
  beforeEach(async () => {
    path = await mkdtemp(join(tmpdir(), "file-worker-"));
    view = await DirectoryView.open(await Directory.open(path, pino({ level: "silent" })), pino({ level: "silent" }));
  });
  afterEach(async () => {
    await view.close();
    await rm(path, { recursive: true, force: true });
  });

  it("writes, removes and re-reads files", async () => {
    await view.mirror(group("a"), text("a:1"));
    expect(await readFile(join(path, "a@prod.json"), "utf8")).toBe(text("a:1"));
    expect(await view.check(group("a"))).toBe(false);
    await writeFile(join(path, "a@prod.json"), text("edited:1"));
    expect(await view.check(group("a"))).toBe(true);
    await view.mirror(group("a"), undefined);
    await expect(readFile(join(path, "a@prod.json"))).rejects.toMatchObject({ code: "ENOENT" });
  });

  it("starts a new thread after one died, and writes what the dead one had again", async () => {
    await view.mirror(group("a"), text("a:1"));
    const worker = view.directory.worker;
    expect(worker.started).toBe(1);
    await worker.kill();
    // The next call finds no thread and starts one.
    await view.mirror(group("a"), text("a:2"));
    expect(await readFile(join(path, "a@prod.json"), "utf8")).toBe(text("a:2"));
    expect(worker.started).toBe(2);

    // Killed with writes in flight: they fail (or were made), and the view tries the failed ones again.
    const writes = Array.from({ length: 50 }, (_, index) => view.mirror(group(`b${index}`), text(`b:${index}`)).then(() => "written", () => "failed"));
    await worker.kill();
    const outcomes = await Promise.all(writes);
    expect(outcomes.every((outcome) => outcome === "written" || outcome === "failed")).toBe(true);
    await until(async () => {
      const files = await Promise.all(writes.map((_, index) => readFile(join(path, `b${index}@prod.json`), "utf8").catch(() => "")));
      return files.every((file, index) => file === text(`b:${index}`)) && view.failing === 0;
    });
    // A re-read after the thread died finds an outside edit as before.
    await worker.kill();
    await writeFile(join(path, "b0@prod.json"), text("edited:1"));
    expect(await view.check(group("b0"))).toBe(true);
  });
});
