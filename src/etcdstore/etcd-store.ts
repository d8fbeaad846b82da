import { readdir } from "node:fs/promises";
import type { Etcd3, IKeyValue, IRangeResponse, ITxnResponse, Namespace, Watcher } from "etcd3";
import type { Logger } from "pino";
import type { EtcdConfig } from "../config.js";
import { StoreError, StoreUnavailableError } from "../errors.js";
import { parseDeadlines, serializeDeadlines } from "../filestore/deadlines-file.js";
import { parseGroupFile, serializeGroup } from "../filestore/group-file.js";
import { Lanes } from "../filestore/lanes.js";
import { appEnvOfFileName, fileNameOf } from "../filestore/naming.js";
import type { FileStore } from "../filestore/store.js";
import { appEnvKey, deadlinesOf, NO_DEADLINES, type AppEnv, type Deadlines, type Registration, type TargetGroup } from "../model.js";
import type { Entry, Mutation, Outcome, Store } from "../store.js";
import { beforeDeadline, DeadlineError, describeEtcdError, EXPIRES, GROUPS, unavailable } from "./client.js";
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
  /** The clock mutations are given (ms since the epoch); Date.now unless a test offsets it. */
  readonly now?: () => number;
}

/** One batch of changes to one key. */
interface UpdateJob {
  readonly appEnv: AppEnv;
  readonly mutation: Mutation;
  /** Date.now() + ETCD_TIMEOUT when the request arrived: its answer is due by then. */
  readonly deadline: number;
  settle(outcome: Outcome | Error): void;
}

/**
 * What this instance knows of one application/environment: its two keys, each
 * with the revision that last changed it (a deletion is a tombstone at its
 * revision), and the entry they make when the group is valid.
 */
