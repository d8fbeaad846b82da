import { closeSync, fstatSync, openSync, readFileSync } from "node:fs";
import { access, constants, mkdir, readdir, stat, unlink, writeFile } from "node:fs/promises";
import { join, resolve } from "node:path";
import type { Logger } from "pino";
import { StoreError } from "../errors.js";
import { appEnvKey, type AppEnv, type TargetGroup } from "../model.js";
import type { Entry, Mutation, Outcome, Store } from "../store.js";
import { writeFileAtomically, type FileMode } from "./atomic-write.js";
import { DirectorySync } from "./directory-sync.js";
import { parseGroupFile, serializeGroup } from "./group-file.js";
import { Lanes } from "./lanes.js";
import { appEnvOfFileName, fileNameOf, isLeftoverTempFile } from "./naming.js";

export type { Entry, Mutation, Outcome } from "../store.js";

/** Hooks for metrics; every one is optional. */
export interface StoreObserver {
  fileWritten?(fileName: string, seconds: number): void;
  fileRemoved?(fileName: string): void;
  writeFailed?(fileName: string): void;
  readFailed?(fileName: string): void;
  outsideChange?(fileName: string): void;
  leftoverRemoved?(fileName: string): void;
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
}

type Job =
  | { readonly kind: "mutation"; readonly appEnv: AppEnv; readonly mutation: Mutation; settle(outcome: Outcome | Error): void }
  | { readonly kind: "reload"; readonly appEnv: AppEnv; settle(): void }
  | { readonly kind: "mirror"; readonly appEnv: AppEnv; readonly text: string | undefined; settle(error?: Error): void };
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
  /** Keys whose file was found unreadable or invalid after an outside change: memory still holds the last good group. */
  private readonly brokenOnDisk = new Set<string>();
  private readonly directorySync: DirectorySync;
  private fileMode: FileMode = { bits: FILE_MODE, umaskStripsBits: true };
  private readonly lanes = new Lanes<Job>((key, jobs) => this.runBatch(key, jobs));

  private constructor({ directory, logger, observer = {}, onOutsideChange = () => undefined }: StoreOptions) {
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
      });
    });
  }

  /** Re-reads one managed file after someone else changed it (called by the watcher). */
  reload(appEnv: AppEnv): Promise<void> {
    return new Promise((settle) => this.lanes.push(appEnvKey(appEnv), { kind: "reload", appEnv, settle }));
  }

  /**
   * Makes the file of `appEnv` hold exactly `text` (`undefined`: no file), after
   * everything queued before it. For a directory that is a view of another
   * registry (etcd). A file that already holds `text` is not written again.
   */
  mirror(appEnv: AppEnv, text: string | undefined): Promise<void> {
    const key = appEnvKey(appEnv);
    if (text !== undefined && this.entries.get(key)?.text === text && !this.brokenOnDisk.has(key) && !this.lanes.busy(key)) return Promise.resolve();
    return new Promise((resolvePromise, reject) => {
      this.lanes.push(appEnvKey(appEnv), {
        kind: "mirror",
        appEnv,
        text,
        settle: (error) => (error === undefined ? resolvePromise() : reject(error)),
      });
    });
  }

  /** Resolves once every queued change has been written and answered. */
  idle(): Promise<void> {
    return this.lanes.idle();
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
    for (const name of await readdir(this.directory)) {
      if (isLeftoverTempFile(name)) await this.removeLeftover(name);
      else {
        const appEnv = appEnvOfFileName(name);
        if (appEnv !== undefined) this.accept(appEnv, readSync(join(this.directory, name)), "load");
      }
    }
    this.logger.info({ directory: this.directory, groups: this.entries.size }, "loaded file_sd directory");
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
      this.brokenOnDisk.add(key);
      fromOutside();
      return;
    }
    const { text, changedAt } = read;
    if (known !== undefined && text === known.text) return;

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
      this.brokenOnDisk.add(key);
      fromOutside();
      return;
    }
    this.brokenOnDisk.delete(key);
    if (group === undefined) this.entries.delete(key);
    else this.entries.set(key, { appEnv, fileName, group, changedAt, text });
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
    let state = this.entries.get(key)?.group;
    for (const job of jobs) {
      if (job.kind !== "mutation") continue;
      try {
        const after = job.mutation(state);
        accepted.push({ job, outcome: { before: state, after } });
        state = after ?? undefined;
      } catch (error) {
        job.settle(error as Error);
      }
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
    if (text !== undefined && known?.text === text && !this.brokenOnDisk.has(key)) {
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
    this.brokenOnDisk.delete(key);
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
    else this.entries.set(key, { appEnv, fileName: fileNameOf(appEnv), group, changedAt, text });
  }

  /** Writes the group the accepted changes led to, then swaps it in and answers them all. */
  private async commit(
    appEnv: AppEnv,
    state: TargetGroup | undefined,
    accepted: readonly { job: MutationJob; outcome: Outcome }[],
  ): Promise<void> {
    if (accepted.length === 0) return;
    const key = appEnvKey(appEnv);
    const fileName = fileNameOf(appEnv);
    const path = join(this.directory, fileName);
    const started = process.hrtime.bigint();
    const text = state === undefined ? "" : serializeGroup(state);
    try {
      if (state === undefined) {
        await unlink(path).catch((error: NodeJS.ErrnoException) => {
          if (error.code !== "ENOENT") throw error;
        });
      } else {
        await writeFileAtomically(path, text, this.fileMode);
      }
    } catch (error) {
      this.observer.writeFailed?.(fileName);
      this.logger.error({ file: fileName, err: error }, "write failed; nothing changed");
      const failure = new StoreError(
        `could not ${state === undefined ? "remove" : "write"} ${fileName}: ${(error as Error).message}; ` +
          "the change was not applied",
        { cause: error },
      );
      for (const { job } of accepted) job.settle(failure);
      return;
    }
    let durability: Error | undefined;
    try {
      await this.directorySync.sync();
    } catch (error) {
      durability = error as Error;
    }

    this.brokenOnDisk.delete(key);
    if (state === undefined) {
      this.entries.delete(key);
      this.observer.fileRemoved?.(fileName);
      this.logger.info({ file: fileName, changes: accepted.length }, "file removed");
    } else {
      this.entries.set(key, { appEnv, fileName, group: state, changedAt: new Date(), text });
      const seconds = Number(process.hrtime.bigint() - started) / 1e9;
      this.observer.fileWritten?.(fileName, seconds);
      this.logger.info({ file: fileName, targets: state.targets.length, changes: accepted.length }, "file written");
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
}
