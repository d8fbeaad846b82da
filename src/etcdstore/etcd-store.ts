import type { Etcd3, Namespace } from "etcd3";
import type { Logger } from "pino";
import type { EtcdConfig } from "../config.js";
import { InternalError, RuleError, StoreError, StoreUnavailableError } from "../errors.js";
import { serializeDeadlines } from "../directory/deadlines-file.js";
import { serializeGroup } from "../directory/group-file.js";
import { fileNameOf } from "../directory/naming.js";
import type { DirectoryView } from "../directory/view.js";
import { KeyTimers, type LaneJob, Lanes } from "../lanes.js";
import { coveredBy, etcdFlushIntervalMs, isRenewal, RENEWAL_SLACK_MS } from "../rules/registration.js";
import { deadlinesOf, idOfKey, keyOf, NO_DEADLINES, type Deadlines, type GroupId, type Registration, type TargetGroup } from "../model.js";
import type { Entry, Mutation, Outcome, Store } from "../store.js";
import { beforeDeadline, newInstanceId, unavailable } from "./client.js";
import { Committer, NO_CHANGE, TooLargeError, type Change, type Committed, type Revisions, type Write, type Writes } from "./commit.js";
import { TombstoneCollector } from "./collector.js";
import { absentAt, etcdKeyOf, GC, modRevisionOf, NO_DEADLINES_TEXT, NOTHING_REGISTERED, serializeMarkers, valueOf, type KeyValue } from "./keys.js";
import { EtcdMemory, type Values } from "./memory.js";
import { EVERY_GROUP } from "./selector.js";
import { EtcdSync } from "./sync.js";

/** Hooks for metrics; every one is optional. */
export interface EtcdObserver {
  connected?(connected: boolean): void;
  watchRestarted?(): void;
  resynced?(seconds: number): void;
  conflict?(): void;
  committed?(seconds: number): void;
  putBack?(fileName: string): void;
  /** A batch of changes threw: a bug, answered with a 500 (file_sd_internal_errors_total). */
  internalError?(): void;
  /** Deleted groups whose keys the collector removed from etcd. */
  tombstonesRemoved?(groups: number): void;
  /** Read at scrape time: the groups whose keys this instance keeps in memory, deleted ones included. */
  measureKnown?(count: () => number): void;
  /** A renewal answered from memory (committed later) or committed before its answer (file_sd_renewals_total). */
  renewal?(mode: "memory" | "durable"): void;
  /** One transaction that committed renewals answered from memory (file_sd_renewal_flushes_total). */
  renewalFlushed?(): void;
}

export interface EtcdStoreOptions {
  readonly config: EtcdConfig;
  readonly client: Etcd3;
  /** The client's view of ETCD_PREFIX: keys here are `groups/<application>@<environment>` and the rest of keys.ts. */
  readonly namespace: Namespace;
  /** The directory this instance keeps in step with etcd. */
  readonly view: DirectoryView;
  readonly logger: Logger;
  readonly observer?: EtcdObserver;
  /** For tests: how often etcd's health is checked. */
  readonly probeIntervalMs?: number;
  /** The clock mutations are given (ms since the epoch); Date.now unless a test offsets it. */
  readonly now?: () => number;
  /** For tests: how long a deleted group's keys stay in etcd (5 min), and how often they are looked for (1 min). */
  readonly tombstoneAgeMs?: number;
  readonly collectIntervalMs?: number;
  /** RENEWAL_SLACK in ms (RENEWAL_SLACK_MS unless set); the expiry's grace must be expiryGraceMs of it. */
  readonly renewalSlackMs?: number;
}

/** One change to one key. */
interface UpdateJob extends LaneJob {
  readonly id: GroupId;
  readonly mutation: Mutation;
  /** Date.now() + ETCD_TIMEOUT when the request arrived: its answer is due by then. */
  readonly deadline: number;
  settle(outcome: Outcome | Error): void;
  /** The commit of the group's renewals answered from memory: never itself answered from memory. */
  readonly flush?: true;
}

/** Waits before a failed flush is tried again. */
const FLUSH_RETRY_MS = [1000, 2000, 5000, 10_000] as const;

