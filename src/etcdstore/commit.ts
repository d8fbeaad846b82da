import { CompareResult, CompareTarget, type ICompare, type IKeyValue, type ITxnRequest, type ITxnResponse, type Namespace } from "etcd3";
import type { EtcdConfig } from "../config.js";
import { beforeDeadline, DeadlineError, isTooLarge, isTooManyOps } from "./client.js";
import { absentAt, etcdKeyOf, GC, parseMarkers, valueOf, type KeyValue, type Part } from "./keys.js";
import type { EtcdMemory, Values } from "./memory.js";
import { sleep } from "./sync.js";

export const NO_CHANGE = Symbol("no change");
/** A key's new value: its bytes, or NO_CHANGE to leave it. */
export type Write = string | typeof NO_CHANGE;
export type Writes = { readonly [part in Part]: Write };
/** The revisions a transaction compares; `gc` only when it was computed with the group's key absent. */
export type Revisions = { readonly [part in Part]: number } & { readonly gc: number | undefined };
export type Committed =
  | { readonly kind: "committed"; readonly revision: number }
  | { readonly kind: "landed before"; readonly current: Values }
  | { readonly kind: "conflict" };

/** One group's change: the revisions it was computed from, what it writes, and the marker that names it. */
export interface Change {
  readonly key: string;
  readonly base: Revisions;
  readonly writes: Writes;
  /** This instance's number for the change, written in the group's commits key. */
  readonly commit: string;
  /** Date.now() by which it must be committed or refused. */
  readonly deadline: number;
}

/** The error a change too large for one etcd request gets; the store turns it into a 413. */
export class TooLargeError extends Error {}

const PARTS = ["group", "expires", "commits"] as const;

/**
 * How many groups one transaction carries. etcd refuses a transaction with more
 * than --max-txn-ops (128 by default) operations in one list, counted per level:
 * the outer transaction holds one per group and the read of the `gc` key, and
 * each group's own transaction (four comparisons, up to three puts or three
 * reads) may use what the outer one leaves. 40 groups leave 87.
 */
export const GROUPS_PER_TRANSACTION = 40;
/** The bytes one combined transaction may write: well inside etcd's --max-request-bytes (1.5 MiB by default). */
const BYTES_PER_TRANSACTION = 512 * 1024;
/**
 * How long a change waits for others to go with it. Flushes of renewals are
 * timed to a common tick (see flushDelay), so those due together arrive within
 * a few milliseconds of each other. A write waits only while another write's
 * transaction is on its way, and at most this long.
 */
const GATHER_MS = 5;

/** The changes a client waits for ("write") and the flushes no client waits for ("flush") go in transactions of their own. */
type Kind = "write" | "flush";

/**
 * Commits changes to etcd, several groups' changes in one transaction where
 * they come together: `write`, a change a client waits for, goes at once when
 * no other write is on its way to etcd, and otherwise with the writes that
 * come while one is, for at most GATHER_MS (group commit: under load one
 * transaction per round trip or per GATHER_MS, whichever is shorter; none of
 * the wait when idle); `together`, the flushes of renewals answered
 * from memory, gathered for a few milliseconds (a fleet's heartbeats would
 * otherwise be one transaction per group a second); `alone`, one change in a
 * transaction of its own.
 *
 * Either way each group's part is a transaction of its own inside the one
 * sent (etcd runs nested transactions since 3.3): it compares the revisions of
 * the group's three keys and applies only if they held. When another instance
 * changed that group first, its part reads the current values instead and the
 * change is computed again (a "conflict"); the other groups' parts apply in
 * the same round trip.
 *
 * A call that fails after reaching etcd may have been applied. It is sent
 * again: it compares the revisions, so at most one attempt applies. When the
 * comparison then fails, each group's commit marker tells whether an earlier
 * attempt was the one that changed it ("landed before": the change counts as
 * made, however many changes followed it) or another instance did.
 */
export class Committer {
  private readonly queues: { readonly [kind in Kind]: Queue } = {
    write: { waiting: [], timer: undefined, inFlight: 0 },
    flush: { waiting: [], timer: undefined, inFlight: 0 },
  };
  /** Lowered when etcd refuses a transaction for its number of operations (a --max-txn-ops below the default). */
  private groupsPerTransaction = GROUPS_PER_TRANSACTION;

  constructor(
    private readonly options: {
      readonly config: EtcdConfig;
      readonly namespace: Namespace;
      readonly memory: EtcdMemory;
      /** This instance's name in commit markers. */
      readonly instance: string;
    },
  ) {}

  /**
   * One group's change in a transaction of its own. `mayHaveApplied`: an
   * earlier attempt (in a combined transaction) may have applied it.
   */
  async alone(change: Change, mayHaveApplied = false): Promise<Committed> {
    const [outcome] = await this.send([change], change.deadline, { ambiguous: mayHaveApplied });
    return outcome!;
  }

