import { METHODS } from "node:http";
import type { Context } from "koa";
import { collectDefaultMetrics, Counter, Gauge, Histogram, Registry } from "prom-client";
import type { RejectReason } from "./errors.js";
import type { EtcdObserver } from "./etcdstore/etcd-store.js";
import type { StoreObserver } from "./filestore/store.js";
import type { Entry } from "./store.js";
import { KINDS, type Kind } from "./model.js";

/**
 * Everything `/metrics` shows. One Registry per service, not prom-client's
 * global one, so a test can run several services in one process.
 *
 * Every label takes values from a small fixed set: the route template the
 * router matched (never the raw path), the HTTP method, the status code, a
 * RejectReason. Application names never become label values.
 */
export interface ServiceMetrics {
  readonly registry: Registry;
  /** Hooks the file store calls on every write, removal, failure and outside change. */
  readonly storeObserver: StoreObserver;
  /** Counts and times an answered request by method, matched route and final status; a refusal also by its reason (src/handlers/frame.ts). */
  counted(ctx: Context, seconds: number, reason: RejectReason | undefined): void;
  /** Groups and targets are read from the store at scrape time, so they can never drift. */
  measureRegistered(registered: Registered): void;
  /** `file_sd_ready` follows `/-/ready`, read at scrape time. */
  measureReadiness(readiness: { notReadyBecause(): string | undefined }): void;
  tokensFileReloaded(result: "ok" | "error"): void;
  /** Targets this instance removed because their deadline passed. */
  targetsExpired(count: number): void;
  /** A bug was caught and answered or logged instead of ending the process (file_sd_internal_errors_total). */
  internalError(where: InternalErrorPlace): void;
}

/** Where a bug was caught: a request's handler, a lane's batch of changes, or the process (an unhandled rejection). */
export type InternalErrorPlace = "request" | "lane" | "process";

/** What the gauges read at scrape time: the store. */
export interface Registered {
  readonly size: number;
  list(): Iterable<Entry>;
}

const PREFIX = "file_sd_";
const UNMATCHED_ROUTE = "unmatched";
const KNOWN_METHODS = new Set(METHODS);

const REJECT_REASONS: readonly RejectReason[] = [
  "bad_name",
  "bad_body",
  "rule",
  "bad_request",
  "unauthorized",
  "forbidden",
  "not_found",
  "method",
  "too_large",
  "media_type",
  "precondition",
  "other",
];

const REASON_BY_STATUS: Readonly<Record<number, RejectReason>> = {
  400: "bad_request",
  401: "unauthorized",
  403: "forbidden",
  404: "not_found",
  405: "method",
  413: "too_large",
  412: "precondition",
  415: "media_type",
};