/** How many times one batch re-reads and re-applies after another instance changed the same key. */
const MAX_ATTEMPTS = 16;
/**
 * Flushes are timed to ticks of this length (flushDelay), so that the groups
 * due in one tick go to etcd in one transaction (Committer.together).
 */
export const FLUSH_TICK_MS = 50;

/**
 * When a group's next flush is due: `intervalMs` from now, rounded down to a
 * tick of this instance's clock (performance.now(), whose origin is the
 * process's start). Down, so that a flush is never due later than one interval
 * after the renewal that asked for it (RENEWAL_SLACK's advice counts on it;
 * the commit itself then takes what etcd takes).
 */
function flushDelay(intervalMs: number): number {
  return intervalMs - ((performance.now() + intervalMs) % FLUSH_TICK_MS);
}

/**
 * etcd is the registry; the directory is a view of it (EtcdMemory keeps both,
 * EtcdSync keeps them in step with etcd, TombstoneCollector removes what
 * deleted groups leave).
 *
 * A change: the mutation is applied to the value this instance knows, at
 * revision R, and committed in one transaction that compares R. When another
 * instance got there first, the transaction answers the current value, and the
 * mutation runs again on it. Once committed, the new value goes into memory
 * and, when the group matches GROUP_SELECTOR, into this instance's file before
 * the request is answered.
 */
export class EtcdStore implements Store {
  private readonly config: EtcdConfig;
  private readonly client: Etcd3;
  private readonly namespace: Namespace;
  private readonly view: DirectoryView;
  private readonly logger: Logger;
  private readonly observer: EtcdObserver;
  private readonly now: () => number;
  private readonly memory: EtcdMemory;
  private readonly sync: EtcdSync;
  private readonly collector: TombstoneCollector;
  private readonly committer: Committer;
  private readonly lanes = new Lanes<UpdateJob>(
    (key, jobs) => this.runBatch(key, jobs),
    (key, error) => this.batchFailed(key, error),
  );
  /** This instance's name in commit markers, and the number of its last commit. */
  private readonly instance = newInstanceId();
  private commits = 0;
  /** Per group with pending renewals: when (performance.now()) the oldest of them was answered. */
  private readonly pendingSince = new Map<string, number>();
  /** Groups whose last flush failed, with how many in a row: their renewals are committed before their answer until one succeeds. */
  private readonly flushFailures = new Map<string, number>();
  private readonly flushTimers = new KeyTimers((key) => void this.flush(key));
  /** Groups whose last flush met another instance's change: their next flush comes half an interval early. */
  private readonly hurried = new Set<string>();
  private closing = false;
  private readonly renewalSlackMs: number;
  /** How often a group's renewals answered from memory are committed (etcdFlushIntervalMs of the slack). */
  private readonly flushIntervalMs: number;

  private constructor(options: EtcdStoreOptions) {
    this.config = options.config;
    this.client = options.client;
    this.namespace = options.namespace;
    this.view = options.view;
    this.logger = options.logger;
    this.observer = options.observer ?? {};
    this.now = options.now ?? Date.now;
    this.renewalSlackMs = options.renewalSlackMs ?? RENEWAL_SLACK_MS;
    this.flushIntervalMs = etcdFlushIntervalMs(this.renewalSlackMs);
    this.memory = new EtcdMemory(options.config, options.view, options.config.groupSelector?.matches ?? EVERY_GROUP, options.logger);
    this.committer = new Committer({ config: options.config, namespace: options.namespace, memory: this.memory, instance: this.instance });
    const busy = (key: string): boolean => this.lanes.busy(key);
    const inStep = (): void => this.retryFailedFlushes();
    this.sync = new EtcdSync({ ...options, memory: this.memory, observer: this.observer, busy, probeIntervalMs: options.probeIntervalMs ?? 1000, inStep });
    this.collector = new TombstoneCollector({
      instance: this.instance,
      config: options.config,
      namespace: options.namespace,
      memory: this.memory,
      logger: options.logger,
      ready: () => this.sync.problem === undefined,
      busy,
      tombstoneAgeMs: options.tombstoneAgeMs ?? 5 * 60_000,
      intervalMs: options.collectIntervalMs ?? 60_000,
      removed: (groups) => this.observer.tombstonesRemoved?.(groups),
    });
    this.observer.measureKnown?.(() => this.memory.knownSize);
  }

