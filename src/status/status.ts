import type { PrometheusConfig } from "../config.js";
import { keyOf, type GroupId, type TargetGroup } from "../model.js";
import type { Entry } from "../store.js";
import { PrometheusTargets, type ProbeResult, type ProbeSnapshot, type SeenTarget, type Snapshot } from "./prometheus-targets.js";

/**
 * "Is my target scraped?" (docs/api.md): each registered target, as each Prometheus
 * in PROMETHEUS_URL sees it. For a probe group, "does my URL answer?" (docs/probes.md): each
 * probe's last result from blackbox_exporter, as each Prometheus recorded it.
 * Knows nothing of HTTP; src/handlers/status.ts answers.
 */

/**
 * `unknown` is Prometheus' own word for a target it lists but has not scraped
 * yet: between `missing` and `up`, usually for one scrape interval.
 */
export type Health = "up" | "down" | "unknown" | "missing" | "dropped" | "unreachable";

export interface ServerHealth {
  /** The Prometheus base URL, as in PROMETHEUS_URL. */
  readonly prometheus: string;
  /**
   * A probe's health is its result: `up` when the probe succeeded, `down` when it failed or
   * blackbox_exporter could not be scraped (`error` says which), `unknown` while Prometheus
   * lists it but has no result yet.
   */
  readonly health: Health;
  /** The last scrape's time (ISO), null before the first one or when Prometheus does not scrape it. */
  readonly lastScrape: string | null;
  /** `down`: Prometheus' lastError; `unreachable`: why Prometheus did not answer. */
  readonly error?: string;
  /** What Prometheus scrapes (`up`, `down`, `unknown`), to spot a wrong port, path or scheme. */
  readonly scrapeUrl?: string;
  /** Probes only, once blackbox_exporter reported: probe_success, probe_duration_seconds, probe_http_status_code. */
  readonly probe?: ProbeResult;
  /** A failed probe: the exporter's own account of it (`debug=true` on what Prometheus asks it). */
  readonly debugUrl?: string;
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
  /** Set for a probe group, whose `targets` are its URLs and hosts. */
  readonly kind?: "probes";
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
    return statusOf(id, this.registry.get(id), await this.snapshots(id.kind === "probes"));
  }

  /** Every entry given, in its order. */
  async ofEntries(entries: readonly Entry[]): Promise<{ ready: boolean; groups: GroupStatus[] }> {
    const snapshots = await this.snapshots(entries.some((entry) => entry.id.kind === "probes"));
    const groups = entries.map((entry) => statusOf(entry.id, entry.group, snapshots));
    return { ready: groups.length > 0 && groups.every((group) => group.ready), groups };
  }

  /**
   * For the page, which must not hang on a slow Prometheus: each one gets `waitMs`
   * to answer, else its last answer is used (its targets' health is left out when
   * there is none yet). Says per Prometheus which it was.
   */
  async ofEntriesWithin(entries: readonly Entry[], waitMs: number): Promise<{ groups: GroupStatus[]; answers: Answer[] }> {
    const probes = entries.some((entry) => entry.id.kind === "probes");
    const seen = await Promise.all(
      this.servers.map(async (server): Promise<{ seen: Seen | undefined; answer: Answer }> => {
        let timer: NodeJS.Timeout | undefined;
        const late = new Promise<undefined>((resolve) => (timer = setTimeout(() => resolve(undefined), waitMs)));
        const [fresh, freshProbes] = await Promise.all([
          Promise.race([server.snapshot(), late]),
          probes ? Promise.race([server.probeSnapshot(), late]) : undefined,
        ]);
        clearTimeout(timer);
        const snapshot = fresh ?? server.latest;
        const probeSnapshot = probes ? (freshProbes ?? server.latestProbes) : undefined;
        const answer: Answer =
          snapshot === undefined
            ? { kind: "none", waitedMs: waitMs }
            : !snapshot.ok
              ? { kind: "failed", at: snapshot.at, error: snapshot.error }
              : fresh === undefined
                ? { kind: "stale", at: snapshot.at, waitedMs: waitMs }
                : { kind: "live", at: snapshot.at };
        return { seen: snapshot === undefined ? undefined : { url: server.url, snapshot, ...(probeSnapshot === undefined ? {} : { probes: probeSnapshot }) }, answer };
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

  /** Each Prometheus' targets, and its probe results when a probe group is asked about (one more question to it). */
  private snapshots(probes: boolean): Promise<Seen[]> {
    return Promise.all(
      this.servers.map(async (server): Promise<Seen> => {
        const [snapshot, probeSnapshot] = await Promise.all([server.snapshot(), probes ? server.probeSnapshot() : undefined]);
        return { url: server.url, snapshot, ...(probeSnapshot === undefined ? {} : { probes: probeSnapshot }) };
      }),
    );
  }
}

interface Seen {
  readonly url: string;
  readonly snapshot: Snapshot;
  /** Only when a probe group is asked about. */
  readonly probes?: ProbeSnapshot;
}

function statusOf(id: GroupId, group: TargetGroup | undefined, snapshots: readonly Seen[]): GroupStatus {
  const { application, environment } = id;
  const probes = id.kind === "probes";
  const kind = probes ? { kind: "probes" as const } : {};
  if (group === undefined) {
    const path = `/${application}/${environment}${probes ? "/probes" : ""}`;
    return {
      application,
      environment,
      ...kind,
      ready: false,
      targets: [],
      message:
        `nothing is registered for ${probes ? "the probes of " : ""}${application}/${environment}; register it first ` +
        `(curl -X PUT -d targets=${probes ? "https://host/path -d __param_module=http_2xx" : "host:port"} …${path}), or check the names`,
    };
  }
  const key = keyOf(id);
  const targets = group.targets.map((target): TargetStatus => {
    const servers = snapshots.map((seen) => (probes ? probeOn(seen, key, target) : healthOn(seen, key, target)));
    return { target, ready: servers.every((server) => server.health === "up"), servers };
  });
  return { application, environment, ...kind, ready: targets.every((target) => target.ready), targets };
}

/** The targets Prometheus lists for one registered target, worst first; or its health when there are none. */
function listed({ url, snapshot }: Seen, key: string, target: string): { readonly worstFirst: readonly [SeenTarget, ...SeenTarget[]] } | { readonly not: ServerHealth } {
  if (!snapshot.ok) return { not: { prometheus: url, health: "unreachable", lastScrape: null, error: snapshot.error } };
  const [first, ...rest] = [...(snapshot.index.active.get(key)?.get(target) ?? [])].sort((a, b) => RANK[a.health] - RANK[b.health]);
  if (first === undefined) {
    const dropped = snapshot.index.dropped.get(key)?.has(target) === true;
    return { not: { prometheus: url, health: dropped ? "dropped" : "missing", lastScrape: null } };
  }
  return { worstFirst: [first, ...rest] };
}

/** One target on one Prometheus. */
function healthOn(seen: Seen, key: string, target: string): ServerHealth {
  const found = listed(seen, key, target);
  if ("not" in found) return found.not;
  const [worst] = found.worstFirst;
  return {
    prometheus: seen.url,
    health: worst.health,
    lastScrape: worst.lastScrape ?? null,
    ...(worst.health === "down" ? { error: worst.lastError } : {}),
    scrapeUrl: worst.scrapeUrl,
  };
}

/**
 * One probe on one Prometheus: Prometheus scrapes blackbox_exporter for it (the targets API
 * says how that goes), and the exporter's answer says how the probe went (the query API, the
 * series with exactly the target's labels). When Prometheus lists it in several jobs, the worst.
 */
function probeOn(seen: Seen, key: string, target: string): ServerHealth {
  const found = listed(seen, key, target);
  if ("not" in found) return found.not;
  const { snapshot, probes } = seen;
  const healths = found.worstFirst.map((scrape): ServerHealth => {
    const base = { prometheus: seen.url, lastScrape: scrape.lastScrape ?? null, scrapeUrl: scrape.scrapeUrl };
    if (scrape.health === "down") {
      return { ...base, health: "down", error: `blackbox_exporter could not be scraped, so there is no probe result: ${scrape.lastError}` };
    }
    if (scrape.health === "unknown") return { ...base, health: "unknown" };
    // The page's bounded wait may have no answer of the query API yet: no result to show, not a failure.
    if (probes === undefined) return { ...base, health: "unknown" };
    if (!probes.ok) return { ...base, health: "unreachable", error: probes.error };
    if (snapshot.ok && (snapshot.index.targetsPerSeries.get(scrape.series) ?? 0) > 1) {
      return {
        ...base,
        health: "down",
        error:
          "another target in this Prometheus has exactly the same labels, so their probe results cannot be told apart; " +
          "give this group a label of its own (or its own job)",
      };
    }
    const probe = probes.results.get(scrape.series);
    // Scraped, but the query's answer is older than the first scrape: soon.
    if (probe?.success === undefined) return { ...base, health: "unknown" };
    if (probe.success) return { ...base, health: "up", probe };
    return { ...base, health: "down", probe, error: probeFailure(probe), ...(scrape.scrapeUrl === "" ? {} : { debugUrl: debugUrlOf(scrape.scrapeUrl) }) };
  });
  return healths.reduce((worst, health) => (PROBE_RANK.indexOf(health.health) < PROBE_RANK.indexOf(worst.health) ? health : worst));
}

/** Worst first, for a probe listed in several jobs. */
const PROBE_RANK: readonly Health[] = ["down", "unreachable", "unknown", "up"];

/** What a failed probe's series say about why; blackbox_exporter's debug output (debugUrl) says the rest. */
function probeFailure(probe: ProbeResult): string {
  const code = probe.httpStatusCode;
  if (code === undefined) return "the probe failed";
  return code === 0 ? "the probe failed: no HTTP answer (connection refused, DNS, TLS or timeout)" : `the probe failed: HTTP status ${code}`;
}

/** The probe again, with blackbox_exporter's step-by-step log of it instead of its metrics. */
function debugUrlOf(scrapeUrl: string): string {
  return `${scrapeUrl}${scrapeUrl.includes("?") ? "&" : "?"}debug=true`;
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
