import type { IKeyValue, Namespace, Watcher } from "etcd3";
import type { Logger } from "pino";
import type { EtcdConfig } from "../config.js";
import type { DirectoryView } from "../directory/view.js";
import { keyOf } from "../model.js";
import { beforeDeadline, describeEtcdError } from "./client.js";
import type { EtcdObserver } from "./etcd-store.js";
import { absentAt, GC, partOf, valueOf, type KeyValue, type Part } from "./keys.js";
import type { EtcdMemory } from "./memory.js";

const RESYNC_BACKOFF_MS = [100, 250, 500, 1000, 2000] as const;

/**
 * Keeps this instance in step with etcd. Other instances' changes arrive
 * through one watch on the prefix. At start, and whenever the watch is lost
 * (disconnect, compaction, etcd without quorum), a resync reads every key at
 * one revision, makes memory and the directory equal to it, and watches from
 * the next revision. A quorum read every second tells whether etcd can take
 * writes, which the watch alone does not.
 */
export class EtcdSync {
  private watcher: Watcher | undefined;
  /** Bumped at every resync: events from a watcher of an earlier generation are ignored. */
  private generation = 0;
  private resyncing: Promise<void> | undefined;
  private probeTimer: NodeJS.Timeout | undefined;
  private closed = false;
  /** True once the first sync is done: from then on memory holds etcd's values. */
  synced = false;
  /** undefined when in step with etcd and watching; else why not, for `/-/ready`. */
  problem: string | undefined = "not yet in step with etcd: the first sync has not finished";

  constructor(
    private readonly options: {
      readonly config: EtcdConfig;
      readonly namespace: Namespace;
      readonly memory: EtcdMemory;
      readonly view: DirectoryView;
      readonly logger: Logger;
      readonly observer: EtcdObserver;
      /** Whether a change of this instance is running for the group: its tombstone is kept until it is done. */
      readonly busy: (key: string) => boolean;
      readonly probeIntervalMs: number;
      /** Called each time a resync has brought this instance in step with etcd again. */
      readonly inStep?: () => void;
    },
  ) {}

  start(): void {
    this.startResync("start");
    const probe = (): void => {
      this.probeTimer = setTimeout(() => {
        void this.probe().finally(() => {
          if (!this.closed) probe();
        });
      }, this.options.probeIntervalMs);
    };
    probe();
  }

  async close(): Promise<void> {
    this.closed = true;
    clearTimeout(this.probeTimer);
    await this.resyncing;
    await this.watcher?.cancel().catch(() => undefined);
  }

  private startResync(reason: string): void {
    if (this.closed || this.resyncing !== undefined) return;
    this.generation++;
    const old = this.watcher;
    this.watcher = undefined;
    void old?.cancel().catch(() => undefined);
    if (reason !== "start") {
      this.options.observer.watchRestarted?.();
      this.problem = `resyncing with etcd (${this.options.config.endpoints.join(", ")}) after ${reason}`;
    }
    this.resyncing = this.resyncUntilDone(reason).finally(() => (this.resyncing = undefined));
  }

  private async resyncUntilDone(reason: string): Promise<void> {
    const { config, observer, logger } = this.options;
    for (let attempt = 0; !this.closed; attempt++) {
      try {
        await this.resync(reason);
        return;
      } catch (error) {
        this.problem = `cannot sync with etcd (${config.endpoints.join(", ")}): ${describeEtcdError(error)}`;
        observer.connected?.(false);
        if (attempt === 0 || attempt % 20 === 0) logger.error({ err: error }, "sync with etcd failed; retrying");
        await sleep(RESYNC_BACKOFF_MS[Math.min(attempt, RESYNC_BACKOFF_MS.length - 1)]!);
      }
    }
  }