export function createMetrics(): ServiceMetrics {
  const registry = new Registry();
  collectDefaultMetrics({ register: registry });
  const registers = [registry];

  const requests = new Counter({
    name: `${PREFIX}http_requests_total`,
    help: "HTTP requests answered, by method, matched route template and status code.",
    labelNames: ["method", "route", "status"] as const,
    registers,
  });
  const requestDuration = new Histogram({
    name: `${PREFIX}http_request_duration_seconds`,
    help: "Time from receiving a request to having its answer ready, by method and matched route template.",
    labelNames: ["method", "route"] as const,
    buckets: [0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5],
    registers,
  });
  const rejected = new Counter({
    name: `${PREFIX}rejected_requests_total`,
    help: "Requests refused with a 4xx status, by reason.",
    labelNames: ["reason"] as const,
    registers,
  });
  const fileWrite = new Histogram({
    name: `${PREFIX}file_write_duration_seconds`,
    help: "Time to write one file_sd file atomically (write, fsync, rename, directory fsync).",
    buckets: [0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5],
    registers,
  });
  const filesRemoved = new Counter({
    name: `${PREFIX}files_removed_total`,
    help: "file_sd files removed because their group was deleted.",
    registers,
  });
  const writeErrors = new Counter({
    name: `${PREFIX}file_write_errors_total`,
    help: "Writes or removals the disk refused; each one answered 5xx and changed nothing.",
    registers,
  });
  const readErrors = new Counter({
    name: `${PREFIX}file_read_errors_total`,
    help: "Managed files that could not be read or did not hold a valid target group.",
    registers,
  });
  const outsideChanges = new Counter({
    name: `${PREFIX}outside_changes_total`,
    help: "Managed files created, edited or removed by someone else and picked up from the directory watch.",
    registers,
  });
  const leftoversRemoved = new Counter({
    name: `${PREFIX}leftover_files_removed_total`,
    help: "Temporary files left by a crash and removed at start.",
    registers,
  });
  const tokenReloads = new Counter({
    name: `${PREFIX}tokens_file_reloads_total`,
    help: "Reloads of AUTH_TOKENS_FILE after it changed; result=error kept the previous tokens.",
    labelNames: ["result"] as const,
    registers,
  });

  const expired = new Counter({
    name: `${PREFIX}targets_expired_total`,
    help: "Targets removed because their ?ttl= deadline passed (in etcd mode, counted by the instance whose transaction removed them).",
    registers,
  });

  const renewals = new Counter({
    name: `${PREFIX}renewals_total`,
    help: "Renewals (?ttl= requests that only move deadlines later): mode=memory answered from memory and persisted in batches, mode=durable written before their answer (not covered by what is persisted, or a flush of the group failed).",
    labelNames: ["mode"] as const,
    registers,
  });
  const renewalsFromMemory = renewals.labels("memory");
  const renewalsDurable = renewals.labels("durable");
  // Both series from the start, at 0: a rate over them needs no absent().
  renewals.inc({ mode: "memory" }, 0);
  renewals.inc({ mode: "durable" }, 0);
  const renewalFlushes = new Counter({
    name: `${PREFIX}renewal_flushes_total`,
    help: "A group's renewals answered from memory, persisted: in one append to the renewals journal (file mode; one append a second carries every group's) or an etcd transaction (etcd mode; one carries up to 40 groups'). At most one per group per interval (1 s; in etcd mode a quarter of RENEWAL_SLACK, 1 s to 10 s).",
    registers,
  });

  const internalErrors = new Counter({
    name: `${PREFIX}internal_errors_total`,
    help: "Bugs caught instead of ending the process: a 500 from a handler (where=request) or a batch of changes (where=lane), an unhandled rejection (where=process). Should stay 0; the log has each stack.",
    labelNames: ["where"] as const,
    registers,
  });

  // Series that exist from the start, at 0, so rate() and alerts see the first increase.
  for (const where of ["request", "lane", "process"] as const) internalErrors.inc({ where }, 0);
  for (const reason of REJECT_REASONS) rejected.inc({ reason }, 0);
  for (const result of ["ok", "error"] as const) tokenReloads.inc({ result }, 0);

  let registered: Registered = { size: 0, list: () => [] };
  let readiness: { notReadyBecause(): string | undefined } = { notReadyBecause: () => undefined };
  new Gauge({
    name: `${PREFIX}ready`,
    help: "1 when /-/ready answers 200, else 0 (starting, not in step with etcd, shutting down).",
    registers,
    collect() {
      this.set(readiness.notReadyBecause() === undefined ? 1 : 0);
    },
  });
  // By kind: scrape groups and probe groups are counted apart, and sum() counts every file.
  const count = (what: (entry: Entry) => number): Map<Kind, number> => {
    const counts = new Map(KINDS.map((kind) => [kind, 0]));
    for (const entry of registered.list()) counts.set(entry.id.kind, (counts.get(entry.id.kind) ?? 0) + what(entry));
    return counts;
  };
  new Gauge({
    name: `${PREFIX}groups`,
    help: "Registered groups (one file each), by kind: targets (scraped) or probes (blackbox_exporter's).",
    labelNames: ["kind"] as const,
    registers,
    collect() {
      for (const [kind, groups] of count(() => 1)) this.set({ kind }, groups);
    },
  });
  new Gauge({
    name: `${PREFIX}targets`,
    help: "Registered targets over every group, by kind: targets (host:port scraped) or probes (URLs and hosts probed).",
    labelNames: ["kind"] as const,
    registers,
    collect() {
      for (const [kind, targets] of count((entry) => entry.group.targets.length)) this.set({ kind }, targets);
    },
  });

  const storeObserver: StoreObserver = {
    fileWritten: (_fileName, seconds) => fileWrite.observe(seconds),
    fileRemoved: () => filesRemoved.inc(),
    writeFailed: () => writeErrors.inc(),
    readFailed: () => readErrors.inc(),
    outsideChange: () => outsideChanges.inc(),
    leftoverRemoved: () => leftoversRemoved.inc(),
    internalError: () => internalErrors.inc({ where: "lane" }),
    renewal: (mode) => (mode === "memory" ? renewalsFromMemory : renewalsDurable).inc(),
    renewalFlushed: () => renewalFlushes.inc(),
  };

  // prom-client hashes the label set on every call; the sets are few, so keep their children.
  const series = new Map<string, { count: { inc(): void }; duration: { observe(value: number): void } }>();
  const seriesOf = (method: string, route: string, status: number) => {
    const key = `${method} ${route} ${status}`;
    let found = series.get(key);
    if (found === undefined) {
      found = { count: requests.labels(method, route, String(status)), duration: requestDuration.labels(method, route) };
      series.set(key, found);
    }
    return found;
  };

  const counted = (ctx: Context, seconds: number, reason: RejectReason | undefined): void => {
    const method = KNOWN_METHODS.has(ctx.method) ? ctx.method : "other";
    const { count, duration } = seriesOf(method, routeOf(ctx), ctx.status);
    count.inc();
    duration.observe(seconds);
    if (ctx.status >= 400 && ctx.status < 500) rejected.inc({ reason: reason ?? REASON_BY_STATUS[ctx.status] ?? "other" });
  };

  return {
    registry,
    storeObserver,
    counted,
    measureReadiness: (given) => {
      readiness = given;
    },
    measureRegistered: (store) => {
      registered = store;
    },
    tokensFileReloaded: (result) => tokenReloads.inc({ result }),
    targetsExpired: (count) => expired.inc(count),
    internalError: (where) => internalErrors.inc({ where }),
  };
}

