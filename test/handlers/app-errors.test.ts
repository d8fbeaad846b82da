import { Writable } from "node:stream";
import { pino } from "pino";
import { describe, expect, it } from "vitest";
import { logAppError } from "../../src/handlers/errors.js";

function capture() {
  const lines: { level: number; msg: string; code?: string }[] = [];
  const stream = new Writable({
    write(chunk: Buffer, _encoding, done) {
      lines.push(JSON.parse(chunk.toString()));
      done();
    },
  });
  return { lines, logger: pino({ level: "debug" }, stream) };
}

describe("errors after the answer started", () => {
  it("a client that hung up is a debug line, not a stack on stderr", async () => {
    const { lines, logger } = capture();
    logAppError(logger)(Object.assign(new Error("socket hang up"), { code: "ECONNRESET" }));
    await new Promise((resolve) => setImmediate(resolve));
    expect(lines).toEqual([expect.objectContaining({ level: 20, code: "ECONNRESET", msg: "client went away before the answer was sent" })]);
  });

  it("anything else is logged as an error with its stack", async () => {
    const { lines, logger } = capture();
    logAppError(logger)(new Error("boom"));
    await new Promise((resolve) => setImmediate(resolve));
    expect(lines).toEqual([expect.objectContaining({ level: 50, msg: "error after the answer started" })]);
  });
});
