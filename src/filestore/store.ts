import type { Logger } from "pino";
import { InternalError, StoreError } from "../errors.js";
import { DeadlinesTexts, parseDeadlines, serializeDeadlines } from "../directory/deadlines-file.js";
import { Directory, whyNot, type DirectoryObserver, type FileRead } from "../directory/directory.js";
import { parseGroupFile, serializeGroup } from "../directory/group-file.js";
import { deadlinesFileNameOf, fileNameOf } from "../directory/naming.js";
import { type LaneJob, Lanes } from "../lanes.js";
import { COMPACT_AT_BYTES, JOURNAL_FILE, OLD_JOURNAL_FILE, RenewalJournal, replay, type JournalRecord } from "./journal.js";
import { coveredBy, isRenewal, RENEWAL_FLUSH_MS, RENEWAL_SLACK_MS } from "../rules/registration.js";
import { deadlinesOf, idOfKey, keyOf, NO_DEADLINES, type Deadlines, type GroupId, type Registration, type TargetGroup } from "../model.js";
import type { Entry, Mutation, Outcome, Store } from "../store.js";

export type { Entry, Mutation, Outcome } from "../store.js";

/** Hooks for metrics; every one is optional. */
export interface StoreObserver extends DirectoryObserver {
  readFailed?(fileName: string): void;
  outsideChange?(fileName: string): void;
  /** A batch of changes threw: a bug, answered with a 500 (file_sd_internal_errors_total). */
  internalError?(): void;
  /** A renewal answered from memory (flushed later) or written before its answer (file_sd_renewals_total). */
  renewal?(mode: "memory" | "durable"): void;
  /** One write of a group's deadlines for the renewals acknowledged from memory (file_sd_renewal_flushes_total). */
  renewalFlushed?(): void;
}

export interface StoreOptions {
  /** FILE_SD_DIRECTORY. */
  readonly directory: string;
  readonly logger: Logger;
  readonly observer?: StoreObserver;
  /** The clock mutations are given (ms since the epoch); Date.now unless a test drives it. */
  readonly now?: () => number;
  /** RENEWAL_SLACK in ms (RENEWAL_SLACK_MS unless set). */
  readonly renewalSlackMs?: number;
}

type Job = LaneJob &
  (
    | { readonly kind: "mutation"; readonly id: GroupId; readonly mutation: Mutation; settle(outcome: Outcome | Error): void }
    | { readonly kind: "reload"; readonly id: GroupId; settle(): void }
    | { readonly kind: "fold"; readonly id: GroupId; settle(written: boolean): void }
    | { readonly kind: "flush"; readonly id: GroupId; settle(): void }
  );

/** How long a flush may be late (a slow disk) before renewals take the durable path again. */
const FLUSH_MARGIN_MS = RENEWAL_FLUSH_MS;
/** Groups taken into a flush before the event loop gets a turn. */
const FLUSH_CHUNK = 64;
/** A group whose renewals could not be journaled has its deadlines file written instead, tried again this often. */
const FAILED_FLUSH_RETRY_MS = 10_000;
/** After a fold that could not write every group, the next one waits this long. */
const FOLD_RETRY_MS = 60_000;
type MutationJob = Job & { kind: "mutation" };

/**
 * File mode: the directory is the registry. Memory holds what GET serves; every
 * change goes through the lane of its group: computed as a new value, written
 * to the directory (src/directory/directory.ts, in the crash order), and only
 * then swapped in and acknowledged. An outside edit of a managed file is read
 * back through the same lane.
 */