  /**
   * Serves what the directory holds until the first sync with etcd is done
   * (GET keeps answering while etcd is down), then etcd's values. Resolves at
   * once: the sync runs in the background, and `notReadyBecause` says when it is done.
   */
  static open(options: EtcdStoreOptions): EtcdStore {
    const store = new EtcdStore(options);
    store.sync.start();
    store.collector.start();
    return store;
  }

  get(id: GroupId): TargetGroup | undefined {
    return this.memory.entry(keyOf(id))?.group;
  }

  list(): IterableIterator<Entry> {
    return this.memory.list();
  }

  get size(): number {
    return this.memory.size;
  }

  update(id: GroupId, mutation: Mutation): Promise<Outcome> {
    return new Promise((resolve, reject) => {
      this.lanes.push(keyOf(id), {
        id,
        mutation,
        deadline: Date.now() + this.config.timeoutMs,
        settle: (outcome) => (outcome instanceof Error ? reject(outcome) : resolve(outcome)),
        fail: reject,
      });
    });
  }

  idle(): Promise<void> {
    return this.lanes.idle();
  }

  /** undefined when in step with etcd and watching; else why not, for `/-/ready`. */
  notReadyBecause(): string | undefined {
    return this.sync.problem;
  }

  /** Removes the keys of groups deleted long enough ago now, instead of at the next pass (tests, benchmarks). */
  collectTombstones(): Promise<number> {
    return this.collector.collect();
  }

  /** Someone else changed a managed file (the view noticed): etcd's value goes back. */
  putBack(id: GroupId): void {
    if (!this.sync.synced) return;
    const fileName = fileNameOf(id);
    this.observer.putBack?.(fileName);
    this.logger.warn({ file: fileName }, "managed file changed from outside; putting etcd's value back");
    void this.view.mirror(id, this.memory.fileTextOf(keyOf(id))).catch(() => undefined);
  }

  async close(): Promise<void> {
    await this.lanes.idle();
    // Renewals answered from memory are committed before the instance goes (while etcd answers).
    this.closing = true;
    this.flushTimers.stop();
    await Promise.all(this.memory.pendingKeys().map((key) => this.flush(key)));
    await this.lanes.idle();
    await this.collector.close();
    await this.sync.close();
    this.client.close();
  }

  /** A batch threw (a bug): its jobs get a 500 from the lane; the watch brings whatever etcd holds. */
  private batchFailed(key: string, error: unknown): Error {
    const id = idOfKey(key);
    const fileName = id === undefined ? key : fileNameOf(id);
    this.observer.internalError?.();
    this.logger.error({ file: fileName, err: error, bug: true }, "internal error while applying changes");
    return new InternalError(
      `an internal error stopped the change to ${fileName}; it may or may not have been applied: GET shows what is registered. ` +
        "This is a bug; please report it with the service log of this request",
      { cause: error },
    );
  }

