import { readdir } from "node:fs/promises";
import type { Etcd3, IKeyValue, IRangeResponse, ITxnResponse, Namespace, Watcher } from "etcd3";
import type { Logger } from "pino";
import type { EtcdConfig } from "../config.js";
import { StoreError, StoreUnavailableError } from "../errors.js";
import { parseGroupFile, serializeGroup } from "../filestore/group-file.js";
import { Lanes } from "../filestore/lanes.js";
import { appEnvOfFileName, fileNameOf } from "../filestore/naming.js";
import type { FileStore } from "../filestore/store.js";
import { appEnvKey, type AppEnv, type TargetGroup } from "../model.js";
import type { Entry, Mutation, Outcome, Store } from "../store.js";
import { beforeDeadline, DeadlineError, describeEtcdError, GROUPS, unavailable } from "./client.js";
import { EVERY_GROUP, type GroupSelector } from "./selector.js";

/** Hooks for metrics; every one is optional. */
export interface EtcdObserver {
  connected?(connected: boolean): void;
  watchRestarted?(): void;
  resynced?(seconds: number): void;
  conflict?(): void;
  committed?(seconds: number): void;
  putBack?(fileName: string): void;
}

export interface EtcdStoreOptions {
  readonly config: EtcdConfig;
  readonly client: Etcd3;
  /** The client's view of ETCD_PREFIX: keys here are `groups/<application>@<environment>`. */
  readonly namespace: Namespace;
  /** The directory this instance keeps in step with etcd. */
  readonly view: FileStore;
  readonly logger: Logger;
  readonly observer?: EtcdObserver;
  /** For tests: how often etcd's health is checked. */
  readonly probeIntervalMs?: number;
}

/** One batch of changes to one key. */
interface UpdateJob {
  readonly appEnv: AppEnv;
  readonly mutation: Mutation;
  /** Date.now() + ETCD_TIMEOUT when the request arrived: its answer is due by then. */
  readonly deadline: number;
  settle(outcome: Outcome | Error): void;
}

/** What this instance knows of one key: the revision that last changed it, and its group when valid. */
interface Known {
  readonly revision: number;
  /** undefined: deleted at `revision` (a tombstone) or a value that is not a valid group. */
  readonly entry: Entry | undefined;
  readonly present: boolean;
}

/** How many times one batch re-reads and re-applies after another instance changed the same key. */
const MAX_ATTEMPTS = 16;
const RESYNC_BACKOFF_MS = [100, 250, 500, 1000, 2000] as const;

/**
 * etcd is the registry (SPEC §9); the directory is a view of it.
 *
 * A change: the mutation is applied to the value this instance knows, at
 * revision R, and committed in one transaction that compares R. When another
 * instance got there first, the transaction answers the current value, and the
 * mutation runs again on it. Once committed, the new value goes into memory
 * and, when the group matches GROUP_SELECTOR, into this instance's file before
 * the request is answered.
 *
 * Other instances' changes arrive through one watch on `groups/`. At start, and
 * whenever the watch is lost (disconnect, compaction, etcd without quorum), a
 * resync reads every group at one revision, makes memory and the directory
 * equal to it, and watches from the next revision.
 *
 * Per key, memory only moves forward: a value is taken only when its revision
 * is newer than the one known, so the watch, this instance's own commits and a
 * resync can arrive in any order.
 */
export class EtcdStore implements Store {
  private readonly config: EtcdConfig;
  private readonly client: Etcd3;
  private readonly namespace: Namespace;
  private readonly view: FileStore;
  private readonly logger: Logger;
  private readonly observer: EtcdObserver;
  private readonly selects: GroupSelector;
  private readonly known = new Map<string, Known>();
  private readonly entries = new Map<string, Entry>();
  private readonly lanes = new Lanes<UpdateJob>((key, jobs) => this.runBatch(key, jobs));
  private watcher: Watcher | undefined;
  /** Bumped at every resync: events from a watcher of an earlier generation are ignored. */
  private generation = 0;
  private synced = false;
  private problem: string | undefined = "not yet in step with etcd: the first sync has not finished";
  private resyncing: Promise<void> | undefined;
  private probeTimer: NodeJS.Timeout | undefined;
  private closed = false;

  private constructor(options: EtcdStoreOptions) {
    this.config = options.config;
    this.client = options.client;
    this.namespace = options.namespace;
    this.view = options.view;
    this.logger = options.logger;
    this.observer = options.observer ?? {};
    this.selects = options.config.groupSelector?.matches ?? EVERY_GROUP;
  }