export class FileStore implements Store {
  private readonly entries = new Map<string, Entry>();
  /** Groups whose file is known not to hold what memory serves (an outside edit left it unreadable). */
  private readonly fileDiffers = new Set<string>();
  /**
   * Each group's persisted deadlines: its deadlines file as last loaded or written, moved later by
   * the renewals journal's records since. A renewal is answered from memory only when these cover it.
   */
  private readonly onDisk = new Map<string, Deadlines>();
  private readonly deadlinesTexts = new DeadlinesTexts();
  /** Groups whose memory holds renewals not yet persisted, with when (performance.now()) the first of them was answered. */
  private readonly dirty = new Map<string, number>();
  /**
   * Groups whose records could not be journaled, with when (performance.now()) their deadlines
   * file may be tried next: the failed append's bytes may be in the journal all the same, so no
   * record of theirs may chain from it. Their renewals are written to the deadlines file, before
   * the answer, until one such write succeeds.
   */
  private readonly flushFailures = new Map<string, number>();
  /** The next flush of every dirty group into the journal, while one is due. */
  private flushTimer: NodeJS.Timeout | undefined;
  /** The flushes under way (a slow disk can make two overlap), which a stop waits for. */
  private readonly flushRuns = new Set<Promise<void>>();
  /** A fold of the journal into the deadlines files, while one runs, and when the next may start. */
  private folding: Promise<void> | undefined;
  private nextFoldAt = 0;
  /** The last append to the journal failed (logged once until one works again). */
  private journalFailing = false;
  private closed = false;
  private readonly lanes = new Lanes<Job>(
    (key, jobs) => this.runBatch(key, jobs),
    (key, error) => this.batchFailed(key, error),
  );

  private constructor(
    readonly directory: Directory,
    private readonly journal: RenewalJournal,
    private readonly logger: Logger,
    private readonly observer: StoreObserver,
    readonly now: () => number,
    private readonly renewalSlackMs: number,
  ) {}

  /** Opens the directory (creating it if needed), removes crash leftovers and loads every managed file. */
  static async open({ directory, logger, observer = {}, now = Date.now, renewalSlackMs = RENEWAL_SLACK_MS }: StoreOptions): Promise<FileStore> {
    const opened = await Directory.open(directory, logger, observer);
    const { journal, records, unreadable } = await RenewalJournal.open(opened.path);
    const store = new FileStore(opened, journal, logger, observer, now, renewalSlackMs);
    const { groups, deadlines } = await store.directory.scan();
    for (const { id, read } of groups) store.accept(id, read, "load");
    for (const { id, read } of deadlines) store.acceptDeadlines(id, read);
    if (records.length > 0 || unreadable > 0) await store.replay(records, unreadable);
    store.restoreWithSlack();
    logger.info({ directory: store.directory.path, groups: store.entries.size }, "loaded file_sd directory");
    return store;
  }

  /**
   * At start, after a crash (a clean stop leaves no journal): the journal's records over the
   * deadlines files, written into them, then the journal goes.
   */
  private async replay(records: readonly JournalRecord[], unreadable: number): Promise<void> {
    const persisted = new Map([...this.onDisk].map(([key, deadlines]) => [key, new Map(deadlines)]));
    const moved = replay(records, persisted);
    for (const key of moved) this.onDisk.set(key, persisted.get(key)!);
    const written = await Promise.all([...moved].map((key) => this.writePersisted(key)));
    if (written.includes(false)) {
      // Kept: the records replayed stay right to replay again, and new ones chain from what they gave.
      this.logger.warn({ file: JOURNAL_FILE, records: records.length, groups: moved.size }, "renewals journal replayed, but not every deadlines file could be written; the journal is kept and folded later");
      return;
    }
    await this.journal.clear();
    this.logger.info({ records: records.length, groups: moved.size, unreadableLines: unreadable }, "renewals journal replayed into the deadlines files");
  }

  /**
   * Renewals answered from memory in the last moments before a crash may not have been
   * persisted, but none moved a deadline more than RENEWAL_SLACK_MS past the persisted one
   * (coveredBy): restoring every deadline that much later keeps each ttl a lower bound, and one
   * that had surely passed is still past, applied by the expiry at start.
   */
  private restoreWithSlack(): void {
    for (const [key, persisted] of this.onDisk) {
      const entry = this.entries.get(key);
      if (entry === undefined) continue;
      this.entries.set(key, { ...entry, expires: new Map([...persisted].map(([target, deadline]) => [target, deadline + this.renewalSlackMs])) });
    }
  }

  get(id: GroupId): TargetGroup | undefined {
    return this.entries.get(keyOf(id))?.group;
  }

