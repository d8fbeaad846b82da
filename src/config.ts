import { mkdir, readFile, unlink, writeFile } from "node:fs/promises";
import { join, resolve } from "node:path";
import { createSecureContext } from "node:tls";
import { parsePolicy, PolicyError } from "./auth/policy.js";
import { EVERY_GROUP, parseGroupSelector, SelectorError, type GroupSelector } from "./etcdstore/selector.js";
import { parseDuration } from "./parse/duration.js";

/** Every environment variable the service reads, parsed and checked in one place (see .env-sample). */
export interface Config {
  readonly fileSdDirectory: string;
  readonly host: string;
  readonly port: number;
  readonly logLevel: LogLevel;
  readonly maxBodyBytes: number;
  /**
   * RENEWAL_SLACK: how far a renewal answered from memory may move a deadline past the persisted
   * one; what a crash can add to a target's life in file mode, and (+ 1 s) the grace of etcd mode
   * (docs/heartbeats.md). 0: every renewal is written before its answer.
   */
  readonly renewalSlackMs: number;
  readonly tls: { readonly certFile: string; readonly keyFile: string } | undefined;
  /** Write tokens (and optionally read tokens); undefined: nobody needs a token. */
  readonly authTokensFile: string | undefined;
  /** The Prometheus servers the status endpoints ask (PROMETHEUS_URL); undefined: status is off. */
  readonly prometheus: PrometheusConfig | undefined;
  /** ETCD_ENDPOINTS and the rest of etcd mode (docs/etcd.md); undefined: the directory is the registry. */
  readonly etcd: EtcdConfig | undefined;
}

export interface EtcdConfig {
  readonly endpoints: readonly string[];
  /** Ends in `/`; the groups live under `<prefix>groups/`. */
  readonly prefix: string;
  readonly timeoutMs: number;
  /** CA to trust (default: the system's), and a client certificate when etcd asks for one. */
  readonly tls: { readonly caFile?: string; readonly certFile?: string; readonly keyFile?: string } | undefined;
  readonly auth: { readonly username: string; readonly password: string } | { readonly username: string; readonly passwordFile: string } | undefined;
  /** GROUP_SELECTOR as given, and what it means; absent: every group. */
  readonly groupSelector: { readonly text: string; readonly matches: GroupSelector } | undefined;
}

/** How the service asks Prometheus `/api/v1/targets` (docs/api.md, "Is it scraped?"). */
export interface PrometheusConfig {
  /** Base URLs without a trailing slash, e.g. `http://prometheus:9090` or `https://host/prometheus`. */
  readonly urls: readonly string[];
  /**
   * PROMETHEUS_PUBLIC_URL: where a person's browser opens each of `urls` (same count and
   * order), for the page's links; default the same URLs. They differ when the service
   * reaches Prometheus by an internal name and people through a proxy.
   */
  readonly publicUrls: readonly string[];
  readonly auth: PrometheusAuth | undefined;
}

/** Files are read at each request, so a rotated token or password needs no restart. */
export type PrometheusAuth =
  | { readonly kind: "bearer"; readonly tokenFile: string }
  | { readonly kind: "basic"; readonly username: string; readonly passwordFile: string };

const LOG_LEVELS = ["fatal", "error", "warn", "info", "debug", "trace", "silent"] as const;
export type LogLevel = (typeof LOG_LEVELS)[number];

export const DEFAULTS = {
  FILE_SD_DIRECTORY: "./file_sd",
  BIND: "127.0.0.1:12345",
  LOGLEVEL: "info",
  MAX_BODY_BYTES: String(1024 * 1024),
  ETCD_PREFIX: "/file-sd-writer/",
  ETCD_TIMEOUT: "5s",
  RENEWAL_SLACK: "2s",
} as const;

/**
 * A setting a person has to change: the service exits with status 2 (docs/operations.md,
 * "Exit codes"), which the systemd unit does not restart after, since a restart cannot fix it.
 */
export class ConfigError extends Error {
  override readonly name = "ConfigError";
}