  /**
   * Serves what the directory holds until the first sync with etcd is done
   * (GET keeps answering while etcd is down), then etcd's values. Resolves at
   * once: the sync runs in the background, and `notReadyBecause` says when it is done.
   */
  static open(options: EtcdStoreOptions): EtcdStore {
    const store = new EtcdStore(options);
    for (const entry of options.view.list()) store.entries.set(appEnvKey(entry.appEnv), entry);
    store.startResync("start");
    const probe = (): void => {
      store.probeTimer = setTimeout(() => {
        void store.probe().finally(() => {
          if (!store.closed) probe();
        });
      }, options.probeIntervalMs ?? 1000);
    };
    probe();
    return store;
  }

  get(appEnv: AppEnv): TargetGroup | undefined {
    return this.entries.get(appEnvKey(appEnv))?.group;
  }

  list(): IterableIterator<Entry> {
    return this.entries.values();
  }

  get size(): number {
    return this.entries.size;
  }

  update(appEnv: AppEnv, mutation: Mutation): Promise<Outcome> {
    return new Promise((resolve, reject) => {
      this.lanes.push(appEnvKey(appEnv), {
        appEnv,
        mutation,
        deadline: Date.now() + this.config.timeoutMs,
        settle: (outcome) => (outcome instanceof Error ? reject(outcome) : resolve(outcome)),
      });
    });
  }

  idle(): Promise<void> {
    return this.lanes.idle();
  }

  /** undefined when in step with etcd and watching; else why not, for `/-/ready`. */
  notReadyBecause(): string | undefined {
    return this.problem;
  }

  /** Called by the directory watch: someone else changed a managed file; etcd's value goes back. */
  putBack(appEnv: AppEnv): void {
    if (!this.synced) return;
    const fileName = fileNameOf(appEnv);
    this.observer.putBack?.(fileName);
    this.logger.warn({ file: fileName }, "managed file changed from outside; putting etcd's value back");
    void this.view.mirror(appEnv, this.fileTextOf(appEnvKey(appEnv))).catch(() => undefined);
  }

  async close(): Promise<void> {
    this.closed = true;
    clearTimeout(this.probeTimer);
    await this.lanes.idle();
    await this.resyncing;
    await this.watcher?.cancel().catch(() => undefined);
    this.client.close();
  }

  // ---- changes ----------------------------------------------------------------

  /**
   * Every change queued for one key, applied in arrival order and committed in
   * one transaction. A refusal is only final once the transaction has
   * confirmed that the value it was computed from is still etcd's newest.
   */
  private async runBatch(key: string, jobs: UpdateJob[]): Promise<void> {
    const appEnv = jobs[0]!.appEnv;
    // The batch answers by the deadline of its oldest request, however long that one waited in the lane.
    const deadline = Math.min(...jobs.map((job) => job.deadline));
    try {
      if (!this.synced) await this.refresh(key, appEnv, deadline);
      for (let attempt = 1; ; attempt++) {
        const base = this.known.get(key);
        const baseRevision = base?.present === true ? base.revision : 0;
        const results = applyAll(jobs, base?.entry?.group);
        const started = process.hrtime.bigint();
        const committed = await this.commit(key, baseRevision, results.changed ? results.text : NO_CHANGE, deadline);
        if (committed !== undefined) {
          this.observer.committed?.(Number(process.hrtime.bigint() - started) / 1e9);
          if (results.changed) await this.take(appEnv, results.text, committed);
          for (const { job, outcome } of results.settled) job.settle(outcome);
          return;
        }
        this.observer.conflict?.();
        if (attempt >= MAX_ATTEMPTS) {
          throw new StoreUnavailableError(
            `${fileNameOf(appEnv)} kept changing under this request: ${MAX_ATTEMPTS} attempts each found a newer value ` +
              "written by another instance. Nothing was changed by this request; try again.",
          );
        }
      }
    } catch (error) {
      const failure = error instanceof StoreError ? error : unavailable(this.config, `commit a change to ${fileNameOf(appEnv)}`, error);
      for (const job of jobs) job.settle(failure);
    }
  }

