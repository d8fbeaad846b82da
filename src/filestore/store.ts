import { closeSync, fstatSync, openSync, readFileSync } from "node:fs";
import { access, constants, mkdir, readdir, stat, unlink, writeFile } from "node:fs/promises";
import { join, resolve } from "node:path";
import type { Logger } from "pino";
import { InternalError, StoreError } from "../errors.js";
import { appEnvKey, deadlinesOf, NO_DEADLINES, type AppEnv, type Deadlines, type Registration, type TargetGroup } from "../model.js";
import type { Entry, Mutation, Outcome, Store } from "../store.js";
import { writeFileAtomically, type FileMode } from "./atomic-write.js";
import { DirectorySync } from "./directory-sync.js";
import { parseDeadlines, serializeDeadlines } from "./deadlines-file.js";
import { parseGroupFile, serializeGroup } from "./group-file.js";
import { Lanes, type LaneJob } from "./lanes.js";
import { appEnvOfDeadlinesFileName, appEnvOfFileName, appEnvOfKey, deadlinesFileNameOf, fileNameOf, isLeftoverTempFile } from "./naming.js";

export type { Entry, Mutation, Outcome } from "../store.js";

/** Hooks for metrics; every one is optional. */
export interface StoreObserver {
  fileWritten?(fileName: string, seconds: number): void;
  fileRemoved?(fileName: string): void;
  writeFailed?(fileName: string): void;
  readFailed?(fileName: string): void;
  outsideChange?(fileName: string): void;
  leftoverRemoved?(fileName: string): void;
  /** A batch of changes threw: a bug, answered with a 500 (file_sd_internal_errors_total). */
  internalError?(): void;
}

export interface StoreOptions {
  readonly directory: string;
  readonly logger: Logger;
  readonly observer?: StoreObserver;
  /**
   * Called after a re-read found a managed file other than this store last
   * wrote it (edited, removed, or made invalid by someone else). In etcd mode
   * the directory is a view, and this puts etcd's value back.
   */
  readonly onOutsideChange?: (appEnv: AppEnv) => void;
  /** The clock mutations are given (ms since the epoch); Date.now unless a test drives it. */
  readonly now?: () => number;
}

type Job = LaneJob &
  (
    | { readonly kind: "mutation"; readonly appEnv: AppEnv; readonly mutation: Mutation; settle(outcome: Outcome | Error): void }
    | { readonly kind: "reload"; readonly appEnv: AppEnv; settle(): void }
    | { readonly kind: "mirror"; readonly appEnv: AppEnv; readonly text: string | undefined; settle(error?: Error): void }
  );
type MutationJob = Job & { kind: "mutation" };
type MirrorJob = Job & { kind: "mirror" };

/** rw-r--r--: Prometheus, often another user in another container, must be able to read every file. */
const FILE_MODE = 0o644;

/** A managed file's text and modification time, or why it could not be read. */
type FileRead = { readonly text: string; readonly changedAt: Date } | { readonly error: NodeJS.ErrnoException };

function readSync(path: string): FileRead {
  let fd: number | undefined;
  try {
    // O_NONBLOCK: a FIFO someone put at a managed name must not freeze the service.
    fd = openSync(path, constants.O_RDONLY | constants.O_NONBLOCK);
    const stats = fstatSync(fd);
    if (!stats.isFile()) {
      return { error: Object.assign(new Error(`${path} is not a regular file`), { code: "ENOTREG" }) };
    }
    return { text: readFileSync(fd, "utf8"), changedAt: stats.mtime };
  } catch (error) {
    return { error: error as NodeJS.ErrnoException };
  } finally {
    if (fd !== undefined) closeSync(fd);
  }
}

/**
 * The directory Prometheus reads, and the in-memory copy of it that GET serves.
 * Every change goes through the lane of its application/environment: computed as
 * a new value, written atomically, and only then swapped in and acknowledged.
 */