  /**
   * A change a client waits for, in a transaction with the other writes that
   * came while one was on its way; answers as `alone` would, by its own
   * deadline: should the transaction still be on its way then (it is sent until
   * the latest of its changes' deadlines), the change is refused as one alone
   * would be, and may have been applied.
   */
  write(change: Change): Promise<Committed> {
    return this.enqueue("write", change);
  }

  /**
   * A flush, in a transaction with the flushes gathered meanwhile; answers as
   * `alone` would. No client waits for it: the transaction is sent until the
   * latest of its changes' deadlines, so that one flush that waited long does
   * not cut the others' time short.
   */
  together(change: Change): Promise<Committed> {
    return this.enqueue("flush", change);
  }

  private enqueue(kind: Kind, change: Change): Promise<Committed> {
    const queue = this.queues[kind];
    return new Promise((resolve, reject) => {
      const waiting: Waiting = { change, resolve, reject, ambiguous: false, abandoned: false };
      if (kind === "write") {
        const timer = setTimeout(() => this.abandon(queue, waiting), Math.max(0, change.deadline - Date.now()));
        waiting.resolve = (outcome) => (clearTimeout(timer), resolve(outcome));
        waiting.reject = (error) => (clearTimeout(timer), reject(error));
      }
      queue.waiting.push(waiting);
      const idle = kind === "write" && queue.inFlight === 0;
      if (idle || queue.waiting.length >= this.groupsPerTransaction) this.sendQueued(kind);
      else queue.timer ??= setTimeout(() => this.sendQueued(kind), GATHER_MS);
    });
  }

  /**
   * A write refused by its own deadline, as one alone would be: it may still
   * apply if its transaction is on its way, but it is answered, its group's
   * lane goes on, and nothing of its outcome is taken into memory. Not sent
   * yet, it is not sent at all (the group's next change may be queued next).
   */
  private abandon(queue: Queue, waiting: Waiting): void {
    waiting.abandoned = true;
    const at = queue.waiting.indexOf(waiting);
    if (at >= 0) queue.waiting.splice(at, 1);
    waiting.reject(new DeadlineError());
  }

  private sendQueued(kind: Kind): void {
    const queue = this.queues[kind];
    clearTimeout(queue.timer);
    queue.timer = undefined;
    this.sendAll(kind, queue.waiting.splice(0));
  }

  private sendAll(kind: Kind, waiting: readonly Waiting[]): void {
    const queue = this.queues[kind];
    for (const batch of batchesOf(waiting, this.groupsPerTransaction, ({ change }) => bytesOf(change.writes))) {
      queue.inFlight++;
      // sendBatch answers every change itself; should it throw anyway (a bug), none is left waiting for ever.
      this.sendBatch(kind, batch)
        .catch((error: unknown) => {
          for (const waiting of batch) waiting.reject(error instanceof Error ? error : new Error(String(error)));
        })
        .finally(() => {
          queue.inFlight--;
          // The writes that came meanwhile go now, not at the end of their wait.
          if (kind === "write" && queue.waiting.length > 0) this.sendQueued(kind);
        });
    }
  }

  /**
   * A gathered batch, sent until the latest of its changes' deadlines, so that
   * one change that waited long does not cut the others' time short: each
   * change is answered by its own part of the transaction.
   */
  private async sendBatch(kind: Kind, batch: readonly Waiting[]): Promise<void> {
    const deadline = Math.max(...batch.map(({ change }) => change.deadline));
    // Carried over: an attempt that failed after reaching etcd may have applied every change of it.
    const attempt = { ambiguous: batch.some((waiting) => waiting.ambiguous) };
    let outcomes: Committed[];
    try {
      outcomes = await this.send(batch.map(({ change }) => change), deadline, attempt, (i) => batch[i]!.abandoned);
    } catch (error) {
      for (const waiting of batch) waiting.ambiguous ||= attempt.ambiguous;
      const left = batch.filter((waiting) => !waiting.abandoned);
      if (batch.length > 1 && isTooManyOps(error)) {
        // An etcd with a lower --max-txn-ops than its default: halves, until its transactions are small enough.
        this.groupsPerTransaction = Math.min(this.groupsPerTransaction, Math.ceil(batch.length / 2));
        this.sendAll(kind, left);
        return;
      }
      if (batch.length > 1 && error instanceof TooLargeError) {
        // An etcd with a lower --max-request-bytes than its default: each change alone, so a refusal names its group.
        for (const { change, resolve, reject, ambiguous } of left) this.alone(change, ambiguous).then(resolve, reject);
        return;
      }
      throw error;
    }
    batch.forEach((waiting, i) => waiting.resolve(outcomes[i]!));
  }