  /**
   * One transaction: when the key's revision is still `baseRevision`, write
   * `text` (a string), delete (undefined), or only confirm (NO_CHANGE).
   * Returns the revision of the commit, or undefined after a conflict, with
   * the newer value already taken in. A call that failed after reaching etcd
   * may have been applied: the key is read again to tell.
   */
  private async commit(key: string, baseRevision: number, text: string | undefined | typeof NO_CHANGE, deadline: number): Promise<number | undefined> {
    const etcdKey = GROUPS + key;
    let ambiguous = false;
    for (let attempt = 0; ; attempt++) {
      let response: ITxnResponse;
      // An attempt gets a third of ETCD_TIMEOUT: one stuck on a member that
      // just died leaves time to try another once a new leader is elected.
      const attemptDeadline = Math.min(deadline, Date.now() + Math.max(250, this.config.timeoutMs / 3));
      try {
        response = await beforeDeadline(attemptDeadline, (grpcDeadline) => {
          const txn = this.namespace.if(etcdKey, "Mod", "==", baseRevision).options({ deadline: grpcDeadline });
          if (text === NO_CHANGE) txn.then();
          else if (text === undefined) txn.then(this.namespace.delete().key(etcdKey));
          else txn.then(this.namespace.put(etcdKey).value(text));
          return txn.else(this.namespace.get(etcdKey)).commit();
        });
      } catch (error) {
        // A member lost mid-call, an election: the transaction may or may not
        // have been applied. Sending it again is safe, because it compares the
        // revision: at most one of the attempts can apply.
        if (Date.now() >= deadline) throw error instanceof DeadlineError ? error : new DeadlineError(error);
        ambiguous = true;
        await sleep(Math.min(25 * 2 ** attempt, 400, Math.max(0, deadline - Date.now())));
        continue;
      }
      if (response.succeeded) return Number(response.header.revision);
      const kv = response.responses[0]?.response_range?.kvs[0];
      const current = kv === undefined ? absentAt(Number(response.header.revision)) : valueOf(kv);
      // An earlier attempt that looked failed but was applied: etcd holds our value, newer than the base.
      if (ambiguous && text !== NO_CHANGE && current.text === text && current.revision > baseRevision) return current.revision;
      // The file follows in the background; a failed write there is logged by the view.
      void this.takeKv(key, current).catch(() => undefined);
      return undefined;
    }
  }

  /** Before the first sync, memory may hold the directory's old files: read the key itself. */
  private async refresh(key: string, appEnv: AppEnv, deadline: number): Promise<void> {
    const current = await this.readKey(key, deadline);
    void this.takeKv(key, current).catch(() => undefined);
    if (!this.known.has(key)) this.entries.delete(appEnvKey(appEnv));
  }

  private async readKey(key: string, deadline: number): Promise<KeyValue> {
    const response: IRangeResponse = await beforeDeadline(deadline, (grpcDeadline) =>
      this.namespace.get(GROUPS + key).options({ deadline: grpcDeadline }).exec(),
    );
    const kv = response.kvs[0];
    return kv === undefined ? absentAt(Number(response.header.revision)) : valueOf(kv);
  }

  // ---- memory and the directory --------------------------------------------------

  /** This instance's own commit: into memory, then into the file, before the answer. */
  private async take(appEnv: AppEnv, text: string | undefined, revision: number): Promise<void> {
    const key = appEnvKey(appEnv);
    const written = this.takeKv(key, text === undefined ? absentAt(revision) : { present: true, text, revision });
    try {
      await written;
    } catch (error) {
      throw new StoreError(
        `the change is committed in etcd, but this instance could not write ${fileNameOf(appEnv)}: ` +
          `${(error as Error).message}. Other instances have it; this directory catches up at the next resync.`,
        { cause: error },
      );
    }
  }

  /**
   * Takes a value of one key into memory when it is newer than what is known,
   * and brings the file in step. Resolves once the file is written; a value
   * that is not newer resolves at once.
   */
  private takeKv(key: string, value: KeyValue): Promise<void> {
    const appEnv = appEnvOfKey(key);
    if (appEnv === undefined) return Promise.resolve();
    const known = this.known.get(key);
    if (known !== undefined && value.revision <= known.revision) return this.view.mirror(appEnv, this.fileTextOf(key));

    let entry: Entry | undefined;
    const same = this.entries.get(key);
    if (value.present && same?.text === value.text) {
      entry = same;
    } else if (value.present) {
      try {
        const group = parseGroupFile(value.text);
        if (group !== undefined) entry = { appEnv, fileName: fileNameOf(appEnv), group, changedAt: new Date(), text: value.text };
      } catch (error) {
        this.logger.warn(
          { key: this.config.prefix + GROUPS + key, reason: (error as Error).message },
          "etcd holds a value that is not a valid target group; treated as not registered",
        );
      }
    }
    this.known.set(key, { revision: value.revision, entry, present: value.present });
    if (entry === undefined) this.entries.delete(key);
    else this.entries.set(key, entry);
    return this.view.mirror(appEnv, this.fileTextOf(key));
  }