export function loadConfig(env: Readonly<Record<string, string | undefined>>): Config {
  const value = (name: keyof typeof DEFAULTS): string => {
    const given = env[name]?.trim();
    return given === undefined || given === "" ? DEFAULTS[name] : given;
  };
  const { host, port } = parseBind(value("BIND"));
  return {
    fileSdDirectory: value("FILE_SD_DIRECTORY"),
    host,
    port,
    logLevel: parseLogLevel(value("LOGLEVEL")),
    maxBodyBytes: parseMaxBodyBytes(value("MAX_BODY_BYTES")),
    renewalSlackMs: parseRenewalSlack(value("RENEWAL_SLACK")),
    tls: parseTls(env.CERTFILE?.trim() || undefined, env.KEYFILE?.trim() || undefined),
    authTokensFile: env.AUTH_TOKENS_FILE?.trim() || undefined,
    prometheus: parsePrometheus(env),
    etcd: parseEtcd(env, value),
  };
}

/** At most an hour: it is what a crash may add to a target's life, and etcd mode's grace. */
function parseRenewalSlack(text: string): number {
  const ms = parseDuration(text);
  if (ms === undefined || ms > 3_600_000) throw new ConfigError(`RENEWAL_SLACK=${JSON.stringify(text)} must be a duration from 0s to 1h, e.g. 2s or 30s`);
  return ms;
}

const ETCD_VARIABLES = [
  "ETCD_ENDPOINTS",
  "ETCD_PREFIX",
  "ETCD_TIMEOUT",
  "ETCD_CA_FILE",
  "ETCD_CERT_FILE",
  "ETCD_KEY_FILE",
  "ETCD_USERNAME",
  "ETCD_PASSWORD",
  "ETCD_PASSWORD_FILE",
  "GROUP_SELECTOR",
] as const;

function parseEtcd(env: Readonly<Record<string, string | undefined>>, value: (name: "ETCD_PREFIX" | "ETCD_TIMEOUT") => string): EtcdConfig | undefined {
  const given = (name: (typeof ETCD_VARIABLES)[number]): string | undefined => env[name]?.trim() || undefined;
  const endpointsText = given("ETCD_ENDPOINTS");
  if (endpointsText === undefined) {
    const stray = ETCD_VARIABLES.filter((name) => given(name) !== undefined);
    if (stray.length > 0) {
      throw new ConfigError(`${stray.join(", ")} ${stray.length === 1 ? "is" : "are"} set but ETCD_ENDPOINTS is not: set ETCD_ENDPOINTS to use etcd, or unset ${stray.length === 1 ? "it" : "them"}`);
    }
    return undefined;
  }
  const endpoints = endpointsText.split(",").map((endpoint) => endpoint.trim());
  for (const endpoint of endpoints) {
    let url: URL | undefined;
    try {
      url = new URL(endpoint);
    } catch {
      url = undefined;
    }
    if (url === undefined || (url.protocol !== "http:" && url.protocol !== "https:") || url.port === "" || url.pathname !== "/" || endpoint.endsWith("/")) {
      throw new ConfigError(`ETCD_ENDPOINTS: ${JSON.stringify(endpoint)} must be a client URL like http://etcd-1:2379 or https://10.0.0.5:2379 (scheme, host and port; comma-separated)`);
    }
  }
  const schemes = new Set(endpoints.map((endpoint) => new URL(endpoint).protocol));
  if (schemes.size > 1) throw new ConfigError("ETCD_ENDPOINTS mixes http:// and https://; use one scheme for every member");

  const prefix = value("ETCD_PREFIX");
  if (!prefix.startsWith("/") || /\s/.test(prefix)) {
    throw new ConfigError(`ETCD_PREFIX=${JSON.stringify(prefix)} must start with / and hold no spaces, e.g. /file-sd-writer/`);
  }
  const timeoutText = value("ETCD_TIMEOUT");
  const timeoutMs = parseDuration(timeoutText);
  if (timeoutMs === undefined || timeoutMs < 100 || timeoutMs > 60_000) {
    throw new ConfigError(`ETCD_TIMEOUT=${JSON.stringify(timeoutText)} must be a duration from 100ms to 1m, e.g. 5s or 1500ms`);
  }

  const [caFile, certFile, keyFile] = [given("ETCD_CA_FILE"), given("ETCD_CERT_FILE"), given("ETCD_KEY_FILE")];
  if ((certFile === undefined) !== (keyFile === undefined)) {
    throw new ConfigError("set both ETCD_CERT_FILE and ETCD_KEY_FILE for a client certificate, or neither");
  }
  const tlsGiven = caFile !== undefined || certFile !== undefined;
  if (tlsGiven && !schemes.has("https:")) {
    throw new ConfigError("ETCD_CA_FILE, ETCD_CERT_FILE and ETCD_KEY_FILE are for https:// endpoints; ETCD_ENDPOINTS uses http://");
  }

  // The password as given (a space may belong to it), but an empty one is no password: `.env-sample` has ETCD_PASSWORD=.
  const [username, password, passwordFile] = [given("ETCD_USERNAME"), env.ETCD_PASSWORD || undefined, given("ETCD_PASSWORD_FILE")];
  let auth: EtcdConfig["auth"];
  if (username === undefined) {
    if (password !== undefined || passwordFile !== undefined) throw new ConfigError("ETCD_PASSWORD and ETCD_PASSWORD_FILE need ETCD_USERNAME");
  } else if (password !== undefined && passwordFile !== undefined) {
    throw new ConfigError("set ETCD_PASSWORD or ETCD_PASSWORD_FILE, not both");
  } else if (passwordFile !== undefined) {
    auth = { username, passwordFile };
  } else if (password !== undefined && password !== "") {
    auth = { username, password };
  } else {
    throw new ConfigError(`ETCD_USERNAME=${username} needs a password: set ETCD_PASSWORD_FILE (preferred) or ETCD_PASSWORD`);
  }

  const selectorText = given("GROUP_SELECTOR");
  let groupSelector: EtcdConfig["groupSelector"];
  if (selectorText !== undefined) {
    try {
      groupSelector = { text: selectorText, matches: parseGroupSelector(selectorText) };
    } catch (error) {
      if (error instanceof SelectorError) throw new ConfigError(error.message);
      throw error;
    }
  }

  return {
    endpoints,
    prefix: prefix.endsWith("/") ? prefix : `${prefix}/`,
    timeoutMs,
    tls: tlsGiven || schemes.has("https:") ? { caFile, certFile, keyFile } : undefined,
    auth,
    groupSelector,
  };
}

