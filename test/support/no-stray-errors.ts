import { afterEach } from "vitest";

/**
 * Every test file's setup (vitest.config.ts): a test fails when, while it ran,
 * the test process saw an unhandled rejection or an uncaught exception, or a
 * service it started as a child process logged one it caught (a line with
 * `bug: true`, test/support/child-service.ts). The service survives a bug in
 * a handler or a lane; tests make sure there is none to survive.
 */
const stray: string[] = [];
const installed = Symbol.for("file-sd-writer.no-stray-errors");
const registry = globalThis as { [installed]?: true };
if (registry[installed] === undefined) {
  registry[installed] = true;
  process.on("unhandledRejection", (reason) => stray.push(`unhandled rejection: ${describe(reason)}`));
  process.on("uncaughtExceptionMonitor", (error) => stray.push(`uncaught exception: ${describe(error)}`));
}

/** For test/support/child-service.ts: a child logged a bug it caught. */
export function childCaughtBug(line: string): void {
  stray.push(`a child service logged a bug: ${line}`);
}

afterEach(() => {
  const found = stray.splice(0);
  if (found.length > 0) throw new Error(`bugs surfaced during this test:\n${found.join("\n")}`);
});

function describe(error: unknown): string {
  return error instanceof Error ? (error.stack ?? error.message) : String(error);
}
