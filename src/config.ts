/** Every environment variable the service reads, parsed and checked in one place (see .env-sample). */
export interface Config {
  readonly fileSdDirectory: string;
  readonly host: string;
  readonly port: number;
  readonly logLevel: LogLevel;
  readonly maxBodyBytes: number;
  readonly tls: { readonly certFile: string; readonly keyFile: string } | undefined;
  /** Write tokens (and optionally read tokens); undefined: nobody needs a token. */
  readonly authTokensFile: string | undefined;
  /** The Prometheus servers the status endpoints ask (PROMETHEUS_URL); undefined: status is off. */
  readonly prometheus: PrometheusConfig | undefined;
}

/** How the service asks Prometheus `/api/v1/targets` (SPEC §12). */
export interface PrometheusConfig {
  /** Base URLs without a trailing slash, e.g. `http://prometheus:9090` or `https://host/prometheus`. */
  readonly urls: readonly string[];
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
} as const;

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
    tls: parseTls(env.CERTFILE?.trim() || undefined, env.KEYFILE?.trim() || undefined),
    authTokensFile: env.AUTH_TOKENS_FILE?.trim() || undefined,
    prometheus: parsePrometheus(env),
  };
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
  const given = (name: string): string | undefined => env[name]?.trim() || undefined;
  const list = given("PROMETHEUS_URL");
  const auth = parsePrometheusAuth(
    given("PROMETHEUS_BEARER_TOKEN_FILE"),
    given("PROMETHEUS_USERNAME"),
    given("PROMETHEUS_PASSWORD_FILE"),
  );
  if (list === undefined) {
    if (auth !== undefined) {
      throw new ConfigError("PROMETHEUS_BEARER_TOKEN_FILE, PROMETHEUS_USERNAME and PROMETHEUS_PASSWORD_FILE need PROMETHEUS_URL");
    }
    return undefined;
  }
  const urls = list.split(",").map((item) => parsePrometheusUrl(item.trim()));
  const duplicate = urls.find((url, i) => urls.indexOf(url) !== i);
  if (duplicate !== undefined) throw new ConfigError(`PROMETHEUS_URL lists ${duplicate} twice`);
  return { urls, auth };
}

function parsePrometheusUrl(item: string): string {
  const example = "e.g. PROMETHEUS_URL=http://prometheus:9090,http://prometheus-2:9090";
  if (item === "") throw new ConfigError(`PROMETHEUS_URL has an empty item; separate base URLs with single commas, ${example}`);
  let url: URL;
  try {
    url = new URL(item);
  } catch {
    throw new ConfigError(`PROMETHEUS_URL item ${JSON.stringify(item)} is not a URL; give base URLs, ${example}`);
  }
  if (url.protocol !== "http:" && url.protocol !== "https:") {
    throw new ConfigError(`PROMETHEUS_URL item ${JSON.stringify(item)} must start with http:// or https://`);
  }
  if (url.username !== "" || url.password !== "") {
    throw new ConfigError(
      `PROMETHEUS_URL item ${JSON.stringify(item)} carries credentials; put them in PROMETHEUS_USERNAME and ` +
        "PROMETHEUS_PASSWORD_FILE (or PROMETHEUS_BEARER_TOKEN_FILE), the URLs are shown in status answers",
    );
  }
  if (url.search !== "" || url.hash !== "") {
    throw new ConfigError(`PROMETHEUS_URL item ${JSON.stringify(item)} must be a base URL without ? or #, ${example}`);
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
