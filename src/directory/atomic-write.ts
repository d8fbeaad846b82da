import { randomInt } from "node:crypto";
import { close, constants, fchmod, fsync, open, rename, unlink, write } from "node:fs";

export interface FileMode {
  readonly bits: number;
  /** When the process umask would take bits away from `bits` at open, an fchmod puts them back. */
  readonly umaskStripsBits: boolean;
}

/**
 * Replaces `path` with `text` atomically and durably: a temporary file beside
 * it, written, fsync'd, closed and renamed over the file. The directory fsync
 * that makes the rename durable is the caller's, so concurrent writers can
 * share one. On failure the temporary file is removed and `path` is untouched.
 *
 * Five system calls (six under a strict umask) where write-file-atomic 7
 * makes thirteen: it adds an lstat per path component (realpath), stat,
 * chown, chmod, and an unlink of the temporary file it has already renamed,
 * each through a freshly promisified function. Every call is a trip through
 * libuv's thread pool that costs the event loop 10-20 µs, which made the
 * event loop, not the disk, the limit on writes (see BENCHMARKS.md).
 *
 * `fsync: false` keeps the rename atomic (a reader sees the old file or the
 * new one, never half of one) without making the new one durable: for a
 * directory that is a copy of another registry and is rebuilt from it at start.
 */
export async function writeFileAtomically(path: string, text: string, mode: FileMode, { fsync: durable = true } = {}): Promise<void> {
  const temporary = temporaryPathFor(path);
  const fd = await call<number>((done) => open(temporary, CREATE_NEW, mode.bits, done));
  let isOpen = true;
  try {
    if (mode.umaskStripsBits) await call((done) => fchmod(fd, mode.bits, done));
    const bytes = Buffer.from(text);
    for (let written = 0; written < bytes.length; ) {
      written += await call<number>((done) => write(fd, bytes, written, bytes.length - written, null, done));
    }
    if (durable) await call((done) => fsync(fd, done));
    isOpen = false;
    await call((done) => close(fd, done));
    await call((done) => rename(temporary, path, done));
  } catch (error) {
    if (isOpen) await call((done) => close(fd, done)).catch(() => undefined);
    await call((done) => unlink(temporary, done)).catch(() => undefined);
    throw error;
  }
}

// O_EXCL: a temporary name is never shared, not even with a leftover from a crash.
const CREATE_NEW = constants.O_WRONLY | constants.O_CREAT | constants.O_EXCL;

let suffix = randomInt(2 ** 32);
/** `<file>.<uint32>`: never ends in `.json`, so Prometheus' `*.json` glob never reads one half-written. */
export function temporaryPathFor(path: string): string {
  suffix = (suffix + 1) % 2 ** 32;
  return `${path}.${suffix}`;
}

function call<T = void>(operation: (done: (error: NodeJS.ErrnoException | null, value?: T) => void) => void): Promise<T> {
  return new Promise((resolve, reject) => operation((error, value) => (error === null ? resolve(value as T) : reject(error))));
}
