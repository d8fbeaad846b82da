import type { Logger } from "pino";
import { InternalError, StoreError } from "../errors.js";
import { DeadlinesTexts, parseDeadlines, serializeDeadlines } from "../directory/deadlines-file.js";
import { Directory, whyNot, type DirectoryObserver, type FileRead } from "../directory/directory.js";
import { parseGroupFile, serializeGroup } from "../directory/group-file.js";
import { deadlinesFileNameOf, fileNameOf } from "../directory/naming.js";
import { KeyTimers, type LaneJob, Lanes } from "../lanes.js";
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
    | { readonly kind: "flush"; readonly id: GroupId; settle(): void }
  );

/** How long a flush may be late (a slow disk, a busy lane) before renewals take the durable path again. */
const FLUSH_MARGIN_MS = RENEWAL_FLUSH_MS;
/** Waits before a failed flush is tried again. */
const FLUSH_RETRY_MS = [1000, 2000, 5000, 10_000] as const;
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
  /** What each group's deadlines file holds (as last loaded or written): a renewal is answered from memory only when these cover it. */
  private readonly onDisk = new Map<string, Deadlines>();
  private readonly deadlinesTexts = new DeadlinesTexts();
  /** Groups whose memory holds renewals the deadlines file lacks, with when (performance.now()) the first of them was answered. */
  private readonly dirty = new Map<string, number>();
  /** Groups whose last flush failed, with how many failures in a row: their renewals take the durable path until a write succeeds. */
  private readonly flushFailures = new Map<string, number>();
  private readonly flushTimers = new KeyTimers((key) => void this.flush(key));
  private closed = false;
  private readonly lanes = new Lanes<Job>(
    (key, jobs) => this.runBatch(key, jobs),
    (key, error) => this.batchFailed(key, error),
  );

  private constructor(
    readonly directory: Directory,
    private readonly logger: Logger,
    private readonly observer: StoreObserver,
    readonly now: () => number,
    private readonly renewalSlackMs: number,
  ) {}

  /** Opens the directory (creating it if needed), removes crash leftovers and loads every managed file. */
  static async open({ directory, logger, observer = {}, now = Date.now, renewalSlackMs = RENEWAL_SLACK_MS }: StoreOptions): Promise<FileStore> {
    const store = new FileStore(await Directory.open(directory, logger, observer), logger, observer, now, renewalSlackMs);
    const { groups, deadlines } = await store.directory.scan();
    for (const { id, read } of groups) store.accept(id, read, "load");
    for (const { id, read } of deadlines) store.acceptDeadlines(id, read);
    logger.info({ directory: store.directory.path, groups: store.entries.size }, "loaded file_sd directory");
    return store;
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

  /** At shutdown: writes the deadlines of every group with renewals not yet on disk, then stops flushing. */
  async close(): Promise<void> {
    await this.lanes.idle();
    this.closed = true;
    this.flushTimers.stop();
    await Promise.all([...this.dirty.keys()].map((key) => this.flush(key)));
    await this.lanes.idle();
  }

  /** Writes a group's deadlines through its lane, if renewals answered from memory are not on disk yet. */
  private flush(key: string): Promise<void> {
    const id = idOfKey(key);
    if (id === undefined || !this.dirty.has(key)) return Promise.resolve();
    return new Promise((settle) => this.lanes.push(key, { kind: "flush", id, settle, fail: () => settle() }));
  }

  /**
   * The safety rule for renewals answered from memory: only while the group's
   * deadlines file is being written on time (its last flush did not fail, and
   * none is overdue) and only when the file's deadlines cover the renewal
   * (coveredBy: a crash then loses nothing the restored deadlines do not
   * keep). Otherwise the renewal is written before its answer, like any change.
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
    const persisted = deadlinesOf(expires, entry.group.targets);
    this.onDisk.set(keyOf(id), persisted);
    // Renewals answered from memory in the last moments before a crash are not in the file, but none moved a
    // deadline more than RENEWAL_SLACK_MS past it (coveredBy): restoring every deadline that much later keeps
    // each ttl a lower bound, and one that had surely passed is still past, applied by the expiry at start.
    this.entries.set(keyOf(id), { ...entry, expires: new Map([...persisted].map(([target, deadline]) => [target, deadline + this.renewalSlackMs])) });
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
    const flushing = jobs.some((job) => job.kind === "flush") && this.dirty.has(key);
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
    const id = jobs[0]!.id;
    if (accepted.length === 0 && !flushing) return;
    // Every change left it as it was (an expiry with nothing due): nothing to write, unless renewals wait for their flush.
    if (state === initial && !flushing) {
      for (const { job, outcome } of accepted) job.settle(outcome);
      return;
    }
    const renewal = state !== initial && isRenewal(initial, state ?? null);
    if (renewal && !flushing && this.answersFromMemory(key, state!)) {
      // Answered from memory; the deadlines file follows within the flush interval, one write for every renewal until then.
      this.entries.set(key, { ...entry!, expires: state!.expires });
      if (!this.dirty.has(key)) this.dirty.set(key, performance.now());
      this.flushTimers.schedule(key, RENEWAL_FLUSH_MS);
      for (const { job, outcome } of accepted) {
        this.observer.renewal?.("memory");
        job.settle(outcome);
      }
      return;
    }
    if (renewal) for (let i = 0; i < accepted.length; i++) this.observer.renewal?.("durable");
    const flushed = this.dirty.has(key);
    const written = await this.commit(id, state, accepted);
    if (flushing || flushed) this.flushed(key, written);
  }

  /** After a write that carried renewals answered from memory: counted, or on failure logged once and tried again. */
  private flushed(key: string, written: boolean): void {
    const file = idOfKey(key) === undefined ? key : deadlinesFileNameOf(idOfKey(key)!);
    if (written) {
      this.observer.renewalFlushed?.();
      if (this.flushFailures.delete(key)) this.logger.info({ file }, "deadlines written again; renewals are answered from memory again");
      return;
    }
    if (!this.dirty.has(key)) return;
    const failures = (this.flushFailures.get(key) ?? 0) + 1;
    this.flushFailures.set(key, failures);
    if (failures === 1) {
      this.logger.error({ file }, "could not write renewed deadlines; renewals of this group are written before their answer until it works; retrying");
    }
    this.flushTimers.schedule(key, FLUSH_RETRY_MS[Math.min(failures - 1, FLUSH_RETRY_MS.length - 1)]!);
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
      // Renewals waiting for their flush keep waiting: the write is tried again until it is durable.
      return false;
    }
    this.dirty.delete(key);
    for (const { job, outcome } of accepted) job.settle(outcome);
    return true;
  }
}