  /**
   * A deleted key's revision is kept only while it can still matter: to refuse
   * an older value of the key arriving late. The watch delivers a key's events
   * in order, so once its delete arrived, only a commit of this instance still
   * running for the key could bring an older one.
   */
  private forgetTombstone(key: string): void {
    if (this.known.get(key)?.present === false && !this.lanes.busy(key)) this.known.delete(key);
  }

  /** What this instance's file should hold: the group's text when it matches GROUP_SELECTOR. */
  private fileTextOf(key: string): string | undefined {
    const entry = this.entries.get(key);
    return entry !== undefined && this.selects(entry.group.labels) ? entry.text : undefined;
  }

  // ---- watch, resync, health ----------------------------------------------------

  private startResync(reason: string): void {
    if (this.closed || this.resyncing !== undefined) return;
    this.generation++;
    const old = this.watcher;
    this.watcher = undefined;
    void old?.cancel().catch(() => undefined);
    if (reason !== "start") {
      this.observer.watchRestarted?.();
      this.problem = `resyncing with etcd (${this.config.endpoints.join(", ")}) after ${reason}`;
    }
    this.resyncing = this.resyncUntilDone(reason).finally(() => (this.resyncing = undefined));
  }

  private async resyncUntilDone(reason: string): Promise<void> {
    for (let attempt = 0; !this.closed; attempt++) {
      try {
        await this.resync(reason);
        return;
      } catch (error) {
        this.problem = `cannot sync with etcd (${this.config.endpoints.join(", ")}): ${describeEtcdError(error)}`;
        this.observer.connected?.(false);
        if (attempt === 0 || attempt % 20 === 0) this.logger.error({ err: error }, "sync with etcd failed; retrying");
        await sleep(RESYNC_BACKOFF_MS[Math.min(attempt, RESYNC_BACKOFF_MS.length - 1)]!);
      }
    }
  }

  /** Reads every group at one revision, makes memory and the directory equal to it, then watches from the next. */
  private async resync(reason: string): Promise<void> {
    const started = process.hrtime.bigint();
    const generation = this.generation;
    const response = await beforeDeadline(Date.now() + this.config.timeoutMs * 4, (deadline) =>
      this.namespace.getAll().prefix(GROUPS).options({ deadline }).exec(),
    );
    const revision = Number(response.header.revision);
    const inEtcd = new Set<string>();
    const writes: Promise<void>[] = [];
    for (const kv of response.kvs) {
      const key = kv.key.toString().slice(GROUPS.length);
      inEtcd.add(key);
      writes.push(this.takeKv(key, valueOf(kv)));
    }
    for (const [key, known] of this.known) {
      if (!inEtcd.has(key) && known.present && known.revision <= revision) writes.push(this.takeKv(key, absentAt(revision)));
    }
    // Groups served from the directory before the first sync, and managed files etcd lacks.
    for (const key of this.entries.keys()) if (!this.known.has(key)) this.entries.delete(key);
    const names = await readdir(this.view.directory).catch((error: unknown) => error as Error);
    if (!(names instanceof Error)) {
      for (const name of names) {
        const appEnv = appEnvOfFileName(name);
        if (appEnv !== undefined && !inEtcd.has(appEnvKey(appEnv))) writes.push(this.view.mirror(appEnv, this.fileTextOf(appEnvKey(appEnv))));
      }
    }
    const failed = (await Promise.allSettled(writes)).filter((result) => result.status === "rejected");
    if (names instanceof Error) throw names;
    if (failed.length > 0) {
      throw new Error(`${failed.length} files could not be brought in step: ${String((failed[0] as PromiseRejectedResult).reason)}`);
    }
    if (generation !== this.generation || this.closed) return;
    for (const key of [...this.known.keys()]) this.forgetTombstone(key);

    await this.watchFrom(revision + 1, generation);
    this.synced = true;
    this.problem = undefined;
    this.observer.connected?.(true);
    const seconds = Number(process.hrtime.bigint() - started) / 1e9;
    this.observer.resynced?.(seconds);
    this.logger.info({ reason, revision, groups: this.entries.size, files: this.view.size, seconds }, "in step with etcd; watching");
  }