  /** Every registered group, of both kinds, in no particular order. */
  list(): IterableIterator<Entry> {
    return this.entries.values();
  }

  get size(): number {
    return this.entries.size;
  }

  /** Applies `mutation` after every change queued before it; resolves once the result is on disk. */
  update(id: GroupId, mutation: Mutation): Promise<Outcome> {
    return new Promise((resolve, reject) => {
      this.lanes.push(keyOf(id), {
        kind: "mutation",
        id,
        mutation,
        settle: (outcome) => (outcome instanceof Error ? reject(outcome) : resolve(outcome)),
        fail: reject,
      });
    });
  }

  /** Re-reads one managed file after someone else changed it (the directory watch calls this). */
  reload(id: GroupId): Promise<void> {
    return new Promise((settle) => this.lanes.push(keyOf(id), { kind: "reload", id, settle, fail: () => settle() }));
  }

  /** Resolves once every queued change has been written and answered. */
  idle(): Promise<void> {
    return this.lanes.idle();
  }

  /**
   * At shutdown: the renewals not yet persisted go into the journal, and the journal into the
   * deadlines files, so that a directory left by a clean stop holds everything in its files.
   */
  async close(): Promise<void> {
    await this.lanes.idle();
    this.closed = true;
    clearTimeout(this.flushTimer);
    this.flushTimer = undefined;
    await Promise.all(this.flushRuns);
    // Twice: a group whose append fails in the first has its deadlines file written in the second.
    await this.flushAll(true);
    await this.flushAll(true);
    await this.folding;
    const written = await Promise.all([...this.journal.groups()].map((key) => this.pushFold(key)));
    await this.lanes.idle();
    if (written.includes(false)) {
      this.logger.warn({ file: JOURNAL_FILE }, "could not write every deadlines file the renewals journal holds; it is replayed at the next start");
      await this.journal.close();
    } else {
      await this.journal.clear();
    }
  }

  private scheduleFlush(): void {
    if (this.flushTimer !== undefined || this.closed) return;
    this.flushTimer = setTimeout(() => {
      this.flushTimer = undefined;
      const run = this.flushAll(false).finally(() => this.flushRuns.delete(run));
      this.flushRuns.add(run);
    }, RENEWAL_FLUSH_MS);
    this.flushTimer.unref();
  }

  /**
   * Every group's renewals answered from memory since the last flush, persisted at most a second
   * after the first of them: each group's records taken in its lane, all of them going into the
   * journal together (group commit: a write and an fdatasync per chunk of groups, not per
   * group). A few groups at a time, so that requests are not held up for the whole fleet's.
   * `all`: at a stop, failed groups too, without waiting for their retry.
   */
  private async flushAll(all: boolean): Promise<void> {
    const now = performance.now();
    const keys = [...this.dirty.keys()].filter((key) => all || (this.flushFailures.get(key) ?? 0) <= now);
    const flushes: Promise<void>[] = [];
    for (const [index, key] of keys.entries()) {
      if (index > 0 && index % FLUSH_CHUNK === 0) await new Promise((resolve) => setImmediate(resolve));
      const id = idOfKey(key);
      if (id !== undefined) flushes.push(new Promise((settle) => this.lanes.push(key, { kind: "flush", id, settle, fail: () => settle() })));
    }
    await Promise.all(flushes);
    if (this.dirty.size > 0) this.scheduleFlush();
  }

  /** After an append: a journal past COMPACT_AT_BYTES is folded into the deadlines files, one fold at a time. */
  private foldWhenDue(): void {
    if (this.journal.size > COMPACT_AT_BYTES && this.folding === undefined && !this.closed && performance.now() >= this.nextFoldAt) {
      this.folding = this.fold().finally(() => (this.folding = undefined));
    }
  }

