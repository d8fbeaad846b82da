import { closeSync, fsyncSync, mkdirSync, openSync, renameSync, writeSync } from "node:fs";
import { join } from "node:path";
import { Latencies, type Summary } from "./stats.js";

/**
 * The write baseline: the plainest durable replace there is — open a temporary
 * file, write the bytes, fsync, close, rename — one file after the other, with
 * synchronous calls and nothing else (no directory fsync, no HTTP, no parsing).
 * Files rotate over `files` names, like the PUT scenario's applications.
 */
export function rawWriteLoop(directory: string, text: string, seconds: number, files = 50): Summary {
  mkdirSync(directory, { recursive: true });
  const bytes = Buffer.from(text);
  const latencies = new Latencies();
  const started = performance.now();
  const deadline = started + seconds * 1000;
  for (let index = 0; performance.now() < deadline; index++) {
    const before = performance.now();
    const path = join(directory, `raw-${index % files}@prod.json`);
    const temporary = `${path}.${index}`;
    const fd = openSync(temporary, "w", 0o644);
    writeSync(fd, bytes);
    fsyncSync(fd);
    closeSync(fd);
    renameSync(temporary, path);
    latencies.add(performance.now() - before);
  }
  return latencies.summary((performance.now() - started) / 1000);
}
