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
}

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