interface Known {
  readonly group: KeyValue;
  readonly expires: KeyValue;
  /** The expires key's value, parsed (every target it lists). */
  readonly deadlines: Deadlines;
  /** undefined: no group key, or a value that is not a valid group. */
  readonly entry: Entry | undefined;
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
  private readonly now: () => number;
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
    this.now = options.now ?? Date.now;
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
        const baseRevisions = { group: base?.group.present === true ? base.group.revision : 0, expires: base?.expires.present === true ? base.expires.revision : 0 };
        const current = base?.entry === undefined ? undefined : { group: base.entry.group, expires: base.entry.expires };
        const results = applyAll(jobs, current, this.now());
        // A key that exists is never deleted: a group that goes leaves "nothing registered" in
        // its key, and no deadlines in its deadlines key. Deleted, the key would be absent
        // again, and a transaction computed back when it was absent (comparing revision 0)
        // and delayed in etcd (a member lost mid-call) could still apply and bring back
        // what was deleted since.
        const groupText = results.groupText ?? (base?.group.present === true ? NOTHING_REGISTERED : undefined);
        const expiresText = results.expiresText ?? (base?.expires.present === true ? NO_DEADLINES_TEXT : undefined);
        // Only the keys whose bytes change are written: a heartbeat that only renews deadlines leaves the group key alone.
        const writes = {
          group: results.changed && groupText !== base?.group.text ? groupText : NO_CHANGE,
          expires: results.changed && expiresText !== base?.expires.text ? expiresText : NO_CHANGE,
        } as const;
        const started = process.hrtime.bigint();
        const committed = await this.commit(key, baseRevisions, writes, deadline);
        if (committed !== undefined) {
          this.observer.committed?.(Number(process.hrtime.bigint() - started) / 1e9);
          if (writes.group !== NO_CHANGE || writes.expires !== NO_CHANGE) await this.take(appEnv, writes, committed);
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
   * One transaction: when both keys of the group (its file's bytes, its
   * deadlines) are still at their base revisions, write each one's new value
   * (a string), delete it (undefined), or leave it (NO_CHANGE; with both left,
   * the transaction only confirms). Comparing both keys is what makes an expiry
   * computed on an old value fail when a heartbeat renewed the deadline, and a
   * renewal fail when the target has just expired.
   * Returns the revision of the commit, or undefined after a conflict, with
   * the newer values already taken in. A call that failed after reaching etcd
   * may have been applied: the keys are read again to tell.
   */
  private async commit(key: string, base: { group: number; expires: number }, writes: { group: Write; expires: Write }, deadline: number): Promise<number | undefined> {
    const keys = { group: GROUPS + key, expires: EXPIRES + key };
    const writesSomething = writes.group !== NO_CHANGE || writes.expires !== NO_CHANGE;
    let ambiguous = false;
    for (let attempt = 0; ; attempt++) {
      let response: ITxnResponse;
      // An attempt gets a third of ETCD_TIMEOUT: one stuck on a member that
      // just died leaves time to try another once a new leader is elected.
      const attemptDeadline = Math.min(deadline, Date.now() + Math.max(250, this.config.timeoutMs / 3));
      try {
        response = await beforeDeadline(attemptDeadline, (grpcDeadline) => {
          const txn = this.namespace
            .if(keys.group, "Mod", "==", base.group)
            .and(keys.expires, "Mod", "==", base.expires)
            .options({ deadline: grpcDeadline });
          const operations = (["group", "expires"] as const).flatMap((part) => {
            const value = writes[part];
            if (value === NO_CHANGE) return [];
            return [value === undefined ? this.namespace.delete().key(keys[part]) : this.namespace.put(keys[part]).value(value)];
          });
          txn.then(...operations);
          return txn.else(this.namespace.get(keys.group), this.namespace.get(keys.expires)).commit();
        });
      } catch (error) {
        // A member lost mid-call, an election: the transaction may or may not
        // have been applied. Sending it again is safe, because it compares the
        // revisions: at most one of the attempts can apply.
        if (Date.now() >= deadline) throw error instanceof DeadlineError ? error : new DeadlineError(error);
        ambiguous = true;
        await sleep(Math.min(25 * 2 ** attempt, 400, Math.max(0, deadline - Date.now())));
        continue;
      }
      if (response.succeeded) return Number(response.header.revision);
      const revision = Number(response.header.revision);
      const read = (index: number): KeyValue => {
        const kv = response.responses[index]?.response_range?.kvs[0];
        return kv === undefined ? absentAt(revision) : valueOf(kv);
      };
      const current = { group: read(0), expires: read(1) };
      // An earlier attempt that looked failed but was applied: etcd holds our values, newer than the base.
      const ours = (part: "group" | "expires"): boolean =>
        writes[part] === NO_CHANGE || (current[part].text === writes[part] && current[part].revision > base[part]);
      if (ambiguous && writesSomething && ours("group") && ours("expires")) {
        return Math.max(...(["group", "expires"] as const).filter((part) => writes[part] !== NO_CHANGE).map((part) => current[part].revision));
      }
      // The file follows in the background; a failed write there is logged by the view.
      void this.takeValues(key, current).catch(() => undefined);
      return undefined;
    }
  }

  /** Before the first sync, memory may hold the directory's old files: read the key itself. */
  private async refresh(key: string, appEnv: AppEnv, deadline: number): Promise<void> {
    const [group, expires] = [await this.readKey(GROUPS + key, deadline), await this.readKey(EXPIRES + key, deadline)];
    void this.takeValues(key, { group, expires }).catch(() => undefined);
    if (!this.known.has(key)) this.entries.delete(appEnvKey(appEnv));
  }

  private async readKey(etcdKey: string, deadline: number): Promise<KeyValue> {
    const response: IRangeResponse = await beforeDeadline(deadline, (grpcDeadline) =>
      this.namespace.get(etcdKey).options({ deadline: grpcDeadline }).exec(),
    );
    const kv = response.kvs[0];
    return kv === undefined ? absentAt(Number(response.header.revision)) : valueOf(kv);
  }

  // ---- memory and the directory --------------------------------------------------

  /** This instance's own commit: into memory, then into the file, before the answer. */
  private async take(appEnv: AppEnv, writes: { group: Write; expires: Write }, revision: number): Promise<void> {
    const key = appEnvKey(appEnv);
    const valueAt = (write: string | undefined): KeyValue => (write === undefined ? absentAt(revision) : { present: true, text: write, revision });
    const written = this.takeValues(key, {
      group: writes.group === NO_CHANGE ? undefined : valueAt(writes.group),
      expires: writes.expires === NO_CHANGE ? undefined : valueAt(writes.expires),
    });
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
   * Takes the values of a group's keys into memory, each only when it is newer
   * than what is known of that key, and brings the file in step. Resolves once
   * the file is written; when nothing is newer, resolves at once.
   */
  private takeValues(key: string, values: { readonly group?: KeyValue; readonly expires?: KeyValue }): Promise<void> {
    const appEnv = appEnvOfKey(key);
    if (appEnv === undefined) return Promise.resolve();
    const known = this.known.get(key);
    const newer = (value: KeyValue | undefined, than: KeyValue | undefined): value is KeyValue => value !== undefined && (than === undefined || value.revision > than.revision);
    const groupValue = newer(values.group, known?.group) ? values.group : undefined;
    const expiresValue = newer(values.expires, known?.expires) ? values.expires : undefined;
    if (groupValue === undefined && expiresValue === undefined) return this.view.mirror(appEnv, this.fileTextOf(key));

    let entry = known?.entry;
    if (groupValue !== undefined) {
      entry = undefined;
      const same = this.entries.get(key);
      if (groupValue.present && same?.text === groupValue.text) {
        entry = same;
      } else if (groupValue.present) {
        try {
          const group = parseGroupFile(groupValue.text);
          if (group !== undefined) entry = { appEnv, fileName: fileNameOf(appEnv), group, expires: NO_DEADLINES, changedAt: new Date(), text: groupValue.text };
        } catch (error) {
          this.logger.warn(
            { key: this.config.prefix + GROUPS + key, reason: (error as Error).message },
            "etcd holds a value that is not a valid target group; treated as not registered",
          );
        }
      }
    }
    let deadlines = known?.deadlines ?? NO_DEADLINES;
    if (expiresValue !== undefined) {
      deadlines = NO_DEADLINES;
      if (expiresValue.present) {
        try {
          deadlines = parseDeadlines(expiresValue.text);
        } catch (error) {
          this.logger.warn(
            { key: this.config.prefix + EXPIRES + key, reason: (error as Error).message },
            "etcd holds deadlines that are not valid; the group's targets are treated as permanent",
          );
        }
      }
    }
    // A deadline for a target the group does not have means nothing.
    if (entry !== undefined) entry = { ...entry, expires: deadlinesOf(deadlines, entry.group.targets) };
    this.known.set(key, {
      group: groupValue ?? known?.group ?? absentAt(0),
      expires: expiresValue ?? known?.expires ?? absentAt(0),
      deadlines,
      entry,
    });
    if (entry === undefined) this.entries.delete(key);
    else this.entries.set(key, entry);
    return this.view.mirror(appEnv, this.fileTextOf(key));
  }

  /**
   * A deleted key's revisions are kept only while they can still matter: to
   * refuse an older value arriving late. The watch delivers a key's events in
   * order, so once its deletes arrived, only a commit of this instance still
   * running for the key could bring an older one.
   */
  private forgetTombstone(key: string): void {
    const known = this.known.get(key);
    if (known !== undefined && !known.group.present && !known.expires.present && !this.lanes.busy(key)) this.known.delete(key);
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
    // Every key under the prefix, groups and deadlines, at one revision.
    const response = await beforeDeadline(Date.now() + this.config.timeoutMs * 4, (deadline) =>
      this.namespace.getAll().prefix("").options({ deadline }).exec(),
    );
    const revision = Number(response.header.revision);
    const inEtcd = new Map<string, { group?: KeyValue; expires?: KeyValue }>();
    for (const kv of response.kvs) {
      const part = partOf(kv.key.toString());
      if (part === undefined) continue;
      inEtcd.set(part.key, { ...inEtcd.get(part.key), [part.part]: valueOf(kv) });
    }
    const writes: Promise<void>[] = [];
    for (const key of new Set([...inEtcd.keys(), ...this.known.keys()])) {
      const values = inEtcd.get(key);
      writes.push(this.takeValues(key, { group: values?.group ?? absentAt(revision), expires: values?.expires ?? absentAt(revision) }));
    }
    // Groups served from the directory before the first sync, and managed files etcd lacks.
    for (const key of this.entries.keys()) if (!this.known.has(key)) this.entries.delete(key);
    const names = await readdir(this.view.directory).catch((error: unknown) => error as Error);
    if (!(names instanceof Error)) {
      for (const name of names) {
        const appEnv = appEnvOfFileName(name);
        if (appEnv !== undefined && inEtcd.get(appEnvKey(appEnv))?.group === undefined) writes.push(this.view.mirror(appEnv, this.fileTextOf(appEnvKey(appEnv))));
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
    const watcher = this.namespace.watch().prefix("").startRevision(String(startRevision)).watcher();
    const current = (): boolean => generation === this.generation && !this.closed && this.watcher === watcher;
    this.watcher = watcher;
    let onConnected: () => void = () => undefined;
    let onFailed: (error: Error) => void = () => undefined;
    const connected = new Promise<void>((resolve, reject) => {
      onConnected = resolve;
      onFailed = reject;
    });
    watcher.once("connected", () => onConnected());
    const onChange = (kv: IKeyValue, value: KeyValue): void => {
      const part = partOf(kv.key.toString());
      if (current() && part !== undefined) void this.takeValues(part.key, { [part.part]: value }).catch(() => undefined);
    };
    watcher.on("put", (kv) => onChange(kv, valueOf(kv)));
    watcher.on("delete", (kv) => {
      onChange(kv, absentAt(Number(kv.mod_revision)));
      const part = partOf(kv.key.toString());
      if (part !== undefined) this.forgetTombstone(part.key);
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
/** What the key of a deleted group holds: the file_sd document with no group in it. */
export const NOTHING_REGISTERED = "[]\n";
/** What the deadlines key holds once a group has none left. */
const NO_DEADLINES_TEXT = "{}\n";
/** A key's new value: its bytes, undefined to delete it, or NO_CHANGE to leave it. */
type Write = string | undefined | typeof NO_CHANGE;

/** `groups/<key>` or `expires/<key>`; undefined for anything else under the prefix. */
function partOf(etcdKey: string): { part: "group" | "expires"; key: string } | undefined {
  if (etcdKey.startsWith(GROUPS)) return { part: "group", key: etcdKey.slice(GROUPS.length) };
  if (etcdKey.startsWith(EXPIRES)) return { part: "expires", key: etcdKey.slice(EXPIRES.length) };
  return undefined;
}

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
function applyAll(jobs: readonly UpdateJob[], current: Registration | undefined, now: number) {
  const settled: { job: UpdateJob; outcome: Outcome | Error }[] = [];
  let state = current;
  for (const job of jobs) {
    try {
      const after = job.mutation(state, now);
      settled.push({ job, outcome: { before: state, after } });
      state = after ?? undefined;
    } catch (error) {
      settled.push({ job, outcome: error as Error });
    }
  }
  const expires = state === undefined ? undefined : deadlinesOf(state.expires, state.group.targets);
  return {
    settled,
    // Every mutation left it as it was (an expiry with nothing due): the transaction only confirms the revision.
    changed: state !== current,
    groupText: state === undefined ? undefined : serializeGroup(state.group),
    expiresText: expires === undefined || expires.size === 0 ? undefined : serializeDeadlines(expires),
  };
}

function sleep(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms));
}
