import { mkdtemp, readdir, readFile, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { randomUUID } from "node:crypto";
import { pino, type Logger } from "pino";
import { inject } from "vitest";
import { loadConfig, type Config } from "../src/config.js";
import type { Kind } from "../src/model.js";
import { startService, type RunningService, type ServiceOptions } from "../src/server.js";

export const silentLogger: Logger = pino({ level: "silent" });

export async function makeTempDir(prefix = "file-sd-test-"): Promise<string> {
  return mkdtemp(join(tmpdir(), prefix));
}

export interface Answer {
  readonly status: number;
  readonly body: unknown;
  readonly headers: Headers;
}

export interface RequestOptions {
  /** A string is sent as is; anything else as JSON. */
  readonly body?: unknown;
  readonly contentType?: string;
  readonly headers?: Record<string, string>;
}

export interface TestService {
  readonly url: string;
  readonly directory: string;
  readonly service: RunningService;
  request(method: string, path: string, options?: RequestOptions): Promise<Answer>;
  /**
   * What Prometheus would read from `<application>@<environment>.json` (kind "probes": from
   * `probes/<application>@<environment>.json`), or undefined when there is no file.
   */
  fileOf(application: string, environment: string, kind?: Kind): Promise<unknown>;
  close(): Promise<void>;
}

/**
 * The backend the API suite runs on: the directory, or (in the `api-on-etcd`
 * project of vitest.config.ts) the shared etcd cluster, with a prefix of its own
 * for every service so that test files never see each other's groups.
 */
export function backendEnv(): Record<string, string> {
  const endpoints = inject("etcdEndpoints");
  if (endpoints.length === 0) return {};
  return { ETCD_ENDPOINTS: endpoints.join(","), ETCD_PREFIX: `/test-${randomUUID()}/` };
}

/** A real listener on a free loopback port, writing to a real temporary directory. */
export async function startTestService(
  options: { directory?: string; env?: Record<string, string>; logger?: Logger; now?: () => number; service?: ServiceOptions } = {},
): Promise<TestService> {
  const ownsDirectory = options.directory === undefined;
  const directory = options.directory ?? (await makeTempDir());
  const config: Config = loadConfig({ BIND: "127.0.0.1:0", FILE_SD_DIRECTORY: directory, ...backendEnv(), ...options.env });
  const service = await startService(config, options.logger ?? silentLogger, { ...options.service, ...(options.now === undefined ? {} : { now: options.now }) });
  if (config.etcd !== undefined) await waitUntilReady(service.url);
  let closed = false;
  return {
    url: service.url,
    directory,
    service,
    request: (method, path, requestOptions) => request(service.url, method, path, requestOptions),
    fileOf: (application, environment, kind) => readGroupFile(directory, application, environment, kind),
    close: async () => {
      if (closed) return;
      closed = true;
      await service.close();
      if (ownsDirectory) await removeDir(directory);
    },
  };
}

export async function request(base: string, method: string, path: string, options: RequestOptions = {}): Promise<Answer> {
  const headers: Record<string, string> = { ...options.headers };
  let body: string | undefined;
  if (options.body !== undefined) {
    body = typeof options.body === "string" ? options.body : JSON.stringify(options.body);
    headers["content-type"] = options.contentType ?? (typeof options.body === "string" ? "application/x-www-form-urlencoded" : "application/json");
  } else if (options.contentType !== undefined) {
    headers["content-type"] = options.contentType;
  }
  const response = await fetch(base + path, { method, headers, body });
  const text = await response.text();
  return { status: response.status, body: text === "" ? undefined : JSON.parse(text), headers: response.headers };
}

export async function readGroupFile(directory: string, application: string, environment: string, kind: Kind = "targets"): Promise<unknown> {
  try {
    return JSON.parse(await readFile(join(directory, kind === "probes" ? "probes" : "", `${application}@${environment}.json`), "utf8"));
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code === "ENOENT") return undefined;
    throw error;
  }
}

export async function removeDir(directory: string): Promise<void> {
  await rm(directory, { recursive: true, force: true });
}

/** Polls `check` until it returns true, or fails after `timeoutMs`. */
export async function eventually(check: () => Promise<boolean> | boolean, timeoutMs = 2000, what = "condition"): Promise<number> {
  const started = Date.now();
  for (;;) {
    if (await check()) return Date.now() - started;
    if (Date.now() - started > timeoutMs) throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}`);
    await new Promise((resolve) => setTimeout(resolve, 20));
  }
}

/** etcd mode answers /-/ready 200 once in step with etcd. */
export async function waitUntilReady(url: string, timeoutMs = 15_000): Promise<void> {
  let last = "";
  try {
    await eventually(async () => {
      const answer = await request(url, "GET", "/-/ready");
      last = JSON.stringify(answer.body);
      return answer.status === 200;
    }, timeoutMs);
  } catch {
    throw new Error(`${url}/-/ready did not answer 200 within ${timeoutMs} ms; last answer: ${last}`);
  }
}

/**
 * The files in a service's directory, as relative paths: the top's, and those in the probes/
 * folder the service keeps there (the folder itself is not listed). Sorted.
 */
export async function filesIn(directory: string): Promise<string[]> {
  const top = await readdir(directory, { withFileTypes: true });
  const names = top.filter((entry) => !(entry.name === "probes" && entry.isDirectory())).map((entry) => entry.name);
  const probes = top.some((entry) => entry.name === "probes" && entry.isDirectory()) ? await readdir(join(directory, "probes")) : [];
  return [...names, ...probes.map((name) => `probes/${name}`)].sort();
}