export class FileStore implements Store {
  readonly directory: string;
  private readonly logger: Logger;
  private readonly observer: StoreObserver;
  private readonly onOutsideChange: (appEnv: AppEnv) => void;
  private readonly entries = new Map<string, Entry>();
  /**
   * The text of each `.expires` file on disk. It may list targets the group no
   * longer has (see commit: the crash order), so it is kept apart from memory's deadlines.
   */
  private readonly deadlinesOnDisk = new Map<string, string>();
  /** Groups whose file is known not to hold what memory serves (an outside edit left it unreadable). */
  private readonly fileDiffers = new Set<string>();
  readonly now: () => number;
  private readonly directorySync: DirectorySync;
  private fileMode: FileMode = { bits: FILE_MODE, umaskStripsBits: true };
  private readonly lanes = new Lanes<Job>(
    (key, jobs) => this.runBatch(key, jobs),
    (key, error) => this.batchFailed(key, error),
  );

  private constructor({ directory, logger, observer = {}, onOutsideChange = () => undefined, now = Date.now }: StoreOptions) {
    this.now = now;
    this.directory = resolve(directory);
    this.logger = logger;
    this.observer = observer;
    this.onOutsideChange = onOutsideChange;
    this.directorySync = new DirectorySync(this.directory);
  }

  /** Creates the directory if needed, checks it is writable, removes crash leftovers and loads every managed file. */
  static async open(options: StoreOptions): Promise<FileStore> {
    const store = new FileStore(options);
    await store.prepareDirectory();
    await store.loadAll();
    return store;
  }

  get(appEnv: AppEnv): TargetGroup | undefined {
    return this.entries.get(appEnvKey(appEnv))?.group;
  }

  /** Every registered application/environment, in no particular order. */
  list(): IterableIterator<Entry> {
    return this.entries.values();
  }

  get size(): number {
    return this.entries.size;
  }

  /** Applies `mutation` after every change queued before it; resolves once the result is on disk. */
  update(appEnv: AppEnv, mutation: Mutation): Promise<Outcome> {
    return new Promise((resolvePromise, reject) => {
      this.lanes.push(appEnvKey(appEnv), {
        kind: "mutation",
        appEnv,
        mutation,
        settle: (outcome) => (outcome instanceof Error ? reject(outcome) : resolvePromise(outcome)),
        fail: reject,
      });
    });
  }

  /** Re-reads one managed file after someone else changed it (called by the watcher). */
  reload(appEnv: AppEnv): Promise<void> {
    return new Promise((settle) => this.lanes.push(appEnvKey(appEnv), { kind: "reload", appEnv, settle, fail: () => settle() }));
  }

  /**
   * Makes the file of `appEnv` hold exactly `text` (`undefined`: no file), after
   * everything queued before it. For a directory that is a view of another
   * registry (etcd). A file that already holds `text` is not written again.
   */
  mirror(appEnv: AppEnv, text: string | undefined): Promise<void> {
    const key = appEnvKey(appEnv);
    if (text !== undefined && this.entries.get(key)?.text === text && !this.fileDiffers.has(key) && !this.lanes.busy(key)) return Promise.resolve();
    return new Promise((resolvePromise, reject) => {
      this.lanes.push(appEnvKey(appEnv), {
        kind: "mirror",
        appEnv,
        text,
        settle: (error) => (error === undefined ? resolvePromise() : reject(error)),
        fail: reject,
      });
    });
  }

  /** Resolves once every queued change has been written and answered. */
  idle(): Promise<void> {
    return this.lanes.idle();
  }

  /**
   * A batch threw (a bug). Its jobs are answered with a 500 by the lane; memory
   * may no longer say what the file holds, so the file is read again.
   */
  private batchFailed(key: string, error: unknown): Error {
    const appEnv = appEnvOfKey(key);
    const fileName = appEnv === undefined ? key : fileNameOf(appEnv);
    this.observer.internalError?.();
    this.logger.error({ file: fileName, err: error, bug: true }, "internal error while applying changes; the file is read again");
    if (appEnv !== undefined) void this.reload(appEnv);
    return new InternalError(
      `an internal error stopped the change to ${fileName}; it may or may not have been applied: GET shows what is registered. ` +
        "This is a bug; please report it with the service log of this request",
      { cause: error },
    );
  }