  /**
   * In the group's lane: its renewals answered from memory, as journal records chained from what
   * is persisted (nothing else of the group can be in flight: its lane is here). A group whose
   * records could not be journaled before has its deadlines file written instead.
   */
  private async flushGroup(key: string, id: GroupId): Promise<void> {
    if (!this.dirty.has(key)) return;
    const entry = this.entries.get(key);
    const persisted = this.onDisk.get(key);
    if (entry === undefined || persisted === undefined) {
      this.dirty.delete(key);
      return;
    }
    if (this.flushFailures.has(key)) {
      if (await this.commit(id, { group: entry.group, expires: entry.expires }, [])) this.recovered(key, id);
      else this.flushFailures.set(key, performance.now() + FAILED_FLUSH_RETRY_MS);
      return;
    }
    const journaled = await this.journalInLane(key, entry.expires, persisted);
    // A target without a persisted deadline cannot be journaled (a record starts from one): the deadlines file then.
    if (journaled === "unchainable") this.flushFailures.set(key, 0);
    if (journaled === "journaled") this.observer.renewalFlushed?.();
  }

  /**
   * In the group's lane: memory's deadlines `expires` as journal records chained from what is
   * persisted (nothing else of the group can be in flight: its lane is here); once they are
   * durable, they are what is persisted. A failed append is noted (journalFailed).
   */
  private async journalInLane(key: string, expires: Deadlines, persisted: Deadlines): Promise<"journaled" | "failed" | "unchainable"> {
    const records = recordsOf(key, expires, persisted);
    if (records === undefined) return "unchainable";
    try {
      if (records.length > 0) await this.journal.append(records);
    } catch (error) {
      this.journalFailed(key, error);
      return "failed";
    }
    this.journalWorks();
    this.onDisk.set(key, expires);
    this.dirty.delete(key);
    this.foldWhenDue();
    return "journaled";
  }

  private journalFailed(key: string, error: unknown): void {
    this.flushFailures.set(key, 0);
    this.observer.writeFailed?.(JOURNAL_FILE);
    if (this.journalFailing) return;
    this.journalFailing = true;
    this.logger.error(
      { file: JOURNAL_FILE, err: error },
      "could not append renewals to the journal; the renewals of the groups concerned are written to their deadlines files before their answer until one such write succeeds, then journaled again",
    );
  }

  private journalWorks(): void {
    if (!this.journalFailing) return;
    this.journalFailing = false;
    this.logger.info({ file: JOURNAL_FILE }, "renewals journaled again");
  }

  /**
   * A write of a group whose records could not be journaled persisted its memory: it is journaled
   * again from here. At debug: the failure was logged once for all groups, not per group.
   */
  private recovered(key: string, id: GroupId): void {
    if (this.flushFailures.delete(key)) this.logger.debug({ file: deadlinesFileNameOf(id) }, "deadlines written; renewals of this group are journaled again");
  }

  /**
   * A renewal memory cannot answer (it moves a deadline past the slack, or the group's renewals
   * could not be journaled) is still only a move of deadlines: written before its answer as
   * journal records, in one append with every other renewal waiting for one, rather than as a
   * rewrite of the deadlines file. False when that is not possible (the journal fails, or a
   * target has no persisted deadline to start from): the deadlines file is written instead.
   */
  private async journalRenewal(key: string, state: Registration): Promise<boolean> {
    const persisted = this.onDisk.get(key);
    if (this.closed || this.fileDiffers.has(key) || this.flushFailures.has(key) || persisted === undefined) return false;
    // What is persisted becomes memory's renewals and this one.
    return (await this.journalInLane(key, state.expires, persisted)) === "journaled";
  }

  /**
   * Folds the journal into the deadlines files once it passed COMPACT_AT_BYTES: new appends go
   * to a new file, each group of the old one has its persisted deadlines written through its
   * lane, then the old file goes. A group that cannot be written keeps the old file for the next
   * try; replaying it stays right (journal.ts).
   */
  private async fold(): Promise<void> {
    try {
      const keys = await this.journal.rotate();
      const written = await Promise.all([...keys].map((key) => this.pushFold(key)));
      if (written.includes(false)) {
        this.nextFoldAt = performance.now() + FOLD_RETRY_MS;
        this.logger.warn({ file: OLD_JOURNAL_FILE }, "could not write every deadlines file the renewals journal holds; kept, and tried again in a minute");
        return;
      }
      await this.journal.dropOld();
    } catch (error) {
      this.nextFoldAt = performance.now() + FOLD_RETRY_MS;
      this.logger.error({ file: JOURNAL_FILE, err: error }, "could not fold the renewals journal into the deadlines files; tried again in a minute");
    }
  }

