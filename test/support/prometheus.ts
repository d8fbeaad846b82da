import { spawn } from "node:child_process";
import { mkdtemp, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { freePort } from "./ports.js";
import { findPrometheus } from "./tools.js";

export { findPrometheus } from "./tools.js";

/** A real Prometheus process on a free loopback port, with its own temporary config and storage. */
export interface RunningPrometheus {
  readonly url: string;
  readonly configFile: string;
  /** Its process, e.g. to SIGSTOP it: a Prometheus that takes connections and never answers. */
  readonly pid: number | undefined;
  /** What Prometheus logged last, to explain a failure. */
  log(): string;
  /** SIGTERM, SIGKILL if it takes more than 10 s, then removes the temporary directory. */
  close(): Promise<void>;
}

export interface PrometheusOptions {
  /** The whole prometheus.yml. */
  readonly configYaml: string;
  readonly binary?: string;
  readonly readyTimeoutMs?: number;
}

const LOG_LINES_KEPT = 200;
const STOP_TIMEOUT_MS = 10_000;
const PORT_ATTEMPTS = 3;

export async function startPrometheus(options: PrometheusOptions): Promise<RunningPrometheus> {
  const binary = options.binary ?? findPrometheus();
  const directory = await mkdtemp(join(tmpdir(), "prometheus-test-"));
  const configFile = join(directory, "prometheus.yml");
  try {
    await writeFile(configFile, options.configYaml);
    // The free port can be taken between our probe and Prometheus' bind; try another then.
    for (let attempt = 1; ; attempt++) {
      try {
        return await launch(binary, directory, configFile, await freePort(), options.readyTimeoutMs ?? 60_000);
      } catch (error) {
        if (!(error instanceof PortTaken) || attempt >= PORT_ATTEMPTS) throw error;
      }
    }
  } catch (error) {
    await rm(directory, { recursive: true, force: true });
    throw error;
  }
}

class PortTaken extends Error {}

type Exit = { readonly code: number | null; readonly signal: NodeJS.Signals | null; readonly error?: Error };

async function launch(
  binary: string,
  directory: string,
  configFile: string,
  port: number,
  readyTimeoutMs: number,
): Promise<RunningPrometheus> {
  const url = `http://127.0.0.1:${port}`;
  const child = spawn(
    binary,
    [
      `--config.file=${configFile}`,
      `--storage.tsdb.path=${join(directory, "data")}`,
      `--web.listen-address=127.0.0.1:${port}`,
    ],
    { stdio: ["ignore", "pipe", "pipe"] },
  );
  const lines: string[] = [];
  const keep = (chunk: Buffer): void => {
    lines.push(...chunk.toString("utf8").split("\n").filter((line) => line !== ""));
    lines.splice(0, Math.max(0, lines.length - LOG_LINES_KEPT));
  };
  child.stdout.on("data", keep);
  child.stderr.on("data", keep);
  const log = (): string => lines.join("\n");

  const exited = new Promise<Exit>((resolve) => {
    child.once("exit", (code, signal) => resolve({ code, signal }));
    child.once("error", (error) => resolve({ code: null, signal: null, error }));
  });
  let hasExited = false;
  void exited.then(() => (hasExited = true));
  // A test runner that dies must not leave Prometheus behind.
  const killOnExit = (): void => void child.kill("SIGKILL");
  process.once("exit", killOnExit);

  let closing: Promise<void> | undefined;
  const close = (): Promise<void> => {
    closing ??= (async () => {
      if (!hasExited) {
        // A stopped process (SIGSTOP) would not see the SIGTERM.
        child.kill("SIGCONT");
        child.kill("SIGTERM");
        const stopped = await Promise.race([exited, sleep(STOP_TIMEOUT_MS).then(() => undefined)]);
        if (stopped === undefined) {
          child.kill("SIGKILL");
          await exited;
        }
      }
      process.off("exit", killOnExit);
      await rm(directory, { recursive: true, force: true });
    })();
    return closing;
  };

  const started = Date.now();
  for (;;) {
    if (hasExited) {
      const exit = await exited;
      process.off("exit", killOnExit);
      if (/address already in use/.test(log())) throw new PortTaken(`port ${port} was taken`);
      throw new Error(
        `${binary} stopped before it was ready (${exit.error?.message ?? `exit code ${exit.code}, signal ${exit.signal}`}):\n${log()}`,
      );
    }
    if (await isReady(url)) return { url, configFile, pid: child.pid, log, close };
    if (Date.now() - started > readyTimeoutMs) {
      await close();
      throw new Error(`${binary} was not ready within ${readyTimeoutMs} ms at ${url}/-/ready:\n${log()}`);
    }
    await sleep(100);
  }
}

async function isReady(url: string): Promise<boolean> {
  try {
    const response = await fetch(`${url}/-/ready`);
    await response.arrayBuffer();
    return response.ok;
  } catch {
    return false;
  }
}

/** One entry of `/api/v1/targets`: what Prometheus discovered, and what it scrapes. */
export interface ActiveTarget {
  readonly discoveredLabels: Readonly<Record<string, string>>;
  readonly labels: Readonly<Record<string, string>>;
  readonly scrapePool: string;
  readonly scrapeUrl: string;
  readonly health: "up" | "down" | "unknown";
  readonly lastError: string;
}

export async function activeTargets(prometheusUrl: string): Promise<ActiveTarget[]> {
  const body = (await getJson(`${prometheusUrl}/api/v1/targets?state=active`)) as {
    data: { activeTargets: ActiveTarget[] };
  };
  return body.data.activeTargets;
}

export interface TargetsSeen {
  readonly targets: ActiveTarget[];
  /** How long Prometheus took, from the call. */
  readonly ms: number;
}

/**
 * Polls `/api/v1/targets` until `until` holds for the active targets, or fails after
 * `timeoutMs` showing what Prometheus listed last.
 */
export async function waitForTargets(
  prometheusUrl: string,
  until: (targets: readonly ActiveTarget[]) => boolean,
  { what, timeoutMs = 60_000 }: { what: string; timeoutMs?: number },
): Promise<TargetsSeen> {
  const started = Date.now();
  for (;;) {
    const targets = await activeTargets(prometheusUrl);
    if (until(targets)) return { targets, ms: Date.now() - started };
    if (Date.now() - started > timeoutMs) {
      const listed = targets.map((target) => `  ${JSON.stringify(target.discoveredLabels)}`).join("\n") || "  (none)";
      throw new Error(`Prometheus did not show ${what} within ${timeoutMs} ms; it lists:\n${listed}`);
    }
    await sleep(100);
  }
}

/**
 * The targets Prometheus read from the file named `fileName` (`__meta_filepath` ends with it):
 * `app@env.json` is a scrape group's, never the probe group's `probes/app@env.json`.
 */
export function targetsFromFile(targets: readonly ActiveTarget[], fileName: string): ActiveTarget[] {
  return targets.filter((target) => {
    const path = target.discoveredLabels.__meta_filepath ?? "";
    return path.endsWith(`/${fileName}`) && (fileName.startsWith("probes/") || !path.endsWith(`/probes/${fileName}`));
  });
}

/** The sum of every series called `name` on Prometheus' own `/metrics`; undefined when there is none. */
export async function selfMetric(prometheusUrl: string, name: string): Promise<number | undefined> {
  const response = await fetch(`${prometheusUrl}/metrics`);
  if (!response.ok) throw new Error(`GET ${prometheusUrl}/metrics answered ${response.status}`);
  let sum: number | undefined;
  for (const line of (await response.text()).split("\n")) {
    const match = /^([a-zA-Z_:][a-zA-Z0-9_:]*)(?:\{[^}]*\})? (\S+)/.exec(line);
    if (match?.[1] === name) sum = (sum ?? 0) + Number(match[2]);
  }
  return sum;
}

export interface Sample {
  readonly metric: Readonly<Record<string, string>>;
  readonly value: readonly [number, string];
}

/** An instant PromQL query. */
export async function query(prometheusUrl: string, promql: string): Promise<Sample[]> {
  const body = (await getJson(`${prometheusUrl}/api/v1/query?query=${encodeURIComponent(promql)}`)) as {
    data: { resultType: string; result: Sample[] };
  };
  return body.data.result;
}

async function getJson(url: string): Promise<unknown> {
  const response = await fetch(url);
  const text = await response.text();
  if (!response.ok) throw new Error(`GET ${url} answered ${response.status}: ${text}`);
  return JSON.parse(text);
}

function sleep(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms));
}
