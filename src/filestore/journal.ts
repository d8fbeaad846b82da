import { open, readFile, rename, type FileHandle } from "node:fs/promises";
import { join } from "node:path";
import { DirectorySync } from "../directory/directory-sync.js";
import { removeIfPresent } from "../directory/directory.js";

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
 * another value (the renewal itself, or a target made permanent, removed or registered again),
 * so the records written before it no longer apply, and those written after it chain from it.
 * No ordering between the journal and the files is needed, and a torn last line is only a
 * renewal that was not yet acknowledged as persisted.
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
  /** Groups with records in the current file: the ones a compaction must write. */
  private touched = new Set<string>();
  /** Groups with records in the old file, while there is one (a compaction not finished). */
  private oldTouched: ReadonlySet<string> | undefined;
  /** The append that has not started writing yet: what is appended meanwhile joins it. */
  private gathering: Batch | undefined;
  private readonly sync: DirectorySync;

  private constructor(readonly directory: string) {
    this.sync = new DirectorySync(directory);
  }

  /** The records of both files (the old one first), in the order they were written, and the journal to append to. */
  static async open(directory: string): Promise<{ journal: RenewalJournal; records: JournalRecord[]; unreadable: number }> {
    const journal = new RenewalJournal(directory);
    const records: JournalRecord[] = [];
    let unreadable = 0;
    for (const name of [OLD_JOURNAL_FILE, JOURNAL_FILE]) {
      const text = await readFile(join(directory, name), "utf8").catch((error: NodeJS.ErrnoException) => {
        if (error.code === "ENOENT") return "";
        throw error;
      });
      unreadable += parseInto(text, records);
    }
    return { journal, records, unreadable };
  }

  /** Bytes appended to the current file since it was started. */
  get size(): number {
    return this.bytes;
  }

  /**
   * Resolves once `records` are durable. Records appended while a write is under way go together
   * in the next one: one write and one fdatasync for all of them (group commit).
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
    this.handle ??= await open(join(this.directory, JOURNAL_FILE), "a", 0o644);
    try {
      await this.handle.write(text);
      await this.handle.datasync();
    } catch (error) {
      // Opened afresh for the next append: a handle that failed may stay failed.
      await this.handle.close().catch(() => undefined);
      this.handle = undefined;
      throw error;
    }
    this.bytes += Buffer.byteLength(text);
  }

  /**
   * Starts a compaction: the current file becomes the old one and new appends go to a new file;
   * resolves with the groups whose deadlines files must be written before `dropOld`. When an old
   * file is still there (a compaction that did not finish), its groups again, and no rotation.
   */
  rotate(): Promise<ReadonlySet<string>> {
    return this.serially(async () => {
      if (this.oldTouched !== undefined) return this.oldTouched;
      await this.handle?.close();
      this.handle = undefined;
      await rename(join(this.directory, JOURNAL_FILE), join(this.directory, OLD_JOURNAL_FILE)).catch((error: NodeJS.ErrnoException) => {
        // Removed by someone else: nothing of it left to fold (its records were persisted in memory only).
        if (error.code !== "ENOENT") throw error;
      });
      await this.sync.sync();
      this.oldTouched = this.touched;
      this.touched = new Set();
      this.bytes = 0;
      return this.oldTouched;
    });
  }

  /** Once every group of the old file has its deadlines file written: the old file goes. */
  dropOld(): Promise<void> {
    return this.serially(async () => {
      await removeIfPresent(join(this.directory, OLD_JOURNAL_FILE));
      await this.sync.sync();
      this.oldTouched = undefined;
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
      await this.sync.sync();
      this.touched = new Set();
      this.oldTouched = undefined;
      this.bytes = 0;
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
    if (typeof target !== "string" || !Number.isSafeInteger(from) || !Number.isSafeInteger(to)) return undefined;
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