  /** Reads every key at one revision, makes memory and the directory equal to it, then watches from the next. */
  private async resync(reason: string): Promise<void> {
    const { config, namespace, memory, view, observer, logger, busy } = this.options;
    const started = process.hrtime.bigint();
    const generation = this.generation;
    const response = await beforeDeadline(Date.now() + config.timeoutMs * 4, (deadline) => namespace.getAll().prefix("").options({ deadline }).exec());
    const revision = Number(response.header.revision);
    const inEtcd = new Map<string, { [part in Part]?: KeyValue }>();
    let gc = absentAt(revision);
    for (const kv of response.kvs) {
      const name = kv.key.toString();
      if (name === GC) gc = valueOf(kv);
      const part = partOf(name);
      if (part !== undefined) inEtcd.set(part.key, { ...inEtcd.get(part.key), [part.part]: valueOf(kv) });
    }
    memory.takeGc(gc);
    const groupsInEtcd = [...inEtcd.values()].filter((values) => values.group?.present === true).length;
    if (reason === "start" && groupsInEtcd === 0 && view.initial.length > 0) {
      logger.warn(
        { prefix: config.prefix, files: view.initial.length, directory: view.directory.path },
        "etcd holds no group under this prefix, but the directory held some: they are removed to match etcd. " +
          "To move a directory's groups into etcd, stop the service and run node dist/import.js first",
      );
    }
    // Every write is awaited below, and one that fails does not fail the resync: memory is in step
    // with etcd, the directory logs and counts the file it could not write, and the view tries it
    // again until it can (a full disk, a permission someone fixes).
    const writes: Promise<Error | undefined>[] = [];
    const settled = (write: Promise<void>): Promise<Error | undefined> => write.then(() => undefined, (error: unknown) => error as Error);
    for (const key of new Set([...inEtcd.keys(), ...memory.keys()])) {
      const values = inEtcd.get(key);
      writes.push(
        settled(
          memory.take(key, {
            group: values?.group ?? absentAt(revision),
            expires: values?.expires ?? absentAt(revision),
            commits: values?.commits ?? absentAt(revision),
          }),
        ),
      );
    }
    // Groups served from the directory before the first sync, and managed files etcd lacks.
    memory.dropUnknownEntries();
    const files = await view.directory.list().catch((error: unknown) => error as Error);
    if (!(files instanceof Error)) {
      for (const id of files) if (inEtcd.get(keyOf(id))?.group === undefined) writes.push(settled(view.mirror(id, memory.fileTextOf(keyOf(id)))));
    }
    const failed = (await Promise.all(writes)).filter((error) => error !== undefined);
    // The directory itself cannot be listed: nothing can be brought in step; try the whole resync again.
    if (files instanceof Error) throw files;
    if (failed.length > 0) {
      logger.warn({ files: failed.length, err: failed[0] }, "some files could not be brought in step with etcd; they are tried again every few seconds");
    }
    if (generation !== this.generation || this.closed) return;
    for (const key of [...memory.keys()]) memory.forget(key, busy(key));

    await this.watchFrom(revision + 1, generation);
    this.synced = true;
    this.problem = undefined;
    observer.connected?.(true);
    const seconds = Number(process.hrtime.bigint() - started) / 1e9;
    observer.resynced?.(seconds);
    logger.info({ reason, revision, groups: memory.size, files: view.size, seconds }, "in step with etcd; watching");
    this.options.inStep?.();
  }

  private async watchFrom(startRevision: number, generation: number): Promise<void> {
    const { config, namespace, memory, observer, logger, busy } = this.options;
    const watcher = namespace.watch().prefix("").startRevision(String(startRevision)).watcher();
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
      if (!current()) return;
      const name = kv.key.toString();
      if (name === GC) memory.takeGc(value);
      const part = partOf(name);
      if (part === undefined) return;
      void memory.take(part.key, { [part.part]: value }).catch(() => undefined);
      if (!value.present) memory.forget(part.key, busy(part.key));
    };
    watcher.on("put", (kv) => onChange(kv, valueOf(kv)));
    watcher.on("delete", (kv) => onChange(kv, absentAt(Number(kv.mod_revision))));
    watcher.on("disconnected", (error: Error) => {
      onFailed(error);
      if (!current() || !this.synced || this.resyncing !== undefined) return;
      logger.warn({ err: error }, "etcd watch disconnected");
      observer.connected?.(false);
      this.startResync("a lost watch");
    });
    watcher.on("error", (error: Error) => {
      onFailed(error);
      if (!current() || this.resyncing !== undefined) return;
      logger.warn({ err: error }, "etcd watch canceled (compacted past its revision?)");
      this.startResync(`a canceled watch (${describeEtcdError(error)})`);
    });
    try {
      await beforeDeadline(Date.now() + config.timeoutMs, () => connected);
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
    const { config, namespace, observer, logger } = this.options;
    if (this.resyncing !== undefined || this.closed) return;
    try {
      await beforeDeadline(Date.now() + Math.min(config.timeoutMs, 2000), (deadline) => namespace.get("health").options({ deadline }).exec());
      if (this.problem !== undefined && this.synced) {
        logger.info("etcd answers again");
        this.startResync("etcd being unreachable");
      } else {
        observer.connected?.(true);
      }
    } catch (error) {
      if (this.problem === undefined) logger.error({ err: error }, "etcd does not answer a quorum read; writes will answer 503");
      this.problem = `etcd (${config.endpoints.join(", ")}) is unreachable or without quorum: ${describeEtcdError(error)}`;
      observer.connected?.(false);
    }
  }
}

export function sleep(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms));
}