  /**
   * Every change queued for one key, applied in arrival order and committed in
   * one transaction. A refusal is only final once the transaction has
   * confirmed that the value it was computed from is still etcd's newest.
   */
  private async runBatch(key: string, jobs: UpdateJob[]): Promise<void> {
    if (this.answeredFromMemory(key, jobs)) return;
    const { id } = jobs[0]!;
    const flushing = jobs.some((job) => job.flush === true);
    // A flush and nothing else waits for no client: it goes to etcd with other groups' flushes.
    const together = jobs.every((job) => job.flush === true);
    const renewals = this.countRenewals(key, jobs);
    // The batch answers by the deadline of its oldest request, however long that one waited in the lane.
    const deadline = Math.min(...jobs.map((job) => job.deadline));
    // Only what etcd says is etcd's fault (a 503); anything else thrown here is a bug, which the lane answers with a 500.
    const fromEtcd = async <T>(call: () => Promise<T>): Promise<T> => {
      try {
        return await call();
      } catch (error) {
        throw error instanceof StoreError || error instanceof RuleError ? error : unavailable(this.config, `commit a change to ${fileNameOf(id)}`, error);
      }
    };
    try {
      if (!this.sync.synced) await fromEtcd(() => this.refresh(key, deadline));
      for (let attempt = 1; ; attempt++) {
        const base = this.memory.get(key);
        const revisions: Revisions = {
          group: modRevisionOf(base?.group),
          expires: modRevisionOf(base?.expires),
          commits: modRevisionOf(base?.commits),
          gc: base?.group.present === true ? undefined : modRevisionOf(this.memory.gc),
        };
        const current = base?.entry === undefined ? undefined : { group: base.entry.group, expires: base.entry.expires };
        const now = this.now();
        const results = applyAll(jobs, current, now);
        // A group that goes leaves "nothing registered" in its key, and no deadlines in its
        // deadlines key, until the collector removes both (collector.ts says why that is safe).
        const texts = results.changed ? textsOf(results.state) : {};
        const groupText = texts.groupText ?? (base?.group.present === true ? NOTHING_REGISTERED : undefined);
        const expiresText = texts.expiresText ?? (base?.expires.present === true ? NO_DEADLINES_TEXT : undefined);
        // Only the keys whose bytes change are written: a heartbeat that only renews deadlines leaves the group key alone.
        const changes = (text: string | undefined, was: KeyValue | undefined): Write =>
          results.changed && text !== undefined && text !== was?.text ? text : NO_CHANGE;
        const group = changes(groupText, base?.group);
        const expires = changes(expiresText, base?.expires);
        const commit = `${++this.commits}`;
        const writesSomething = group !== NO_CHANGE || expires !== NO_CHANGE;
        const writes: Writes = {
          group,
          expires,
          commits: writesSomething ? serializeMarkers(base?.markers ?? new Map(), this.instance, commit, now) : NO_CHANGE,
        };
        const started = process.hrtime.bigint();
        const committed = await fromEtcd(() => this.send({ key, base: revisions, writes, commit, deadline }, together && writesSomething));
        if (committed.kind !== "conflict") {
          this.observer.committed?.(Number(process.hrtime.bigint() - started) / 1e9);
          if (committed.kind === "landed before") await this.take(id, committed.current);
          else if (writesSomething) await this.take(id, valuesAt(writes, committed.revision), writes.expires === texts.expiresText ? texts.deadlines : NO_DEADLINES);
          for (const { job, outcome } of results.settled) job.settle(outcome);
          for (let i = 0; i < renewals; i++) this.observer.renewal?.("durable");
          if (flushing) this.flushed(key, undefined, true, attempt > 1);
          return;
        }
        this.observer.conflict?.();
        if (attempt >= MAX_ATTEMPTS) {
          throw new StoreUnavailableError(
            `${fileNameOf(id)} kept changing under this request: ${MAX_ATTEMPTS} attempts each found a newer value ` +
              "written by another instance. Nothing was changed by this request; try again.",
          );
        }
      }
    } catch (error) {
      if (!(error instanceof StoreError) && !(error instanceof RuleError)) throw error;
      for (const job of jobs) job.settle(error);
      if (flushing) this.flushed(key, error);
    }
  }

  /**
   * The safety rule for renewals answered from memory: only while in step with
   * etcd, while the group's flushes succeed on time (the last one did not
   * fail, none is overdue), and only when etcd's deadlines cover the renewal
   * (coveredBy: should this instance crash before its flush, the grace every
   * instance waits past a deadline, EXPIRY_GRACE_MS, still keeps each ttl a
   * lower bound). Otherwise the batch is committed before its answer, and
   * without quorum that is the usual 503: the client knows.
   *
   * Answered from memory: the batch's mutations on what this instance serves
   * (etcd's value with its pending renewals laid over) add up to a renewal,
   * none refused. Not linearizable as a commit is: like a GET, it sees this
   * instance's copy, and a target another instance removed a moment ago stays
   * removed (the flush only renews targets etcd still has).
   */
  private answeredFromMemory(key: string, jobs: readonly UpdateJob[]): boolean {
    if (this.closing || !this.sync.synced || this.sync.problem !== undefined || this.flushFailures.has(key)) return false;
    if (jobs.some((job) => job.flush === true)) return false;
    const since = this.pendingSince.get(key);
    // Overdue: etcd slow, a busy lane. Two intervals: a flush takes a while under load, and committing every renewal then would add to it.
    if (since !== undefined && performance.now() - since > 2 * this.flushIntervalMs) return false;
    const served = this.memory.entry(key);
    const etcd = this.memory.get(key)?.entry;
    if (served === undefined || etcd === undefined) return false;
    const current: Registration = { group: served.group, expires: served.expires };
    const results = applyAll(jobs, current, this.now());
    if (results.settled.some(({ outcome }) => outcome instanceof Error) || !isRenewal(current, results.state ?? null)) return false;
    if (!coveredBy(results.state!.expires, etcd.expires, this.renewalSlackMs)) return false;
    this.memory.renew(key, results.state!.expires);
    if (!this.pendingSince.has(key)) this.pendingSince.set(key, performance.now());
    this.scheduleFlush(key);
    for (const { job, outcome } of results.settled) {
      this.observer.renewal?.("memory");
      job.settle(outcome);
    }
    return true;
  }