/** Every group, when GROUP_SELECTOR is not set. */
export function selectorOf(etcd: EtcdConfig): GroupSelector {
  return etcd.groupSelector?.matches ?? EVERY_GROUP;
}

/** `host:port`, `[ipv6]:port`; port 0 picks a free port. */
export function parseBind(bind: string): { host: string; port: number } {
  const match = /^(?:\[([^\]]+)\]|([^:[\]]*)):([0-9]{1,5})$/.exec(bind);
  const port = Number(match?.[3]);
  if (match === null || port > 65535) {
    throw new ConfigError(`BIND=${JSON.stringify(bind)} must be host:port, e.g. 127.0.0.1:12345 or [::1]:12345`);
  }
  return { host: match[1] ?? (match[2] || "0.0.0.0"), port };
}

function parseLogLevel(level: string): LogLevel {
  const lower = level.toLowerCase();
  if (!(LOG_LEVELS as readonly string[]).includes(lower)) {
    throw new ConfigError(`LOGLEVEL=${JSON.stringify(level)} must be one of ${LOG_LEVELS.join(", ")}`);
  }
  return lower as LogLevel;
}

function parseMaxBodyBytes(text: string): number {
  const bytes = Number(text);
  if (!/^[0-9]+$/.test(text) || !Number.isSafeInteger(bytes) || bytes < 1) {
    throw new ConfigError(`MAX_BODY_BYTES=${JSON.stringify(text)} must be a whole number of bytes, at least 1`);
  }
  return bytes;
}

function parseTls(certFile: string | undefined, keyFile: string | undefined): Config["tls"] {
  if (certFile === undefined && keyFile === undefined) return undefined;
  if (certFile === undefined || keyFile === undefined) {
    throw new ConfigError("set both CERTFILE and KEYFILE for HTTPS, or neither for plain HTTP");
  }
  return { certFile, keyFile };
}

/**
 * PROMETHEUS_URL (comma-separated) and its credentials. Credentials never go in the
 * URL: the URLs are shown in every status answer.
 */
