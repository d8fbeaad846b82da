import { readFile } from "node:fs/promises";
import type { PrometheusAuth } from "../config.js";
import { META_LABELS } from "../handlers/http-sd.js";
import { keyOf, own } from "../model.js";

/**
 * What one Prometheus says about its targets (`/api/v1/targets?state=any`) and,
 * for the probes, about blackbox_exporter's results (`/api/v1/query`, PROBE_QUERY),
 * each asked at most once a second however many callers wait: every caller within
 * `maxAgeMs` of the last answer gets that answer, and callers that arrive while
 * a request is on its way share it. A hundred deploy pipelines waiting at once
 * cost each Prometheus one request a second to each API (the query API only
 * while someone asks about probes).
 */

/** One target as this service cares about it: which group and address it came from, and how its scrapes go. */
export interface SeenTarget {
  readonly health: "up" | "down" | "unknown";
  readonly lastError: string;
  /** ISO time; undefined before the first scrape. */
  readonly lastScrape: string | undefined;
  readonly scrapeUrl: string;
  /**
   * The labels of its series (Prometheus' `labels`: after relabelling, without `__` ones), as
   * one canonical string: how a probe's result in the query API is found (seriesKeyOf).
   */
  readonly series: string;
}

/** Prometheus' answer, indexed by the group's key (src/model.ts keyOf) then address. */
export interface TargetsIndex {
  readonly active: ReadonlyMap<string, ReadonlyMap<string, readonly SeenTarget[]>>;
  /** Group keys → addresses Prometheus discovered and relabelled away. */
  readonly dropped: ReadonlyMap<string, ReadonlySet<string>>;
  /**
   * Series → how many active targets have exactly its labels. More than one and a sample of
   * that series cannot be told apart: it is attributed to none of them.
   */
  readonly targetsPerSeries: ReadonlyMap<string, number>;
}

export type Snapshot =
  | { readonly ok: true; readonly index: TargetsIndex; readonly at: number }
  | { readonly ok: false; readonly error: string; readonly at: number };

/** What blackbox_exporter reported for one series of labels, the last time Prometheus scraped it. */
export interface ProbeResult {
  readonly success?: boolean;
  readonly durationSeconds?: number;
  /** 0: no HTTP answer at all (refused, DNS, TLS, timeout). */
  readonly httpStatusCode?: number;
}

/** The probe results of every series, from one answer of the query API. */
export type ProbeSnapshot =
  | { readonly ok: true; readonly results: ReadonlyMap<string, ProbeResult>; readonly at: number }
  | { readonly ok: false; readonly error: string; readonly at: number };

/** blackbox_exporter's series the status reads: whether the probe succeeded, how long it took, the HTTP status. */
export const PROBE_QUERY = '{__name__=~"probe_success|probe_duration_seconds|probe_http_status_code"}';

export interface PrometheusTargetsOptions {
  readonly auth?: PrometheusAuth | undefined;
  /** How long one answer serves every caller. */
  readonly maxAgeMs?: number;
  /** A Prometheus slower than this is `unreachable`. */
  readonly timeoutMs?: number;
}

const DEFAULT_MAX_AGE_MS = 1000;
const DEFAULT_TIMEOUT_MS = 2000;
/** Prometheus' zero time: the target was never scraped. */
const NEVER = "0001-01-01T00:00:00Z";

/**
 * One question to Prometheus, asked at most once per `maxAgeMs` however many callers wait for
 * its answer: the last answer while it is fresh, else the request on its way, else a new one.
 */
class Answers<T extends { readonly at: number }> {
  private last: T | undefined;
  private inFlight: Promise<T> | undefined;
  /** Requests sent, for tests and curiosity. */
  requests = 0;

  constructor(
    private readonly maxAgeMs: number,
    private readonly ask: () => Promise<T>,
  ) {}

  get latest(): T | undefined {
    return this.last;
  }

  get(): Promise<T> {
    if (this.last !== undefined && Date.now() - this.last.at < this.maxAgeMs) return Promise.resolve(this.last);
    this.inFlight ??= (this.requests++, this.ask()).then((answer) => {
      this.last = answer;
      this.inFlight = undefined;
      return answer;
    });
    return this.inFlight;
  }
}

export class PrometheusTargets {
  private readonly timeoutMs: number;
  private readonly targets: Answers<Snapshot>;
  private readonly probes: Answers<ProbeSnapshot>;

  constructor(
    readonly url: string,
    private readonly options: PrometheusTargetsOptions = {},
  ) {
    const maxAgeMs = options.maxAgeMs ?? DEFAULT_MAX_AGE_MS;
    this.timeoutMs = options.timeoutMs ?? DEFAULT_TIMEOUT_MS;
    this.targets = new Answers(maxAgeMs, () =>
      this.ask("/api/v1/targets?state=any", (text): Snapshot => ({ ok: true, index: indexTargets(JSON.parse(text) as TargetsAnswer), at: Date.now() })),
    );
    this.probes = new Answers(maxAgeMs, () =>
      this.ask(`/api/v1/query?query=${encodeURIComponent(PROBE_QUERY)}`, (text): ProbeSnapshot => ({
        ok: true,
        results: indexProbeResults(JSON.parse(text) as QueryAnswer),
        at: Date.now(),
      })),
    );
  }