  /** How many of the batch's jobs are renewals (for the counter): the batch as a whole renews what this instance serves. */
  private countRenewals(key: string, jobs: readonly UpdateJob[]): number {
    const served = this.memory.entry(key);
    if (served === undefined) return 0;
    const current: Registration = { group: served.group, expires: served.expires };
    const mutations = jobs.filter((job) => job.flush !== true);
    if (mutations.length === 0) return 0;
    const results = applyAll(mutations, current, this.now());
    return isRenewal(current, results.state ?? null) ? mutations.length : 0;
  }

  /** Commits a group's pending renewals through its lane, as one mutation: each target etcd still has gets the later of the two deadlines. */
  private flush(key: string): Promise<void> {
    const id = idOfKey(key);
    if (id === undefined || this.memory.pendingOf(key).size === 0) {
      // Nothing left to commit (etcd came to hold as late a deadline, or the target went): as good as a flush that worked.
      this.flushed(key, undefined, false);
      return Promise.resolve();
    }
    const mutation: Mutation = (current) => {
      if (current === undefined) return null;
      const pending = this.memory.pendingOf(key);
      let expires: Map<string, number> | undefined;
      for (const [target, deadline] of pending) {
        const committed = current.expires.get(target);
        // A target gone, or made permanent, on any instance stays so: nothing comes back.
        if (committed === undefined || committed >= deadline) continue;
        expires ??= new Map(current.expires);
        expires.set(target, deadline);
      }
      return expires === undefined ? current : { group: current.group, expires };
    };
    return new Promise((settle) => {
      this.lanes.push(key, { id, mutation, flush: true, deadline: Date.now() + this.config.timeoutMs, settle: () => settle(), fail: () => settle() });
    });
  }

  /** Back in step with etcd: the groups whose flushes failed are committed now, not at the end of their backoff. */
  private retryFailedFlushes(): void {
    if (this.closing) return;
    for (const key of this.flushFailures.keys()) {
      this.flushTimers.runNow(key);
    }
  }

  /** The group's next flush, an interval from now (half of one, once, after a conflict: flushed). */
  private scheduleFlush(key: string): void {
    this.flushTimers.schedule(key, flushDelay(this.hurried.delete(key) ? this.flushIntervalMs / 2 : this.flushIntervalMs));
  }

  /**
   * After a flush (`committed` false: there was nothing to commit): counted,
   * renewals that came during it wait for the next; a failure is logged once
   * per group and tried again. `conflicted`: another instance changed the group
   * first, most often with its own flush of the same renewals at the same
   * moment (both instances get a group's renewals, and so start its interval
   * together). Its next flush, scheduled by the next renewal answered from
   * memory (those that came during this one waited in the lane), then comes half
   * an interval early, once, which puts this instance's flushes of the group
   * half an interval from the other's.
   */
  private flushed(key: string, error: Error | undefined, committed = true, conflicted = false): void {
    const id = idOfKey(key);
    const file = id === undefined ? key : fileNameOf(id);
    if (error === undefined) {
      if (conflicted) this.hurried.add(key);
      if (committed) this.observer.renewalFlushed?.();
      if (this.flushFailures.delete(key)) this.logger.info({ file }, "renewals committed to etcd again; renewals are answered from memory again");
      if (this.memory.pendingOf(key).size === 0) this.pendingSince.delete(key);
      else {
        this.pendingSince.set(key, performance.now());
        this.scheduleFlush(key);
      }
      return;
    }
    if (this.memory.pendingOf(key).size === 0) {
      this.pendingSince.delete(key);
      return;
    }
    const failures = (this.flushFailures.get(key) ?? 0) + 1;
    this.flushFailures.set(key, failures);
    if (failures === 1) {
      this.logger.error({ file, err: error }, "could not commit renewals answered from memory; this group's renewals are committed before their answer until it works; retrying");
    }
    this.flushTimers.schedule(key, FLUSH_RETRY_MS[Math.min(failures - 1, FLUSH_RETRY_MS.length - 1)]!);
  }

