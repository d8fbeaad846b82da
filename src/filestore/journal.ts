import { constants } from "node:fs";
import { lstat, open, readFile, rename, type FileHandle } from "node:fs/promises";
import { join } from "node:path";
import { DirectorySync } from "../directory/directory-sync.js";
import { removeIfPresent } from "../directory/directory.js";
import { StoreError } from "../errors.js";

/**
 * File mode's journal of renewals answered from memory (docs/heartbeats.md): every second, one
 * append and one fdatasync for the renewals of every group, instead of a deadlines file written
 * (file, fsync, rename, directory fsync) for each group. The deadlines files stay the state;
 * the journal only moves deadlines later, and is folded into them now and then (compaction).
 *
 * A record says "the persisted deadline of `target` in group `key` moved from `from` to `to`".
 * At start the records are replayed in order over the deadlines files, each only where the
 * deadline is still exactly `from`. That makes every record safe to replay whatever happened
 * after it: a later change of the group writes the group's deadlines file, which then holds
 * another value (the renewal itself, or a target made permanent, removed, or registered again
 * with a deadline computed anew, which would have to fall on the same millisecond), so the
 * records written before it no longer apply, and those written after it chain from it. No
 * ordering between the journal and the files is needed. Records of one group are only written
 * from its lane, each chained from what is durable, so a record never starts from one that
 * could still be lost; a torn last line is a renewal whose append had not been acknowledged.
 */

export interface JournalRecord {
  readonly key: string;
  readonly target: string;
  readonly from: number;
  readonly to: number;
}

/** The journal, in FILE_SD_DIRECTORY: never `*.json`, so Prometheus never reads it, and no group's name. */
export const JOURNAL_FILE = "renewals.journal";
/** The journal being folded into the deadlines files while a new one takes the appends. */
export const OLD_JOURNAL_FILE = "renewals.journal.old";

/** Past this size the journal is folded into the deadlines files (about a minute at 5,000 renewals a second). */
export const COMPACT_AT_BYTES = 16 * 1024 * 1024;

export class RenewalJournal {
  private handle: FileHandle | undefined;
  /** Appends, rotations and removals, one at a time, in order. */
  private queue: Promise<unknown> = Promise.resolve();
  private bytes = 0;
  /** The file may end in the middle of a line (a failed write, a crash): the next write starts a new one. */
  private torn = false;
  /** Groups with records in the current file: the ones a fold must write. */
  private touched = new Set<string>();
  /** Groups with records in the old file, while there is one (a fold not finished). */
  private oldTouched: ReadonlySet<string> | undefined;
  /** The append that has not started writing yet: what is appended meanwhile joins it. */
  private gathering: Batch | undefined;
  private readonly sync: DirectorySync;

  private constructor(readonly directory: string) {
    this.sync = new DirectorySync(directory);
  }

  /**
   * The records of both files (the old one first), in the order they were written, and the
   * journal to append to. Throws a StoreError when a journal's name holds something other than a
   * regular file (a FIFO would block the start, a symbolic link would write elsewhere).
   */
  static async open(directory: string): Promise<{ journal: RenewalJournal; records: JournalRecord[]; unreadable: number }> {
    const journal = new RenewalJournal(directory);
    const records: JournalRecord[] = [];
    let unreadable = 0;
    for (const name of [OLD_JOURNAL_FILE, JOURNAL_FILE]) {
      const path = join(directory, name);
      const found = await lstat(path).catch((error: NodeJS.ErrnoException) => (error.code === "ENOENT" ? undefined : Promise.reject(error)));
      if (found === undefined) continue;
      if (!found.isFile()) throw new StoreError(`${path} is not a regular file; it is the service's journal of renewals: move it away`);
      const text = await readFile(path, "utf8");
      const from = records.length;
      unreadable += parseInto(text, records);
      const keys = new Set(records.slice(from).map(({ key }) => key));
      if (name === OLD_JOURNAL_FILE) journal.oldTouched = keys;
      else {
        journal.touched = keys;
        journal.bytes = Buffer.byteLength(text);
        journal.torn = text !== "" && !text.endsWith("\n");
      }
    }
    return { journal, records, unreadable };
  }

  /** Bytes appended to the current file since it was started. */
  get size(): number {
    return this.bytes;
  }

  /**
   * Resolves once `records` are durable. Records appended while a write is under way go together
   * in the next one: one write and one fdatasync for all of them (group commit). Rejects when
   * that write failed; its bytes may be in the file all the same, so the caller must not chain
   * records from these ones (src/filestore/store.ts writes the group's deadlines file instead).
   */
  append(records: readonly JournalRecord[]): Promise<void> {
    let batch = this.gathering;
    if (batch === undefined) {
      const fresh = new Batch();
      batch = fresh;
      this.gathering = fresh;
      fresh.written = this.serially(async () => {
        if (this.gathering === fresh) this.gathering = undefined;
        await this.write(fresh.text);
        for (const key of fresh.keys) this.touched.add(key);
      });
    }
    batch.text += formatRecords(records);
    for (const { key } of records) batch.keys.add(key);
    return batch.written;
  }

  private async write(text: string): Promise<void> {
    const line = this.torn ? `\n${text}` : text;
    try {
      this.handle ??= await this.openForAppend();
      await this.handle.appendFile(line);
      await this.handle.datasync();
    } catch (error) {
      // Opened afresh for the next append: a handle that failed may stay failed.
      await this.handle?.close().catch(() => undefined);
      this.handle = undefined;
      this.torn = true;
      throw error;
    }
    this.torn = false;
    this.bytes += Buffer.byteLength(line);
  }