export function parsePrometheus(env: Readonly<Record<string, string | undefined>>): PrometheusConfig | undefined {
  const given = (name: "PROMETHEUS_URL" | "PROMETHEUS_PUBLIC_URL" | "PROMETHEUS_BEARER_TOKEN_FILE" | "PROMETHEUS_USERNAME" | "PROMETHEUS_PASSWORD_FILE"): string | undefined =>
    env[name]?.trim() || undefined;
  const list = given("PROMETHEUS_URL");
  const auth = parsePrometheusAuth(
    given("PROMETHEUS_BEARER_TOKEN_FILE"),
    given("PROMETHEUS_USERNAME"),
    given("PROMETHEUS_PASSWORD_FILE"),
  );
  const publicList = given("PROMETHEUS_PUBLIC_URL");
  if (list === undefined) {
    if (auth !== undefined) {
      throw new ConfigError("PROMETHEUS_BEARER_TOKEN_FILE, PROMETHEUS_USERNAME and PROMETHEUS_PASSWORD_FILE need PROMETHEUS_URL");
    }
    if (publicList !== undefined) {
      throw new ConfigError("PROMETHEUS_PUBLIC_URL is set but PROMETHEUS_URL is not: set PROMETHEUS_URL (the URLs the service asks), or unset PROMETHEUS_PUBLIC_URL");
    }
    return undefined;
  }
  const urls = list.split(",").map((item) => parsePrometheusUrl("PROMETHEUS_URL", item.trim()));
  const duplicate = urls.find((url, i) => urls.indexOf(url) !== i);
  if (duplicate !== undefined) throw new ConfigError(`PROMETHEUS_URL lists ${duplicate} twice`);
  if (publicList === undefined) return { urls, publicUrls: urls, auth };
  const publicUrls = publicList.split(",").map((item) => parsePrometheusUrl("PROMETHEUS_PUBLIC_URL", item.trim()));
  if (publicUrls.length !== urls.length) {
    throw new ConfigError(
      `PROMETHEUS_PUBLIC_URL lists ${publicUrls.length} URL${publicUrls.length === 1 ? "" : "s"} and PROMETHEUS_URL ${urls.length}: ` +
        "give one public URL per PROMETHEUS_URL item, in the same order (or unset PROMETHEUS_PUBLIC_URL to link to PROMETHEUS_URL itself)",
    );
  }
  return { urls, publicUrls, auth };
}

function parsePrometheusUrl(variable: "PROMETHEUS_URL" | "PROMETHEUS_PUBLIC_URL", item: string): string {
  const example =
    variable === "PROMETHEUS_URL"
      ? "e.g. PROMETHEUS_URL=http://prometheus:9090,http://prometheus-2:9090"
      : "e.g. PROMETHEUS_PUBLIC_URL=https://prometheus.example.com,https://prometheus-2.example.com";
  if (item === "") throw new ConfigError(`${variable} has an empty item; separate base URLs with single commas, ${example}`);
  let url: URL;
  try {
    url = new URL(item);
  } catch {
    throw new ConfigError(`${variable} item ${JSON.stringify(item)} is not a URL; give base URLs, ${example}`);
  }
  if (url.protocol !== "http:" && url.protocol !== "https:") {
    throw new ConfigError(`${variable} item ${JSON.stringify(item)} must start with http:// or https://`);
  }
  if (url.username !== "" || url.password !== "") {
    throw new ConfigError(
      variable === "PROMETHEUS_URL"
        ? `PROMETHEUS_URL item ${JSON.stringify(item)} carries credentials; put them in PROMETHEUS_USERNAME and ` +
            "PROMETHEUS_PASSWORD_FILE (or PROMETHEUS_BEARER_TOKEN_FILE), the URLs are shown in status answers"
        : `PROMETHEUS_PUBLIC_URL item ${JSON.stringify(item)} carries credentials; it is shown on the page as a link, so give it without user and password`,
    );
  }
  if (url.search !== "" || url.hash !== "") {
    throw new ConfigError(`${variable} item ${JSON.stringify(item)} must be a base URL without ? or #, ${example}`);
  }
  return url.href.replace(/\/+$/, "");
}

function parsePrometheusAuth(
  tokenFile: string | undefined,
  username: string | undefined,
  passwordFile: string | undefined,
): PrometheusAuth | undefined {
  const basic = username !== undefined || passwordFile !== undefined;
  if (tokenFile !== undefined && basic) {
    throw new ConfigError(
      "set PROMETHEUS_BEARER_TOKEN_FILE or PROMETHEUS_USERNAME with PROMETHEUS_PASSWORD_FILE, not both: Prometheus takes one Authorization header",
    );
  }
  if (tokenFile !== undefined) return { kind: "bearer", tokenFile };
  if (!basic) return undefined;
  if (username === undefined || passwordFile === undefined) {
    throw new ConfigError("set both PROMETHEUS_USERNAME and PROMETHEUS_PASSWORD_FILE for basic auth to Prometheus, or neither");
  }
  return { kind: "basic", username, passwordFile };
}