  private async prepareDirectory(): Promise<void> {
    try {
      await mkdir(this.directory, { recursive: true });
      await access(this.directory, constants.R_OK | constants.W_OK);
      // access() says yes to root on a read-only mount; a real write does not.
      const probe = join(this.directory, `.write-probe-${process.pid}`);
      await writeFile(probe, "", { mode: FILE_MODE });
      // The probe also tells whether the umask lets Prometheus (often another user) read what we write.
      this.fileMode = { bits: FILE_MODE, umaskStripsBits: ((await stat(probe)).mode & 0o777) !== FILE_MODE };
      await unlink(probe);
    } catch (error) {
      throw new StoreError(
        `FILE_SD_DIRECTORY ${this.directory} is not a writable directory: ${(error as Error).message}`,
        { cause: error },
      );
    }
  }

  /**
   * Synchronous on purpose: nothing is served yet, and one thread doing
   * open/fstat/read/close is several times faster than a promise and a trip to
   * the thread pool for each (1.4 s → 0.2 s for 10,000 files).
   */
  private async loadAll(): Promise<void> {
    const deadlineFiles: AppEnv[] = [];
    for (const name of await readdir(this.directory)) {
      if (isLeftoverTempFile(name)) await this.removeLeftover(name);
      else {
        const appEnv = appEnvOfFileName(name);
        if (appEnv !== undefined) this.accept(appEnv, readSync(join(this.directory, name)), "load");
        const owner = appEnvOfDeadlinesFileName(name);
        if (owner !== undefined) deadlineFiles.push(owner);
      }
    }
    for (const appEnv of deadlineFiles) await this.loadDeadlines(appEnv);
    this.logger.info({ directory: this.directory, groups: this.entries.size }, "loaded file_sd directory");
  }

  /**
   * A group's `.expires` file, after its group: a deadline for a target the
   * group does not have is ignored, and a file whose group is gone (a crash
   * between the two removals) is removed. Deadlines already past are applied
   * by the expiry scheduler as soon as the service runs.
   */
  private async loadDeadlines(appEnv: AppEnv): Promise<void> {
    const key = appEnvKey(appEnv);
    const name = deadlinesFileNameOf(appEnv);
    const entry = this.entries.get(key);
    const path = join(this.directory, name);
    if (entry === undefined) {
      try {
        await unlink(path);
        this.logger.info({ file: name }, "removed the deadlines of a group that is no longer registered");
      } catch (error) {
        this.logger.warn({ file: name, err: error }, "could not remove the deadlines of a group that is no longer registered");
      }
      return;
    }
    const read = readSync(path);
    if ("error" in read) {
      this.observer.readFailed?.(name);
      this.logger.error({ file: name, err: read.error }, "could not read deadlines; the group's targets are treated as permanent");
      return;
    }
    this.deadlinesOnDisk.set(key, read.text);
    let expires: Deadlines;
    try {
      expires = parseDeadlines(read.text);
    } catch (error) {
      this.observer.readFailed?.(name);
      this.logger.warn({ file: name, reason: (error as Error).message }, "deadlines file is not valid; the group's targets are treated as permanent");
      return;
    }
    this.entries.set(key, { ...entry, expires: deadlinesOf(expires, entry.group.targets) });
  }

  private async removeLeftover(name: string): Promise<void> {
    try {
      await unlink(join(this.directory, name));
      this.observer.leftoverRemoved?.(name);
      this.logger.info({ file: name }, "removed temporary file left by a crash");
    } catch (error) {
      this.logger.warn({ file: name, err: error }, "could not remove temporary file left by a crash");
    }
  }

  /**
   * Re-reads one managed file after someone else changed it. Synchronously:
   * every write of ours comes back as an event and the lane waits for this
   * read, and on a file the kernel has just written, four plain system calls
   * cost the event loop less than dispatching five to the thread pool.
   */
  private readIntoMemory(appEnv: AppEnv): void {
    this.accept(appEnv, readSync(join(this.directory, fileNameOf(appEnv))), "outside change");
  }

