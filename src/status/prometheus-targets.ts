import { readFile } from "node:fs/promises";
import type { PrometheusAuth } from "../config.js";
import { META_LABELS } from "../handlers/http-sd.js";
import { own } from "../model.js";

/**
 * What one Prometheus says about its targets (`/api/v1/targets?state=any`),
 * asked at most once a second however many callers wait: every caller within
 * `maxAgeMs` of the last answer gets that answer, and callers that arrive while
 * a request is on its way share it. A hundred deploy pipelines waiting at once
 * cost each Prometheus one request a second.
 */

/** One target as this service cares about it: which group and address it came from, and how its scrapes go. */
export interface SeenTarget {
  readonly health: "up" | "down" | "unknown";
  readonly lastError: string;
  /** ISO time; undefined before the first scrape. */
  readonly lastScrape: string | undefined;
  readonly scrapeUrl: string;
}

/** Prometheus' answer, indexed by `<application>@<environment>` then address. */
export interface TargetsIndex {
  readonly active: ReadonlyMap<string, ReadonlyMap<string, readonly SeenTarget[]>>;
  /** Keys `<application>@<environment>` → addresses Prometheus discovered and relabelled away. */
  readonly dropped: ReadonlyMap<string, ReadonlySet<string>>;
}

export type Snapshot =
  | { readonly ok: true; readonly index: TargetsIndex; readonly at: number }
  | { readonly ok: false; readonly error: string; readonly at: number };

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

export class PrometheusTargets {
  private readonly maxAgeMs: number;
  private readonly timeoutMs: number;
  private last: Snapshot | undefined;
  private inFlight: Promise<Snapshot> | undefined;
  /** Requests sent to Prometheus, for tests and curiosity. */
  requests = 0;

  constructor(
    readonly url: string,
    private readonly options: PrometheusTargetsOptions = {},
  ) {
    this.maxAgeMs = options.maxAgeMs ?? DEFAULT_MAX_AGE_MS;
    this.timeoutMs = options.timeoutMs ?? DEFAULT_TIMEOUT_MS;
  }

  /** The last answer, however old; undefined before the first one. */
  get latest(): Snapshot | undefined {
    return this.last;
  }

  /** The last answer if it is fresh enough, else the one on its way, else a new request. Never rejects. */
  snapshot(): Promise<Snapshot> {
    if (this.last !== undefined && Date.now() - this.last.at < this.maxAgeMs) return Promise.resolve(this.last);
    this.inFlight ??= this.fetchSnapshot().then((snapshot) => {
      this.last = snapshot;
      this.inFlight = undefined;
      return snapshot;
    });
    return this.inFlight;
  }

  private async fetchSnapshot(): Promise<Snapshot> {
    this.requests++;
    const endpoint = `${this.url}/api/v1/targets?state=any`;
    try {
      const response = await fetch(endpoint, {
        headers: { accept: "application/json", ...(await authorization(this.options.auth)) },
        signal: AbortSignal.timeout(this.timeoutMs),
      });
      const text = await response.text();
      if (!response.ok) return failed(`${endpoint} answered ${response.status}: ${text.slice(0, 200)}${hintFor(response.status)}`);
      return { ok: true, index: indexTargets(JSON.parse(text) as TargetsAnswer), at: Date.now() };
    } catch (error) {
      return failed(`${endpoint}: ${describeFailure(error, this.timeoutMs)}`);
    }
  }
}

function failed(error: string): Snapshot {
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
  for (const target of answer.data.activeTargets ?? []) {
    const key = groupKeyOf(target.discoveredLabels ?? {});
    const address = own(target.discoveredLabels ?? {}, "__address__");
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
  return { active, dropped };
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
  return application !== undefined && environment !== undefined ? `${application}@${environment}` : undefined;
}