/**
 * The files and the directory the settings name, checked before anything starts, so that each
 * problem a person must fix is a ConfigError (exit 2) naming the variable: AUTH_TOKENS_FILE
 * readable and valid, CERTFILE/KEYFILE a certificate and its key, etcd's certificates and
 * password file readable, FILE_SD_DIRECTORY a directory this user can create and write.
 * What may pass by itself (a full disk, an I/O error) is thrown as it is: exit 1, and systemd
 * tries again. The PROMETHEUS_* credential files are read at each status request, so they
 * may appear or change later and are not checked here.
 */
export async function checkConfiguredFiles(config: Config): Promise<void> {
  if (config.authTokensFile !== undefined) {
    const text = await readConfigured("AUTH_TOKENS_FILE", config.authTokensFile);
    try {
      parsePolicy(text.toString("utf8"));
    } catch (error) {
      if (!(error instanceof PolicyError)) throw error;
      throw new ConfigError(`AUTH_TOKENS_FILE ${resolve(config.authTokensFile)} is not valid: ${error.message}`);
    }
  }
  if (config.tls !== undefined) {
    const cert = await readConfigured("CERTFILE", config.tls.certFile);
    const key = await readConfigured("KEYFILE", config.tls.keyFile);
    try {
      createSecureContext({ cert, key });
    } catch (error) {
      throw new ConfigError(
        `CERTFILE=${config.tls.certFile} and KEYFILE=${config.tls.keyFile} are not a PEM certificate and its private key: ${(error as Error).message}`,
      );
    }
  }
  if (config.etcd !== undefined) await checkEtcdFiles(config.etcd);
  // FILE_SD_DIRECTORY is checked by the service itself as it opens it (src/directory/directory.ts); main.ts
  // tells its errors apart with isFixedByAPerson. The import commands, which write without it, call checkWritableDirectory.
}

/** etcd's CA, client certificate and key, and password file are readable (the import commands check them too). */
export async function checkEtcdFiles({ tls, auth }: EtcdConfig): Promise<void> {
  if (tls?.caFile !== undefined) await readConfigured("ETCD_CA_FILE", tls.caFile);
  if (tls?.certFile !== undefined) await readConfigured("ETCD_CERT_FILE", tls.certFile);
  if (tls?.keyFile !== undefined) await readConfigured("ETCD_KEY_FILE", tls.keyFile);
  if (auth !== undefined && "passwordFile" in auth) await readConfigured("ETCD_PASSWORD_FILE", auth.passwordFile);
}

/** What a person fixes (a path, a permission, a read-only mount), as opposed to what passes by itself (ENOSPC, EIO). */
const FIXED_BY_A_PERSON = new Set(["ENOENT", "EACCES", "EPERM", "EROFS", "ENOTDIR", "EISDIR", "EEXIST", "ELOOP", "ENAMETOOLONG"]);

export function isFixedByAPerson(error: unknown): boolean {
  const code = (error as NodeJS.ErrnoException).code;
  return code !== undefined && FIXED_BY_A_PERSON.has(code);
}

async function readConfigured(variable: string, path: string): Promise<Buffer> {
  try {
    return await readFile(path);
  } catch (error) {
    if (!isFixedByAPerson(error)) throw error;
    throw new ConfigError(`${variable}=${path} cannot be read: ${(error as Error).message}; fix the path or let the service's user read it`);
  }
}

/** Created if missing, as the service does; a real write, because access() says yes to root on some read-only mounts. */
export async function checkWritableDirectory(variable: string, directory: string): Promise<void> {
  const probe = join(directory, `.config-check-${process.pid}`);
  try {
    await mkdir(directory, { recursive: true });
    await writeFile(probe, "");
    await unlink(probe);
  } catch (error) {
    if (!isFixedByAPerson(error)) throw error;
    throw new ConfigError(
      `${variable} ${resolve(directory)} is not a writable directory: ${(error as Error).message}; ` +
        "create it, or give the service's user write access (and read access to Prometheus' user)",
    );
  }
}