  /** Requests sent to /api/v1/targets, for tests and curiosity. */
  get requests(): number {
    return this.targets.requests;
  }

  /** Requests sent to /api/v1/query (only while someone asks about probes). */
  get probeRequests(): number {
    return this.probes.requests;
  }

  /** The last answer, however old; undefined before the first one. */
  get latest(): Snapshot | undefined {
    return this.targets.latest;
  }

  /** The last probe results, however old. */
  get latestProbes(): ProbeSnapshot | undefined {
    return this.probes.latest;
  }

  /** Its targets: the last answer if it is fresh enough, else the one on its way, else a new request. Never rejects. */
  snapshot(): Promise<Snapshot> {
    return this.targets.get();
  }

  /** blackbox_exporter's results (PROBE_QUERY), cached like `snapshot`. Never rejects. */
  probeSnapshot(): Promise<ProbeSnapshot> {
    return this.probes.get();
  }

  private async ask<T>(path: string, parse: (text: string) => T): Promise<T | { ok: false; error: string; at: number }> {
    const endpoint = `${this.url}${path}`;
    try {
      const response = await fetch(endpoint, {
        headers: { accept: "application/json", ...(await authorization(this.options.auth)) },
        signal: AbortSignal.timeout(this.timeoutMs),
      });
      const text = await response.text();
      if (!response.ok) return failed(`${endpoint} answered ${response.status}: ${text.slice(0, 200)}${hintFor(response.status)}`);
      return parse(text);
    } catch (error) {
      return failed(`${endpoint}: ${describeFailure(error, this.timeoutMs)}`);
    }
  }
}

function failed(error: string): { ok: false; error: string; at: number } {
  return { ok: false, error, at: Date.now() };
}

async function authorization(auth: PrometheusAuth | undefined): Promise<Record<string, string>> {
  if (auth === undefined) return {};
  if (auth.kind === "bearer") return { authorization: `Bearer ${(await readFile(auth.tokenFile, "utf8")).trim()}` };
  const password = (await readFile(auth.passwordFile, "utf8")).replace(/\r?\n$/, "");
  return { authorization: `Basic ${Buffer.from(`${auth.username}:${password}`).toString("base64")}` };
}

function hintFor(status: number): string {
  if (status === 401 || status === 403) {
    return " (set PROMETHEUS_BEARER_TOKEN_FILE, or PROMETHEUS_USERNAME and PROMETHEUS_PASSWORD_FILE)";
  }
  if (status === 404) return " (is PROMETHEUS_URL the base URL Prometheus serves, with its --web.route-prefix?)";
  return "";
}

/** `fetch failed` says nothing; its cause (ECONNREFUSED, a certificate error, the timeout) does. */
function describeFailure(error: unknown, timeoutMs: number): string {
  if (error instanceof Error && (error.name === "TimeoutError" || error.name === "AbortError")) {
    return `no answer within ${timeoutMs} ms`;
  }
  if (error instanceof SyntaxError) return `the answer is not JSON: ${error.message}`;
  const cause = (error as { cause?: { message?: unknown; code?: unknown } }).cause;
  const detail = typeof cause?.message === "string" ? cause.message : typeof cause?.code === "string" ? cause.code : undefined;
  const message = error instanceof Error ? error.message : String(error);
  return detail === undefined ? message : `${message}: ${detail}`;
}

interface TargetsAnswer {
  readonly status?: string;
  readonly data?: {
    readonly activeTargets?: readonly {
      readonly discoveredLabels?: Readonly<Record<string, string>>;
      readonly labels?: Readonly<Record<string, string>>;
      readonly health?: string;
      readonly lastError?: string;
      readonly lastScrape?: string;
      readonly scrapeUrl?: string;
    }[];
    readonly droppedTargets?: readonly { readonly discoveredLabels?: Readonly<Record<string, string>> }[];
  };
}