  /**
   * Takes what was read from one managed file into memory. At start a bad file
   * counts as not registered; later (an outside edit) the last good group keeps
   * being served, and the next accepted write repairs the file.
   */
  private accept(appEnv: AppEnv, read: FileRead, reason: "load" | "outside change"): void {
    const key = appEnvKey(appEnv);
    const fileName = fileNameOf(appEnv);
    const known = this.entries.get(key);
    const fromOutside = (): void => {
      if (reason === "outside change") this.onOutsideChange(appEnv);
    };
    if ("error" in read) {
      if (read.error.code === "ENOENT") {
        if (known !== undefined) {
          this.entries.delete(key);
          this.observer.outsideChange?.(fileName);
          this.logger.info({ file: fileName }, "file removed from outside; group unregistered");
          fromOutside();
        }
        return;
      }
      this.observer.readFailed?.(fileName);
      this.logger.error({ file: fileName, err: read.error }, "could not read file");
      if (known !== undefined) this.fileDiffers.add(key);
      fromOutside();
      return;
    }
    const { text, changedAt } = read;
    if (known !== undefined && text === known.text) {
      this.fileDiffers.delete(key);
      return;
    }

    let group: TargetGroup | undefined;
    try {
      group = parseGroupFile(text);
    } catch (error) {
      this.observer.readFailed?.(fileName);
      this.logger.warn(
        { file: fileName, reason: (error as Error).message },
        known === undefined
          ? "file is not a valid target group; treated as not registered and left as it is"
          : "file is not a valid target group; still serving the last good group",
      );
      if (known !== undefined) this.fileDiffers.add(key);
      fromOutside();
      return;
    }
    this.fileDiffers.delete(key);
    // An edit from outside keeps the deadlines of the targets that stay; a target added by hand is permanent.
    if (group === undefined) this.entries.delete(key);
    else this.entries.set(key, { appEnv, fileName, group, expires: known === undefined ? NO_DEADLINES : deadlinesOf(known.expires, group.targets), changedAt, text });
    if (reason === "outside change") {
      this.observer.outsideChange?.(fileName);
      this.logger.info({ file: fileName, targets: group?.targets.length ?? 0 }, "picked up outside change");
      fromOutside();
    }
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
      this.readIntoMemory(reloads[0]!.appEnv);
      for (const job of reloads) job.settle();
    }

