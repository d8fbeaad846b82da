import type { PrometheusConfig } from "../config.js";
import { keyOf, type GroupId, type TargetGroup } from "../model.js";
import type { Entry } from "../store.js";
import { PrometheusTargets, type SeenTarget, type Snapshot } from "./prometheus-targets.js";

/**
 * "Is my target scraped?" (docs/api.md): each registered target, as each Prometheus
 * in PROMETHEUS_URL sees it. Knows nothing of HTTP; src/handlers/status.ts answers.
 */

/**
 * `unknown` is Prometheus' own word for a target it lists but has not scraped
 * yet: between `missing` and `up`, usually for one scrape interval.
 */
export type Health = "up" | "down" | "unknown" | "missing" | "dropped" | "unreachable";

export interface ServerHealth {
  /** The Prometheus base URL, as in PROMETHEUS_URL. */
  readonly prometheus: string;
  readonly health: Health;
  /** The last scrape's time (ISO), null before the first one or when Prometheus does not scrape it. */
  readonly lastScrape: string | null;
  /** `down`: Prometheus' lastError; `unreachable`: why Prometheus did not answer. */
  readonly error?: string;
  /** What Prometheus scrapes (`up`, `down`, `unknown`), to spot a wrong port, path or scheme. */
  readonly scrapeUrl?: string;
}

export interface TargetStatus {
  readonly target: string;
  /** `up` on every Prometheus. */
  readonly ready: boolean;
  readonly servers: readonly ServerHealth[];
}

export interface GroupStatus {
  readonly application: string;
  readonly environment: string;
  /** Every target `up` on every Prometheus; false when nothing is registered. */
  readonly ready: boolean;
  readonly targets: readonly TargetStatus[];
  /** Set when nothing is registered, to tell a typo from a slow Prometheus. */
  readonly message?: string;
}

/**
 * How the page got one Prometheus' view (the page never waits long for it):
 * `live`, an answer within the wait (or a fresh cached one); `stale`, none within
 * the wait, so the last one, `at`; `none`, none yet at all; `failed`, it answered
 * with an error or not at all (its targets are `unreachable`).
 */
export type Answer =
  | { readonly kind: "live"; readonly at: number }
  | { readonly kind: "stale"; readonly at: number; readonly waitedMs: number }
  | { readonly kind: "none"; readonly waitedMs: number }
  | { readonly kind: "failed"; readonly at: number; readonly error: string };

/** What the status needs from the store, whichever backend keeps it. */
export interface Registry {
  get(id: GroupId): TargetGroup | undefined;
  list(): Iterable<Entry>;
}

/** Between two looks at Prometheus while waiting; the snapshots' cache makes a look cheap. */
const POLL_MS = 250;

/** Worst first: one pool that fails the target fails it. */
const RANK: Readonly<Record<SeenTarget["health"], number>> = { down: 0, unknown: 1, up: 2 };

export class StatusService {
  readonly servers: readonly PrometheusTargets[];
  /** Where people open each Prometheus (PROMETHEUS_PUBLIC_URL), in the order of `servers`. */
  readonly publicUrls: readonly string[];
  private readonly waiters = new Set<AbortController>();
  private answeringNow = false;

  constructor(
    private readonly registry: Registry,
    config: PrometheusConfig,
    options: { readonly maxAgeMs?: number; readonly timeoutMs?: number } = {},
  ) {
    this.servers = config.urls.map((url) => new PrometheusTargets(url, { ...options, auth: config.auth }));
    this.publicUrls = config.publicUrls;
  }

  /** True once shutdown began: waits answer at once. */
  get shuttingDown(): boolean {
    return this.answeringNow;
  }

  /** Clients holding a `?wait`, for tests and shutdown. */
  get waiting(): number {
    return this.waiters.size;
  }

  async ofGroup(id: GroupId): Promise<GroupStatus> {
    return statusOf(id, this.registry.get(id), await this.snapshots());
  }

  /** Every entry given, in its order. */
  async ofEntries(entries: readonly Entry[]): Promise<{ ready: boolean; groups: GroupStatus[] }> {
    const snapshots = await this.snapshots();
    const groups = entries.map((entry) => statusOf(entry.id, entry.group, snapshots));
    return { ready: groups.length > 0 && groups.every((group) => group.ready), groups };
  }