  private async watchFrom(startRevision: number, generation: number): Promise<void> {
    const watcher = this.namespace.watch().prefix(GROUPS).startRevision(String(startRevision)).watcher();
    const current = (): boolean => generation === this.generation && !this.closed && this.watcher === watcher;
    this.watcher = watcher;
    let onConnected: () => void = () => undefined;
    let onFailed: (error: Error) => void = () => undefined;
    const connected = new Promise<void>((resolve, reject) => {
      onConnected = resolve;
      onFailed = reject;
    });
    watcher.once("connected", () => onConnected());
    watcher.on("put", (kv) => {
      if (current()) void this.takeKv(kv.key.toString().slice(GROUPS.length), valueOf(kv)).catch(() => undefined);
    });
    watcher.on("delete", (kv) => {
      if (!current()) return;
      const key = kv.key.toString().slice(GROUPS.length);
      void this.takeKv(key, absentAt(Number(kv.mod_revision))).catch(() => undefined);
      this.forgetTombstone(key);
    });
    watcher.on("disconnected", (error: Error) => {
      onFailed(error);
      if (!current() || !this.synced || this.resyncing !== undefined) return;
      this.logger.warn({ err: error }, "etcd watch disconnected");
      this.observer.connected?.(false);
      this.startResync("a lost watch");
    });
    watcher.on("error", (error: Error) => {
      onFailed(error);
      if (!current() || this.resyncing !== undefined) return;
      this.logger.warn({ err: error }, "etcd watch canceled (compacted past its revision?)");
      this.startResync(`a canceled watch (${describeEtcdError(error)})`);
    });
    try {
      await beforeDeadline(Date.now() + this.config.timeoutMs, () => connected);
    } catch (error) {
      if (this.watcher === watcher) this.watcher = undefined;
      void watcher.cancel().catch(() => undefined);
      throw error;
    }
  }

  /**
   * A linearizable read every second: it needs a quorum, so it tells whether
   * etcd can take writes, which the watch alone does not (a member without
   * quorum keeps the stream open). Coming back after a failure means a resync.
   */
  private async probe(): Promise<void> {
    if (this.resyncing !== undefined || this.closed) return;
    try {
      await beforeDeadline(Date.now() + Math.min(this.config.timeoutMs, 2000), (deadline) =>
        this.namespace.get("health").options({ deadline }).exec(),
      );
      if (this.problem !== undefined && this.synced) {
        this.logger.info("etcd answers again");
        this.startResync("etcd being unreachable");
      } else {
        this.observer.connected?.(true);
      }
    } catch (error) {
      if (this.problem === undefined) this.logger.error({ err: error }, "etcd does not answer a quorum read; writes will answer 503");
      this.problem = `etcd (${this.config.endpoints.join(", ")}) is unreachable or without quorum: ${describeEtcdError(error)}`;
      this.observer.connected?.(false);
    }
  }
}

const NO_CHANGE = Symbol("no change");

type KeyValue = { readonly present: true; readonly text: string; readonly revision: number } | { readonly present: false; readonly text?: undefined; readonly revision: number };

function valueOf(kv: IKeyValue): KeyValue {
  return { present: true, text: kv.value.toString("utf8"), revision: Number(kv.mod_revision) };
}

function absentAt(revision: number): KeyValue {
  return { present: false, revision };
}

function appEnvOfKey(key: string): AppEnv | undefined {
  return appEnvOfFileName(`${key}.json`);
}

/**
 * The batch's mutations in arrival order on `current`, as in the file store:
 * each one sees the result of the ones before; a refusal leaves the state as it was.
 */
function applyAll(jobs: readonly UpdateJob[], current: TargetGroup | undefined) {
  const settled: { job: UpdateJob; outcome: Outcome | Error }[] = [];
  let state = current;
  let changed = false;
  for (const job of jobs) {
    try {
      const after = job.mutation(state);
      settled.push({ job, outcome: { before: state, after } });
      state = after ?? undefined;
      changed = true;
    } catch (error) {
      settled.push({ job, outcome: error as Error });
    }
  }
  return { settled, changed, text: state === undefined ? undefined : serializeGroup(state) };
}

function sleep(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms));
}