  /**
   * One transaction for `changes`, sent until etcd answers or the deadline
   * passes: a transaction of its own for each change inside one that always
   * applies (etcd runs nested transactions since 3.3), so one change whose
   * group another instance changed first does not hold back the others. Per
   * change: committed, landed before, or a conflict (its current values are
   * taken into memory).
   */
  private async send(changes: readonly Change[], deadline: number, state: { ambiguous: boolean }, abandoned?: (index: number) => boolean): Promise<Committed[]> {
    const { config, namespace } = this.options;
    const key = (name: string): Buffer => Buffer.concat([namespace.prefix, Buffer.from(name)]);
    const compare = (name: string, revision: number): ICompare => ({ key: key(name), target: CompareTarget.Mod, result: CompareResult.Equal, mod_revision: revision });
    const request: ITxnRequest = {
      compare: [],
      success: [
        ...changes.map(({ key: group, base, writes }) => ({
          request_txn: {
            compare: [...PARTS.map((part) => compare(etcdKeyOf(part, group), base[part])), ...(base.gc === undefined ? [] : [compare(GC, base.gc)])],
            success: PARTS.flatMap((part) => {
              const value = writes[part];
              return value === NO_CHANGE ? [] : [{ request_put: { key: key(etcdKeyOf(part, group)), value: Buffer.from(value) } }];
            }),
            failure: PARTS.map((part) => ({ request_range: { key: key(etcdKeyOf(part, group)) } })),
          },
        })),
        { request_range: { key: key(GC) } },
      ],
      failure: [],
    };
    for (let attempt = 0; ; attempt++) {
      let response: ITxnResponse;
      // An attempt gets a third of ETCD_TIMEOUT: one stuck on a member that
      // just died leaves time to try another once a new leader is elected.
      const attemptDeadline = Math.min(deadline, Date.now() + Math.max(250, config.timeoutMs / 3));
      try {
        response = await beforeDeadline(attemptDeadline, (grpcDeadline) => namespace.kv.txn(request, { deadline: grpcDeadline }));
      } catch (error) {
        // Refusals: nothing was applied, and sending it again would not help.
        if (isTooLarge(error)) throw new TooLargeError("the transaction would be larger than etcd accepts in one request", { cause: error });
        if (isTooManyOps(error)) throw error;
        // A member lost mid-call, an election: the transaction may or may not have been applied.
        if (Date.now() >= deadline) throw error instanceof DeadlineError ? error : new DeadlineError(error);
        state.ambiguous = true;
        await sleep(Math.min(25 * 2 ** attempt, 400, Math.max(0, deadline - Date.now())));
        continue;
      }
      const revision = Number(response.header.revision);
      const read = (kv: IKeyValue | undefined): KeyValue => (kv === undefined ? absentAt(revision) : valueOf(kv));
      this.options.memory.takeGc(read(response.responses[changes.length]?.response_range?.kvs[0]));
      return changes.map((change, i): Committed => {
        const own = response.responses[i]?.response_txn;
        if (own === undefined) throw new Error("etcd answered a transaction without the answer of one of its parts");
        if (own.succeeded) return { kind: "committed", revision };
        // Already answered: its lane has gone on, and may have let the group go from memory since.
        if (abandoned?.(i) === true) return { kind: "conflict" };
        const [group, expires, commits] = PARTS.map((_, p) => read(own.responses[p]?.response_range?.kvs[0])) as [KeyValue, KeyValue, KeyValue];
        const current: Values = { group, expires, commits };
        const writesSomething = change.writes.group !== NO_CHANGE || change.writes.expires !== NO_CHANGE;
        if (state.ambiguous && writesSomething && parseMarkers(current.commits).get(this.options.instance)?.commit === change.commit) {
          return { kind: "landed before", current };
        }
        // The file follows in the background; a failed write there is logged by the view.
        void this.options.memory.take(change.key, current).catch(() => undefined);
        return { kind: "conflict" };
      });
    }
  }
}

/** The changes of one kind waiting to be sent, and the transactions of that kind etcd has not answered. */
interface Queue {
  readonly waiting: Waiting[];
  timer: NodeJS.Timeout | undefined;
  inFlight: number;
}

/** A change gathered for a transaction with others, and how to answer it. */
interface Waiting {
  readonly change: Change;
  resolve: (outcome: Committed) => void;
  reject: (error: Error) => void;
  /** An attempt that carried it failed after reaching etcd: it may have applied. */
  ambiguous: boolean;
  /** A write refused by its own deadline (Committer.abandon). */
  abandoned: boolean;
}

/** The bytes a change writes. */
function bytesOf(writes: Writes): number {
  return PARTS.reduce((sum, part) => sum + (writes[part] === NO_CHANGE ? 0 : Buffer.byteLength(writes[part] as string)), 0);
}

/** `items` in order, cut into batches of at most `count` and BYTES_PER_TRANSACTION (a larger one alone). */
function batchesOf<T>(items: readonly T[], count: number, bytes: (item: T) => number): T[][] {
  const batches: T[][] = [];
  let current: T[] = [];
  let size = 0;
  for (const item of items) {
    const itemBytes = bytes(item);
    if (current.length > 0 && (current.length >= count || size + itemBytes > BYTES_PER_TRANSACTION)) {
      batches.push(current);
      current = [];
      size = 0;
    }
    current.push(item);
    size += itemBytes;
  }
  if (current.length > 0) batches.push(current);
  return batches;
}