    const mirrors = jobs.filter((job) => job.kind === "mirror");
    if (mirrors.length > 0) await this.writeMirror(mirrors[0]!.appEnv, mirrors);

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
    if (state === initial) {
      // Every change left it as it was (an expiry with nothing due): nothing to write.
      for (const { job, outcome } of accepted) job.settle(outcome);
      return;
    }
    await this.commit(jobs[0]!.appEnv, state, accepted);
  }

  /**
   * The last of `jobs` wins: it is the newest value of the other registry.
   * Memory is trusted to say what the file holds, because every outside
   * change re-reads the file and asks for a mirror again (onOutsideChange).
   * No fsync: the directory is a copy of etcd that the resync at start makes
   * equal again after a power cut; the rename still keeps every read whole.
   */
  private async writeMirror(appEnv: AppEnv, jobs: readonly MirrorJob[]): Promise<void> {
    const fileName = fileNameOf(appEnv);
    const path = join(this.directory, fileName);
    const text = jobs[jobs.length - 1]!.text;
    const settle = (error?: Error): void => {
      for (const job of jobs) job.settle(error);
    };
    const key = appEnvKey(appEnv);
    const known = this.entries.get(key);
    if (text !== undefined && known?.text === text && !this.fileDiffers.has(key)) {
      settle();
      return;
    }
    const started = process.hrtime.bigint();
    try {
      if (text === undefined) await unlink(path);
      else await writeFileAtomically(path, text, this.fileMode, { fsync: false });
    } catch (error) {
      if (text === undefined && (error as NodeJS.ErrnoException).code === "ENOENT") {
        this.takeIn(appEnv, text, new Date());
        settle();
        return;
      }
      this.observer.writeFailed?.(fileName);
      this.logger.error({ file: fileName, err: error }, "could not bring the file in step with the registry");
      settle(new StoreError(`could not ${text === undefined ? "remove" : "write"} ${fileName}: ${(error as Error).message}`, { cause: error }));
      return;
    }
    this.takeIn(appEnv, text, new Date());
    if (text === undefined) {
      this.observer.fileRemoved?.(fileName);
      this.logger.info({ file: fileName }, "file removed");
    } else {
      this.observer.fileWritten?.(fileName, Number(process.hrtime.bigint() - started) / 1e9);
      this.logger.info({ file: fileName, targets: this.entries.get(appEnvKey(appEnv))?.group.targets.length }, "file written");
    }
    settle();
  }

  /** Memory follows what a mirror left on disk. */
  private takeIn(appEnv: AppEnv, text: string | undefined, changedAt: Date): void {
    const key = appEnvKey(appEnv);
    this.fileDiffers.delete(key);
    if (text === undefined) {
      this.entries.delete(key);
      return;
    }
    if (this.entries.get(key)?.text === text) return;
    let group: TargetGroup | undefined;
    try {
      group = parseGroupFile(text);
    } catch {
      group = undefined;
    }
    if (group === undefined) this.entries.delete(key);
    else this.entries.set(key, { appEnv, fileName: fileNameOf(appEnv), group, expires: NO_DEADLINES, changedAt, text });
  }

  /**
   * Writes what the accepted changes led to, then swaps it in and answers them all.
   *
   * The crash order, so that a SIGKILL or a power cut between any two steps
   * leaves files that fit together and no target that outlives its deadline:
   * - A group that stays: its `.expires` file first, then (after a directory
   *   fsync) the group file. The `.expires` file holds the new deadlines and,
   *   for targets leaving the group, their old ones, so it fits the old group
   *   file as well as the new: after a crash between the two, a target that
   *   stays has its new deadline (a renewal or a ttl of a request that was not
   *   answered, never longer than someone asked), and a target that was leaving
   *   still has its old one. The other order would leave a target added with a
   *   ttl permanent.
   * - A group that goes: the group file first, then (after a directory fsync)
   *   the `.expires` file. A crash between leaves deadlines without a group,
   *   which the next start removes; the other order would leave the group with
   *   no deadlines, permanent.
   * A deadline for a target the group does not have is ignored at load, so the
   * old deadlines of leaving targets do no harm until the next write drops them.
   */
  private async commit(
    appEnv: AppEnv,
    state: Registration | undefined,
    accepted: readonly { job: MutationJob; outcome: Outcome }[],
  ): Promise<void> {
    if (accepted.length === 0) return;
    const key = appEnvKey(appEnv);
    const fileName = fileNameOf(appEnv);
    const path = join(this.directory, fileName);
    const deadlinesName = deadlinesFileNameOf(appEnv);
    const deadlinesPath = join(this.directory, deadlinesName);
    const known = this.entries.get(key);
    const started = process.hrtime.bigint();
    const text = state === undefined ? "" : serializeGroup(state.group);
    const oldDeadlines = this.deadlinesOnDisk.get(key);
    let newDeadlines: string | undefined;
    let finalDeadlines: string | undefined;
    if (state !== undefined) {
      const merged = new Map([...(known === undefined ? NO_DEADLINES : leavingTargetsOf(known.expires, state.group)), ...state.expires]);
      newDeadlines = merged.size === 0 ? undefined : serializeDeadlines(merged);
      finalDeadlines = state.expires.size === 0 ? undefined : serializeDeadlines(state.expires);
    }
    // A heartbeat that only renews deadlines leaves the group file alone, unless it is known to need repair.
    const writeGroup = state !== undefined && (known === undefined || text !== known.text || this.fileDiffers.has(key));
    const writeDeadlines = state !== undefined && newDeadlines !== oldDeadlines;
    const failed = (error: unknown, what: string): void => {
      this.observer.writeFailed?.(what);
      this.logger.error({ file: what, err: error }, "write failed; nothing changed");
      const failure = new StoreError(
        `could not ${state === undefined ? "remove" : "write"} ${what}: ${(error as Error).message}; the change was not applied`,
        { cause: error },
      );
      for (const { job } of accepted) job.settle(failure);
    };

    if (state === undefined) {
      try {
        await removeIfPresent(path);
      } catch (error) {
        failed(error, fileName);
        return;
      }
    } else {
      if (writeDeadlines) {
        try {
          await this.putDeadlinesFile(deadlinesPath, newDeadlines);
          this.deadlinesOnDisk.set(key, newDeadlines ?? "");
          if (newDeadlines === undefined) this.deadlinesOnDisk.delete(key);
          if (writeGroup) await this.directorySync.sync();
        } catch (error) {
          await this.restoreDeadlines(key, deadlinesPath, oldDeadlines);
          failed(error, deadlinesName);
          return;
        }
        this.logger.debug({ file: deadlinesName, targets: state.expires }, newDeadlines === undefined ? "deadlines removed" : "deadlines written");
      }
      if (writeGroup) {
        try {
          await writeFileAtomically(path, text, this.fileMode);
        } catch (error) {
          if (writeDeadlines) await this.restoreDeadlines(key, deadlinesPath, oldDeadlines);
          failed(error, fileName);
          return;
        }
      }
    }
    let durability: Error | undefined;
    try {
      await this.directorySync.sync();
    } catch (error) {
      durability = error as Error;
    }

    this.fileDiffers.delete(key);
    if (state === undefined) {
      this.entries.delete(key);
      this.fileDiffers.delete(key);
      this.observer.fileRemoved?.(fileName);
      this.logger.info({ file: fileName, changes: accepted.length }, "file removed");
      if (oldDeadlines !== undefined && durability === undefined) {
        try {
          await removeIfPresent(deadlinesPath);
          this.deadlinesOnDisk.delete(key);
        } catch (error) {
          // Harmless: deadlines without a group are ignored, and removed at the next start.
          this.logger.warn({ file: deadlinesName, err: error }, "could not remove the deadlines of a removed group");
        }
      }
    } else if (writeGroup) {
      if (durability === undefined && finalDeadlines !== newDeadlines) {
        // The group file is durable now: the leaving targets' deadlines can go. No hurry for this
        // one to be durable too: should it be lost, the file with them still fits the group.
        await this.putDeadlinesFile(deadlinesPath, finalDeadlines).then(
          () => (finalDeadlines === undefined ? this.deadlinesOnDisk.delete(key) : this.deadlinesOnDisk.set(key, finalDeadlines)),
          (error: unknown) => this.logger.warn({ file: deadlinesName, err: error }, "could not drop the deadlines of targets that left the group"),
        );
      }
      this.entries.set(key, { appEnv, fileName, group: state.group, expires: state.expires, changedAt: new Date(), text });
      this.fileDiffers.delete(key);
      const seconds = Number(process.hrtime.bigint() - started) / 1e9;
      this.observer.fileWritten?.(fileName, seconds);
      this.logger.info({ file: fileName, targets: state.group.targets.length, changes: accepted.length }, "file written");
    } else {
      this.entries.set(key, { ...known!, group: state.group, expires: state.expires });
    }
    if (durability !== undefined) {
      // The rename is done: Prometheus already reads the new file, so memory
      // follows it (GET and the file never disagree), but a power cut could
      // still undo it, so nobody is told it is safe.
      this.observer.writeFailed?.(fileName);
      this.logger.error({ file: fileName, err: durability }, "directory fsync failed after the rename");
      const failure = new StoreError(
        `${fileName} was ${state === undefined ? "removed" : "written"}, but the directory fsync failed ` +
          `(${durability.message}), so the change may not survive a power cut; check the disk, then repeat the request`,
        { cause: durability },
      );
      for (const { job } of accepted) job.settle(failure);
      return;
    }
    for (const { job, outcome } of accepted) job.settle(outcome);
  }

  private async putDeadlinesFile(path: string, text: string | undefined): Promise<void> {
    if (text === undefined) await removeIfPresent(path);
    else await writeFileAtomically(path, text, this.fileMode);
  }

  /** After a failed write, best effort: the deadlines file as it was, so the failed change leaves nothing behind. */
  private async restoreDeadlines(key: string, path: string, text: string | undefined): Promise<void> {
    if (this.deadlinesOnDisk.get(key) === text) return;
    try {
      await this.putDeadlinesFile(path, text);
      if (text === undefined) this.deadlinesOnDisk.delete(key);
      else this.deadlinesOnDisk.set(key, text);
    } catch (error) {
      this.logger.error({ file: path, err: error }, "could not put the deadlines file back after a failed write");
    }
  }
}

async function removeIfPresent(path: string): Promise<void> {
  await unlink(path).catch((error: NodeJS.ErrnoException) => {
    if (error.code !== "ENOENT") throw error;
  });
}

/** The deadlines of targets that are not in `group` (leaving it). */
function leavingTargetsOf(expires: Deadlines, group: TargetGroup): Deadlines {
  const staying = new Set(group.targets);
  return new Map([...expires].filter(([target]) => !staying.has(target)));
}
