import type { Namespace } from "etcd3";
import type { Logger } from "pino";
import type { EtcdConfig } from "../config.js";
import { beforeDeadline, describeEtcdError } from "./client.js";
import { absentAt, etcdKeyOf, GC, modRevisionOf, type Part } from "./keys.js";
import type { EtcdMemory, Known } from "./memory.js";

/** Groups per transaction: 3 compares and 3 deletes each, plus the `gc` key, stay under etcd's default --max-txn-ops of 128. */
const CHUNK = 30;
const PARTS: readonly Part[] = ["group", "expires", "commits"];

export interface CollectorOptions {
  /** The instance's name, written into the `gc` key with each removal. */
  readonly instance: string;
  readonly config: EtcdConfig;
  readonly namespace: Namespace;
  readonly memory: EtcdMemory;
  readonly logger: Logger;
  /** In step with etcd: only then does memory say what etcd holds. */
  readonly ready: () => boolean;
  readonly busy: (key: string) => boolean;
  /** How long a deleted group's keys stay (default 5 minutes); see below. */
  readonly tombstoneAgeMs: number;
  /** How often to look (default every minute, with jitter so that instances rarely try at once). */
  readonly intervalMs: number;
  readonly removed?: (groups: number) => void;
}

/**
 * Removes what deleted groups leave in etcd (`[]`, `{}` and the commit
 * markers), so that creating and deleting groups (CI's per-branch
 * environments) grows neither etcd nor any instance's memory nor a resync.
 *
 * Why removing is safe (src/etcdstore/keys.ts has the keys):
 * - A transaction computed on the deleted group compares its revisions, which
 *   the removal changes: it fails and is computed again.
 * - A transaction computed back when the group's key was absent compares the
 *   `gc` key as well, which every removal bumps in the same transaction: so
 *   one delayed in etcd cannot apply once a removal has made the key absent again.
 * - A group is removed only once it has been deleted for `tombstoneAgeMs`, far
 *   longer than any change may retry (ETCD_TIMEOUT, at most a minute): an
 *   instance that is unsure whether its change landed still finds its marker.
 * Every instance collects, each at its own time; the transactions compare
 * every revision, so when two try, one removes and the other finds nothing.
 */
export class TombstoneCollector {
  private timer: NodeJS.Timeout | undefined;
  private running: Promise<void> | undefined;
  private closed = false;

  constructor(private readonly options: CollectorOptions) {}

  start(): void {
    const next = (): void => {
      const jitter = 0.75 + Math.random() / 2;
      this.timer = setTimeout(() => {
        this.running = this.collect()
          .then(
            () => undefined,
            (error: unknown) => this.options.logger.warn({ err: describeEtcdError(error) }, "could not remove deleted groups from etcd; trying again later"),
          )
          .finally(() => {
            this.running = undefined;
            if (!this.closed) next();
          });
      }, this.options.intervalMs * jitter);
    };
    next();
  }

  async close(): Promise<void> {
    this.closed = true;
    clearTimeout(this.timer);
    await this.running;
  }

  /** One pass; resolves with how many groups it removed. */
  async collect(): Promise<number> {
    const { memory, ready, busy, tombstoneAgeMs } = this.options;
    if (!ready()) return 0;
    const due = [...memory.tombstones(tombstoneAgeMs)].filter(([key]) => !busy(key));
    let removed = 0;
    for (let first = 0; first < due.length && !this.closed; first += CHUNK) {
      removed += await this.remove(due.slice(first, first + CHUNK));
    }
    return removed;
  }

  private async remove(groups: readonly [string, Known][]): Promise<number> {
    const { config, namespace, memory, logger, removed } = this.options;
    const gcRevision = modRevisionOf(memory.gc);
    const response = await beforeDeadline(Date.now() + config.timeoutMs, (deadline) => {
      let txn = namespace.if(GC, "Mod", "==", gcRevision);
      for (const [key, known] of groups) for (const part of PARTS) txn = txn.and(etcdKeyOf(part, key), "Mod", "==", modRevisionOf(known[part]));
      const deletes = groups.flatMap(([key, known]) => PARTS.filter((part) => known[part].present).map((part) => namespace.delete().key(etcdKeyOf(part, key))));
      const stamp = `${JSON.stringify({ by: this.options.instance, at: new Date().toISOString(), removed: groups.length })}\n`;
      return txn.then(...deletes, namespace.put(GC).value(stamp)).else(namespace.get(GC)).options({ deadline }).commit();
    });
    const revision = Number(response.header.revision);
    if (!response.succeeded) {
      // Something changed meanwhile (a group registered again, another instance collected): the watch brings it; next pass.
      const kv = response.responses[0]?.response_range?.kvs[0];
      memory.takeGc(kv === undefined ? absentAt(revision) : { present: true, text: kv.value.toString("utf8"), revision: Number(kv.mod_revision) });
      return 0;
    }
    memory.takeGc({ present: true, text: "", revision });
    for (const [key] of groups) {
      void memory.take(key, { group: absentAt(revision), expires: absentAt(revision), commits: absentAt(revision) }).catch(() => undefined);
      memory.forget(key, this.options.busy(key));
    }
    removed?.(groups.length);
    logger.info({ groups: groups.length, revision }, "removed deleted groups from etcd");
    return groups.length;
  }
}