/** The route template @koa/router ran (`/:application/:environment`), never the raw path. */
function routeOf(ctx: object): string {
  const route = (ctx as { _matchedRoute?: unknown })._matchedRoute;
  return typeof route === "string" ? route : UNMATCHED_ROUTE;
}

/** The series of etcd mode (docs/etcd.md), registered only when ETCD_ENDPOINTS is set. */
export function createEtcdMetrics(registry: Registry, internalError: (where: "lane") => void): EtcdObserver {
  const registers = [registry];
  const connected = new Gauge({
    name: `${PREFIX}etcd_connected`,
    help: "1 when etcd answers a quorum read and this instance is in step with it, else 0 (writes answer 503).",
    registers,
  });
  const watchRestarts = new Counter({
    name: `${PREFIX}etcd_watch_restarts_total`,
    help: "Watches on etcd lost (disconnect, compaction, etcd unreachable) and started again after a resync.",
    registers,
  });
  const resyncs = new Histogram({
    name: `${PREFIX}etcd_resync_duration_seconds`,
    help: "Resyncs with etcd (at start and after every lost watch): read every group, make the directory equal, watch again.",
    buckets: [0.01, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30],
    registers,
  });
  const conflicts = new Counter({
    name: `${PREFIX}etcd_txn_conflicts_total`,
    help: "Changes (a group's transaction, or its part of a shared flush) that found the group changed by another instance and were computed again on the newer value.",
    registers,
  });
  const commits = new Histogram({
    name: `${PREFIX}etcd_commit_duration_seconds`,
    help: "Time for one etcd transaction that committed a change (quorum write), including retries after errors.",
    buckets: [0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5],
    registers,
  });
  const putBack = new Counter({
    name: `${PREFIX}files_put_back_total`,
    help: "Managed files changed from outside in etcd mode and put back to etcd's value.",
    registers,
  });
  const tombstones = new Counter({
    name: `${PREFIX}etcd_tombstones_removed_total`,
    help: "Deleted groups whose keys this instance removed from etcd, once no change computed before the deletion could still arrive.",
    registers,
  });
  let known: () => number = () => 0;
  new Gauge({
    name: `${PREFIX}etcd_known_groups`,
    help: "Groups whose etcd keys this instance keeps in memory, recently deleted ones included; follows file_sd_groups once deletions are collected.",
    registers,
    collect() {
      this.set(known());
    },
  });
  connected.set(0);
  return {
    connected: (isConnected) => connected.set(isConnected ? 1 : 0),
    watchRestarted: () => watchRestarts.inc(),
    resynced: (seconds) => resyncs.observe(seconds),
    conflict: () => conflicts.inc(),
    committed: (seconds) => commits.observe(seconds),
    putBack: () => putBack.inc(),
    internalError: () => internalError("lane"),
    tombstonesRemoved: (groups) => tombstones.inc(groups),
    measureKnown: (count) => {
      known = count;
    },
  };
}