  private pushFold(key: string): Promise<boolean> {
    const id = idOfKey(key);
    if (id === undefined) return Promise.resolve(true);
    return new Promise((settle) => this.lanes.push(key, { kind: "fold", id, settle, fail: () => settle(false) }));
  }

  /** Writes a group's persisted deadlines into its deadlines file (a fold); true when there was nothing to write. */
  private async writePersisted(key: string): Promise<boolean> {
    const id = idOfKey(key);
    const entry = this.entries.get(key);
    const persisted = this.onDisk.get(key);
    // A group gone, or all of whose targets are permanent: its deadlines file is gone too, and the records of it no longer apply.
    if (id === undefined || entry === undefined || persisted === undefined) return true;
    const text = serializeDeadlines(deadlinesOf(persisted, entry.group.targets));
    try {
      const durability = await this.directory.replace(id, { group: entry.text, writeGroup: false, deadlinesWhile: text, deadlinesAfter: text });
      return durability === undefined;
    } catch (error) {
      if (error instanceof StoreError) return false;
      throw error;
    }
  }

  /**
   * The safety rule for renewals answered from memory: only while they are being journaled on
   * time (the last append did not fail, and none is overdue) and only when the persisted
   * deadlines cover the renewal (coveredBy: a crash then loses nothing the restored deadlines do
   * not keep). Otherwise the renewal is written before its answer, like any change.
   */
  private answersFromMemory(key: string, state: Registration): boolean {
    if (this.closed || this.fileDiffers.has(key) || this.flushFailures.has(key)) return false;
    const since = this.dirty.get(key);
    if (since !== undefined && performance.now() - since > RENEWAL_FLUSH_MS + FLUSH_MARGIN_MS) return false;
    return coveredBy(state.expires, this.onDisk.get(key) ?? NO_DEADLINES, this.renewalSlackMs);
  }

  /** A batch threw (a bug): the lane answers its jobs with a 500; memory may no longer say what the file holds, so it is read again. */
  private batchFailed(key: string, error: unknown): Error {
    const id = idOfKey(key);
    const fileName = id === undefined ? key : fileNameOf(id);
    this.observer.internalError?.();
    this.logger.error({ file: fileName, err: error, bug: true }, "internal error while applying changes; the file is read again");
    if (id !== undefined) void this.reload(id);
    return new InternalError(
      `an internal error stopped the change to ${fileName}; it may or may not have been applied: GET shows what is registered. ` +
        "This is a bug; please report it with the service log of this request",
      { cause: error },
    );
  }

  /**
   * Takes what was read from one group file into memory. At start a bad file
   * counts as not registered; later (an outside edit) the last good group keeps
   * being served, and the next accepted write repairs the file.
   */
  private accept(id: GroupId, read: FileRead, reason: "load" | "outside change"): void {
    const key = keyOf(id);
    const fileName = fileNameOf(id);
    const known = this.entries.get(key);
    if ("error" in read) {
      if (read.error.code === "ENOENT") {
        if (known !== undefined) {
          this.entries.delete(key);
          this.observer.outsideChange?.(fileName);
          this.logger.info({ file: fileName }, "file removed from outside; group unregistered");
        }
        return;
      }
      this.observer.readFailed?.(fileName);
      this.logger.error({ file: fileName, err: read.error }, "could not read file");
      if (known !== undefined) this.fileDiffers.add(key);
      return;
    }
    const { text, changedAt } = read;
    if (known !== undefined && text === known.text) {
      this.fileDiffers.delete(key);
      return;
    }
    let group: TargetGroup | undefined;
    try {
      group = parseGroupFile(text, id.kind);
    } catch (error) {
      this.observer.readFailed?.(fileName);
      this.logger.warn(
        { file: fileName, reason: (error as Error).message },
        known === undefined
          ? "file is not a valid target group; treated as not registered and left as it is"
          : "file is not a valid target group; still serving the last good group",
      );
      if (known !== undefined) this.fileDiffers.add(key);
      return;
    }
    this.fileDiffers.delete(key);
    // An edit from outside keeps the deadlines of the targets that stay; a target added by hand is permanent.
    if (group === undefined) this.entries.delete(key);
    else this.entries.set(key, { id, fileName, group, expires: deadlinesOf(known?.expires ?? NO_DEADLINES, group.targets), changedAt, text });
    if (reason === "outside change") {
      this.observer.outsideChange?.(fileName);
      this.logger.info({ file: fileName, targets: group?.targets.length ?? 0 }, "picked up outside change");
    }
  }