  /** Never follows a link nor waits for a FIFO's reader; the new name is made durable before the first record counts. */
  private async openForAppend(): Promise<FileHandle> {
    const { O_WRONLY, O_APPEND, O_CREAT, O_NOFOLLOW, O_NONBLOCK } = constants;
    const handle = await open(join(this.directory, JOURNAL_FILE), O_WRONLY | O_APPEND | O_CREAT | O_NOFOLLOW | O_NONBLOCK, 0o644);
    try {
      if (!(await handle.stat()).isFile()) throw new Error(`${JOURNAL_FILE} is not a regular file`);
      await this.sync.sync();
    } catch (error) {
      await handle.close().catch(() => undefined);
      throw error;
    }
    return handle;
  }

  /**
   * Starts a fold: the current file becomes the old one and new appends go to a new file;
   * resolves with the groups whose deadlines files must be written before `dropOld`. While an
   * old file is still there (a fold that did not finish), its groups again, and no rotation.
   */
  rotate(): Promise<ReadonlySet<string>> {
    return this.serially(async () => {
      if (this.oldTouched !== undefined) return this.oldTouched;
      await this.handle?.close();
      this.handle = undefined;
      await rename(join(this.directory, JOURNAL_FILE), join(this.directory, OLD_JOURNAL_FILE)).catch((error: NodeJS.ErrnoException) => {
        // Removed by someone else: nothing of it is left to fold.
        if (error.code !== "ENOENT") throw error;
      });
      // The old file exists from here on, whatever the directory fsync says: never rename onto it.
      this.oldTouched = this.touched;
      this.touched = new Set();
      this.bytes = 0;
      this.torn = false;
      await this.sync.sync();
      return this.oldTouched;
    });
  }

  /** Once every group of the old file has its deadlines file written: the old file goes. */
  dropOld(): Promise<void> {
    return this.serially(async () => {
      await removeIfPresent(join(this.directory, OLD_JOURNAL_FILE));
      this.oldTouched = undefined;
      await this.sync.sync();
    });
  }

  /** The groups with records in either file: what a fold of everything writes. */
  groups(): Set<string> {
    return new Set([...(this.oldTouched ?? []), ...this.touched]);
  }

  /** Once every deadline the records moved is in its deadlines file (at start, and at a clean stop): both files go. */
  clear(): Promise<void> {
    return this.serially(async () => {
      await this.handle?.close();
      this.handle = undefined;
      await removeIfPresent(join(this.directory, OLD_JOURNAL_FILE));
      await removeIfPresent(join(this.directory, JOURNAL_FILE));
      this.touched = new Set();
      this.oldTouched = undefined;
      this.bytes = 0;
      this.torn = false;
      await this.sync.sync();
    });
  }

  async close(): Promise<void> {
    await this.serially(async () => {
      await this.handle?.close();
      this.handle = undefined;
    });
  }

  private serially<T>(step: () => Promise<T>): Promise<T> {
    const run = this.queue.then(step, step);
    this.queue = run.catch(() => undefined);
    return run;
  }
}

class Batch {
  text = "";
  readonly keys = new Set<string>();
  written: Promise<void> = Promise.resolve();
}

/** One line per group: `[key, [target, from, to, target, from, to, …]]`; JSON, so any name is safe in it. */
function formatRecords(records: readonly JournalRecord[]): string {
  const byKey = new Map<string, (string | number)[]>();
  for (const { key, target, from, to } of records) {
    let line = byKey.get(key);
    if (line === undefined) byKey.set(key, (line = []));
    line.push(target, from, to);
  }
  let text = "";
  for (const [key, line] of byKey) text += `${JSON.stringify([key, line])}\n`;
  return text;
}

/** Appends the records of `text` to `into`; returns how many lines could not be read (a torn last line after a crash). */
export function parseInto(text: string, into: JournalRecord[]): number {
  let skipped = 0;
  for (const line of text.split("\n")) {
    if (line === "") continue;
    const records = parseLine(line);
    if (records === undefined) skipped++;
    else into.push(...records);
  }
  return skipped;
}

function parseLine(line: string): JournalRecord[] | undefined {
  let value: unknown;
  try {
    value = JSON.parse(line);
  } catch {
    return undefined;
  }
  if (!Array.isArray(value) || value.length !== 2) return undefined;
  const [key, flat] = value as unknown[];
  if (typeof key !== "string" || !Array.isArray(flat) || flat.length % 3 !== 0) return undefined;
  const records: JournalRecord[] = [];
  for (let i = 0; i < flat.length; i += 3) {
    const [target, from, to] = [flat[i], flat[i + 1], flat[i + 2]];
    // A record only ever moves a deadline later.
    if (typeof target !== "string" || !Number.isSafeInteger(from) || !Number.isSafeInteger(to) || (to as number) < (from as number)) return undefined;
    records.push({ key, target, from: from as number, to: to as number });
  }
  return records;
}

/**
 * The replay: each record, in order, where the persisted deadline is still exactly its `from`.
 * `persisted` is changed in place (the caller's copy); returns the groups whose deadlines moved.
 */
export function replay(records: readonly JournalRecord[], persisted: Map<string, Map<string, number>>): Set<string> {
  const moved = new Set<string>();
  for (const { key, target, from, to } of records) {
    const deadlines = persisted.get(key);
    if (deadlines?.get(target) !== from) continue;
    deadlines.set(target, to);
    moved.add(key);
  }
  return moved;
}