  /** One group's change to etcd, a flush `together` with other groups' flushes or a write with the writes that come meanwhile (Committer); too large for etcd is the client's 413. */
  private async send(change: Change, together: boolean): Promise<Committed> {
    try {
      return await (together ? this.committer.together(change) : this.committer.write(change));
    } catch (error) {
      throw error instanceof TooLargeError ? tooLarge(change.key, change.writes) : error;
    }
  }

  /** Before the first sync, memory may hold the directory's old files: read the keys themselves. */
  private async refresh(key: string, deadline: number): Promise<void> {
    const response = await beforeDeadline(deadline, (grpcDeadline) =>
      // Four reads at one revision: a transaction whose comparison never holds (no revision is below 0) runs its else branch.
      this.namespace
        .if(GC, "Mod", "<", 0)
        .else(...(["group", "expires", "commits"] as const).map((part) => this.namespace.get(etcdKeyOf(part, key))), this.namespace.get(GC))
        .options({ deadline: grpcDeadline })
        .commit(),
    );
    const revision = Number(response.header.revision);
    const read = (index: number): KeyValue => {
      const kv = response.responses[index]?.response_range?.kvs[0];
      return kv === undefined ? absentAt(revision) : valueOf(kv);
    };
    this.memory.takeGc(read(3));
    void this.memory.take(key, { group: read(0), expires: read(1), commits: read(2) }).catch(() => undefined);
    this.memory.dropEntryUnlessKnown(key);
  }

  /** This instance's own commit: into memory, then into the file, before the answer. */
  /** `expires`: what values.expires holds, parsed (when it is a value this instance wrote). */
  private async take(id: GroupId, values: Values, expires?: Deadlines): Promise<void> {
    try {
      await this.memory.take(keyOf(id), values, expires);
    } catch (error) {
      throw new StoreError(
        `the change is committed in etcd, but this instance could not write ${fileNameOf(id)}: ` +
          `${(error as Error).message}. Other instances have it; this directory catches up at the next resync.`,
        { cause: error },
      );
    }
  }
}

/** The 413 for a group etcd would refuse to take in one request, with its size: nothing was changed. */
function tooLarge(key: string, writes: Writes): RuleError {
  const id = idOfKey(key);
  const bytes = Object.values(writes).reduce((sum, write) => sum + (write === NO_CHANGE ? 0 : Buffer.byteLength(write)), 0);
  return new RuleError(
    413,
    `${id === undefined ? key : fileNameOf(id)} would take ${bytes} bytes in etcd, more than etcd accepts in one request ` +
      "(its --max-request-bytes, 1.5 MiB by default); nothing was changed. Register fewer targets in this group, or split it into several",
    {},
    "too_large",
  );
}

/** What a committed transaction left in the keys it wrote. */
function valuesAt(writes: Writes, revision: number): Values {
  const at = (write: Write): KeyValue | undefined => (write === NO_CHANGE ? undefined : { present: true, text: write, revision });
  return { group: at(writes.group), expires: at(writes.expires), commits: at(writes.commits) };
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
  // Every mutation left it as it was (an expiry with nothing due): the transaction only confirms the revision.
  return { settled, state, changed: state !== current };
}

/**
 * The bytes of a batch's result for the group's two keys: only for a batch
 * that commits (not one answered from memory). With the deadlines they hold,
 * so that memory need not parse what was just written.
 */
function textsOf(state: Registration | undefined): { readonly groupText?: string; readonly expiresText?: string; readonly deadlines?: Deadlines } {
  if (state === undefined) return {};
  const expires = deadlinesOf(state.expires, state.group.targets);
  return { groupText: serializeGroup(state.group), ...(expires.size === 0 ? {} : { expiresText: serializeDeadlines(expires), deadlines: expires }) };
}