  /**
   * A group's deadlines file, after its group: a deadline for a target the
   * group does not have is ignored. Deadlines already past are applied by the
   * expiry scheduler as soon as the service runs.
   */
  private acceptDeadlines(id: GroupId, read: FileRead): void {
    const name = deadlinesFileNameOf(id);
    const entry = this.entries.get(keyOf(id));
    if (entry === undefined) return;
    let expires: Deadlines;
    try {
      if ("error" in read) throw read.error;
      expires = parseDeadlines(read.text);
    } catch (error) {
      this.observer.readFailed?.(name);
      this.logger.warn({ file: name, reason: (error as Error).message }, "deadlines file cannot be used; the group's targets are treated as permanent");
      return;
    }
    // Memory gets them once the journal is replayed over them (restoreWithSlack).
    this.onDisk.set(keyOf(id), deadlinesOf(expires, entry.group.targets));
  }

  /**
   * Re-reads first, once however many events asked for one, then every change
   * in arrival order, written once. None of the changes has been applied yet,
   * so applying them after an outside edit that was noticed while they waited
   * is as valid an order as any; re-reading between them would split the batch
   * into one write per event, and every write of ours comes back as an event.
   */
  private async runBatch(key: string, jobs: Job[]): Promise<void> {
    const reloads = jobs.filter((job) => job.kind === "reload");
    if (reloads.length > 0) {
      const { id } = reloads[0]!;
      this.accept(id, this.directory.read(id), "outside change");
      for (const job of reloads) job.settle();
    }
    for (const job of jobs) if (job.kind === "fold") job.settle(await this.writePersisted(key));
    const flush = jobs.find((job) => job.kind === "flush");
    if (flush !== undefined) await this.flushGroup(key, flush.id);
    for (const job of jobs) if (job.kind === "flush") job.settle();
    const accepted: { job: MutationJob; outcome: Outcome }[] = [];
    const entry = this.entries.get(key);
    const initial: Registration | undefined = entry === undefined ? undefined : { group: entry.group, expires: entry.expires };
    let state = initial;
    const now = this.now();
    for (const job of jobs) {
      if (job.kind !== "mutation") continue;
      try {
        const after = job.mutation(state, now);
        accepted.push({ job, outcome: { before: state, after } });
        state = after ?? undefined;
      } catch (error) {
        job.settle(error as Error);
      }
    }
    if (accepted.length === 0) return;
    // Every change left it as it was (an expiry with nothing due): nothing to write.
    if (state === initial) {
      for (const { job, outcome } of accepted) job.settle(outcome);
      return;
    }
    const renewal = isRenewal(initial, state ?? null);
    if (renewal && this.answersFromMemory(key, state!)) {
      // Answered from memory; the journal has it within the flush interval, one append for every group's renewals until then.
      this.entries.set(key, { ...entry!, expires: state!.expires });
      if (!this.dirty.has(key)) this.dirty.set(key, performance.now());
      this.scheduleFlush();
      for (const { job, outcome } of accepted) {
        this.observer.renewal?.("memory");
        job.settle(outcome);
      }
      return;
    }
    if (renewal && (await this.journalRenewal(key, state!))) {
      this.entries.set(key, { ...entry!, expires: state!.expires });
      for (const { job, outcome } of accepted) {
        this.observer.renewal?.("durable");
        job.settle(outcome);
      }
      return;
    }
    if (renewal) for (let i = 0; i < accepted.length; i++) this.observer.renewal?.("durable");
    const written = await this.commit(accepted[0]!.job.id, state, accepted);
    // The write persisted memory, renewals included: a group whose renewals could not be journaled is answered from memory again.
    if (written) this.recovered(key, accepted[0]!.job.id);
  }