/** Built once per answer, so each status question is two map lookups per target. */
export function indexTargets(answer: TargetsAnswer): TargetsIndex {
  if (answer.status !== "success" || answer.data === undefined) {
    throw new SyntaxError(`expected {"status":"success","data":…}, got status ${JSON.stringify(answer.status)}`);
  }
  const active = new Map<string, Map<string, SeenTarget[]>>();
  const targetsPerSeries = new Map<string, number>();
  for (const target of answer.data.activeTargets ?? []) {
    const series = seriesKeyOf(target.labels ?? {});
    targetsPerSeries.set(series, (targetsPerSeries.get(series) ?? 0) + 1);
    const key = groupKeyOf(target.discoveredLabels ?? {});
    const address = key?.startsWith("probes/") === true ? (probedOf(target.scrapeUrl) ?? own(target.discoveredLabels ?? {}, "__address__")) : own(target.discoveredLabels ?? {}, "__address__");
    if (key === undefined || address === undefined) continue;
    const byAddress = active.get(key) ?? new Map<string, SeenTarget[]>();
    active.set(key, byAddress);
    const seen = byAddress.get(address) ?? [];
    byAddress.set(address, seen);
    seen.push({
      health: target.health === "up" || target.health === "down" ? target.health : "unknown",
      lastError: target.lastError ?? "",
      lastScrape: target.lastScrape === undefined || target.lastScrape.startsWith(NEVER.slice(0, 10)) ? undefined : target.lastScrape,
      scrapeUrl: target.scrapeUrl ?? "",
      series,
    });
  }
  const dropped = new Map<string, Set<string>>();
  for (const target of answer.data.droppedTargets ?? []) {
    const key = groupKeyOf(target.discoveredLabels ?? {});
    const address = own(target.discoveredLabels ?? {}, "__address__");
    if (key === undefined || address === undefined) continue;
    const addresses = dropped.get(key) ?? new Set<string>();
    dropped.set(key, addresses);
    addresses.add(address);
  }
  return { active, dropped, targetsPerSeries };
}

/**
 * What a probe target asks blackbox_exporter to probe: the `target` parameter of its scrape
 * URL, which the job's relabelling sets from the registered URL or host. Read from there rather
 * than from the discovered `__address__`: Prometheus 2.42 (Debian 12's) has been seen to list
 * an active target's discovered labels as they were after relabelling, `__address__` the
 * exporter's, and the scrape URL is what is really probed.
 */
function probedOf(scrapeUrl: string | undefined): string | undefined {
  if (scrapeUrl === undefined) return undefined;
  try {
    return new URL(scrapeUrl).searchParams.get("target") ?? undefined;
  } catch {
    return undefined;
  }
}

/** A set of labels as one string, the same whatever the order; `__name__` and every `__` label left out. */
export function seriesKeyOf(labels: Readonly<Record<string, string>>): string {
  const kept = Object.entries(labels).filter(([name]) => !name.startsWith("__"));
  kept.sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0));
  return JSON.stringify(kept);
}

interface QueryAnswer {
  readonly status?: string;
  readonly data?: {
    readonly resultType?: string;
    readonly result?: readonly { readonly metric?: Readonly<Record<string, string>>; readonly value?: readonly [number, string] }[];
  };
}

/** The query API's answer to PROBE_QUERY → each series' probe result. */
export function indexProbeResults(answer: QueryAnswer): Map<string, ProbeResult> {
  if (answer.status !== "success" || answer.data?.resultType !== "vector") {
    throw new SyntaxError(`expected {"status":"success","data":{"resultType":"vector",…}}, got status ${JSON.stringify(answer.status)}`);
  }
  const results = new Map<string, ProbeResult>();
  for (const { metric = {}, value } of answer.data.result ?? []) {
    const number = Number(value?.[1]);
    if (!Number.isFinite(number)) continue;
    const series = seriesKeyOf(metric);
    const known = results.get(series) ?? {};
    switch (own(metric, "__name__")) {
      case "probe_success":
        results.set(series, { ...known, success: number === 1 });
        break;
      case "probe_duration_seconds":
        results.set(series, { ...known, durationSeconds: number });
        break;
      case "probe_http_status_code":
        results.set(series, { ...known, httpStatusCode: number });
        break;
    }
  }
  return results;
}

/**
 * `<application>@<environment>` of a target Prometheus discovered from us. The
 * file it came from decides (`__meta_filepath`, which Prometheus sets and no
 * registration can): a file named like ours (names never hold `@` or `/`), and
 * nothing for any other file. Only a target without a file, one Prometheus got
 * from `/-/http_sd`, is placed by the meta labels the endpoint sets. So one
 * application's registration can never count for another's status.
 */
export function groupKeyOf(discovered: Readonly<Record<string, string>>): string | undefined {
  const file = own(discovered, "__meta_filepath");
  // A file in probes/ is a probe group's (src/directory/naming.ts): its key says so, as keyOf does.
  if (file !== undefined) return /(?:^|\/)((?:probes\/)?[^/@]+@[^/@]+)\.json$/.exec(file)?.[1];
  const application = own(discovered, META_LABELS.application);
  const environment = own(discovered, META_LABELS.environment);
  if (application === undefined || environment === undefined) return undefined;
  // /-/http_sd?kind=probes names each group's file, probes/… like the directory's.
  const probes = own(discovered, META_LABELS.file)?.startsWith("probes/") === true;
  return keyOf({ kind: probes ? "probes" : "targets", application, environment });
}