  /**
   * For the page, which must not hang on a slow Prometheus: each one gets `waitMs`
   * to answer, else its last answer is used (its targets' health is left out when
   * there is none yet). Says per Prometheus which it was.
   */
  async ofEntriesWithin(entries: readonly Entry[], waitMs: number): Promise<{ groups: GroupStatus[]; answers: Answer[] }> {
    const seen = await Promise.all(
      this.servers.map(async (server): Promise<{ seen: Seen | undefined; answer: Answer }> => {
        let timer: NodeJS.Timeout | undefined;
        const late = new Promise<undefined>((resolve) => (timer = setTimeout(() => resolve(undefined), waitMs)));
        const fresh = await Promise.race([server.snapshot(), late]);
        clearTimeout(timer);
        const snapshot = fresh ?? server.latest;
        const answer: Answer =
          snapshot === undefined
            ? { kind: "none", waitedMs: waitMs }
            : !snapshot.ok
              ? { kind: "failed", at: snapshot.at, error: snapshot.error }
              : fresh === undefined
                ? { kind: "stale", at: snapshot.at, waitedMs: waitMs }
                : { kind: "live", at: snapshot.at };
        return { seen: snapshot === undefined ? undefined : { url: server.url, snapshot }, answer };
      }),
    );
    const known = seen.flatMap(({ seen }) => (seen === undefined ? [] : [seen]));
    return {
      groups: entries.map((entry) => statusOf(entry.id, entry.group, known)),
      answers: seen.map(({ answer }) => answer),
    };
  }

  /**
   * Looks again every POLL_MS until the group is ready or `waitMs` is over,
   * the client went away (`signal`), or the service is shutting down: then it
   * answers with the status as it is.
   */
  async waitUntilReady(id: GroupId, waitMs: number, signal: AbortSignal): Promise<GroupStatus> {
    const deadline = Date.now() + waitMs;
    const controller = new AbortController();
    const stop = (): void => controller.abort();
    signal.addEventListener("abort", stop);
    this.waiters.add(controller);
    if (this.answeringNow || signal.aborted) controller.abort();
    try {
      for (;;) {
        const status = await this.ofGroup(id);
        const left = deadline - Date.now();
        if (status.ready || left <= 0 || controller.signal.aborted) return status;
        await sleep(Math.min(POLL_MS, left), controller.signal);
      }
    } finally {
      this.waiters.delete(controller);
      signal.removeEventListener("abort", stop);
    }
  }

  /** Shutdown: every waiting client gets its answer now, and new ones do not wait. */
  answerWaitersNow(): void {
    this.answeringNow = true;
    for (const waiter of this.waiters) waiter.abort();
  }

  private snapshots(): Promise<Seen[]> {
    return Promise.all(this.servers.map(async (server) => ({ url: server.url, snapshot: await server.snapshot() })));
  }
}

interface Seen {
  readonly url: string;
  readonly snapshot: Snapshot;
}

function statusOf(id: GroupId, group: TargetGroup | undefined, snapshots: readonly Seen[]): GroupStatus {
  const { application, environment } = id;
  if (group === undefined) {
    return {
      application,
      environment,
      ready: false,
      targets: [],
      message:
        `nothing is registered for ${application}/${environment}; register it first ` +
        `(curl -X PUT -d targets=host:port …/${application}/${environment}), or check the names`,
    };
  }
  const key = keyOf(id);
  const targets = group.targets.map((target): TargetStatus => {
    const servers = snapshots.map((seen) => healthOn(seen, key, target));
    return { target, ready: servers.every((server) => server.health === "up"), servers };
  });
  return { application, environment, ready: targets.every((target) => target.ready), targets };
}

/** One target on one Prometheus. */
function healthOn({ url, snapshot }: Seen, key: string, target: string): ServerHealth {
  if (!snapshot.ok) return { prometheus: url, health: "unreachable", lastScrape: null, error: snapshot.error };
  const seen = snapshot.index.active.get(key)?.get(target);
  if (seen === undefined || seen.length === 0) {
    const dropped = snapshot.index.dropped.get(key)?.has(target) === true;
    return { prometheus: url, health: dropped ? "dropped" : "missing", lastScrape: null };
  }
  const worst = seen.reduce((a, b) => (RANK[b.health] < RANK[a.health] ? b : a));
  return {
    prometheus: url,
    health: worst.health,
    lastScrape: worst.lastScrape ?? null,
    ...(worst.health === "down" ? { error: worst.lastError } : {}),
    scrapeUrl: worst.scrapeUrl,
  };
}

function sleep(ms: number, signal: AbortSignal): Promise<void> {
  return new Promise((resolve) => {
    if (signal.aborted) return resolve();
    const done = (): void => {
      clearTimeout(timer);
      signal.removeEventListener("abort", done);
      resolve();
    };
    const timer = setTimeout(done, ms);
    signal.addEventListener("abort", done);
  });
}