  /** Writes what the accepted changes led to (the directory's crash order), then swaps it in and answers them all. */
  private async commit(id: GroupId, state: Registration | undefined, accepted: readonly { job: MutationJob; outcome: Outcome }[]): Promise<boolean> {
    const key = keyOf(id);
    const fileName = fileNameOf(id);
    const known = this.entries.get(key);
    // A flush of renewals leaves the group as it was: neither formatted again nor compared target by target.
    const text = state === undefined ? undefined : state.group === known?.group ? known.text : serializeGroup(state.group);
    // The deadlines file fits the old group file and the new one while the group file changes: the targets leaving keep theirs.
    const staying = known === undefined || text === known.text ? undefined : new Set(state?.group.targets);
    const leaving = staying === undefined ? NO_DEADLINES : new Map([...known!.expires].filter(([target]) => !staying.has(target)));
    const after = state === undefined || state.expires.size === 0 ? undefined : this.deadlinesTexts.text(key, state.expires);
    if (after === undefined) this.deadlinesTexts.forget(key);
    const during = leaving.size === 0 ? after : serializeDeadlines(new Map([...leaving, ...(state?.expires ?? NO_DEADLINES)]));
    // A heartbeat that only renews deadlines leaves the group file alone, unless it is known to need repair.
    const writeGroup = text !== undefined && (known === undefined || text !== known.text || this.fileDiffers.has(key));
    let durability: Error | undefined;
    try {
      durability = await this.directory.replace(id, {
        group: text,
        writeGroup,
        deadlinesWhile: state === undefined ? undefined : during,
        deadlinesAfter: after,
      });
    } catch (error) {
      if (!(error instanceof StoreError)) throw error;
      for (const { job } of accepted) job.settle(error);
      return false;
    }
    // The deadlines file now holds the state's deadlines (the renewals answered from memory among them).
    if (state === undefined || state.expires.size === 0) this.onDisk.delete(key);
    else this.onDisk.set(key, state.expires);

    // The rename is done: Prometheus already reads the new file, so memory follows it (GET and the
    // file never disagree), even when a failed directory fsync means a power cut could still undo it.
    this.fileDiffers.delete(key);
    if (state === undefined || text === undefined) {
      this.entries.delete(key);
      this.logger.info({ file: fileName, changes: accepted.length }, "file removed");
    } else if (writeGroup) {
      this.entries.set(key, { id, fileName, group: state.group, expires: state.expires, changedAt: new Date(), text });
      this.logger.info({ file: fileName, targets: state.group.targets.length, changes: accepted.length }, "file written");
    } else {
      this.entries.set(key, { ...known!, group: state.group, expires: state.expires });
      this.logger.debug({ file: fileName, changes: accepted.length }, "deadlines written");
    }
    if (durability !== undefined) {
      const failure = new StoreError(
        `${fileName} was ${state === undefined ? "removed" : "written"}, but the directory fsync failed ` +
          `(${whyNot(durability)}), so the change may not survive a power cut; repeat the request once that is fixed`,
        { cause: durability },
      );
      for (const { job } of accepted) job.settle(failure);
      // What was renamed may not survive a power cut, so it is not what is persisted: until a
      // write of the group is durable, nothing is journaled from it and renewals are written first.
      this.flushFailures.set(key, 0);
      return false;
    }
    this.dirty.delete(key);
    for (const { job, outcome } of accepted) job.settle(outcome);
    return true;
  }
}

/**
 * The journal records that bring `persisted` to `expires` (memory, which only moved deadlines
 * later); undefined when a target has no persisted deadline to start from.
 */
function recordsOf(key: string, expires: Deadlines, persisted: Deadlines): JournalRecord[] | undefined {
  const records: JournalRecord[] = [];
  for (const [target, to] of expires) {
    const from = persisted.get(target);
    if (from === undefined) return undefined;
    if (to > from) records.push({ key, target, from, to });
  }
  return records;
}
