import { execFile } from "node:child_process";
import { readdir, readFile, writeFile } from "node:fs/promises";
import { dirname, join, resolve } from "node:path";
import { fileURLToPath } from "node:url";
import { load } from "js-yaml";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { loadConfig } from "../../src/config.js";
import { makeTempDir, removeDir } from "../helpers.js";
import { findDockerCompose } from "../support/tools.js";

/**
 * Every setting of the service reaches it under Compose, as `docker-compose config` resolves
 * the files: what .env sets is what the container gets, and the container's own values
 * (FILE_SD_DIRECTORY, BIND) win over .env's, which are for `make run`. The resolved environment
 * is then given to the service's own loadConfig, to see what it means to the service.
 * test/containers/image.test.ts runs the same files for real.
 */

const ROOT = resolve(dirname(fileURLToPath(import.meta.url)), "..", "..");
const COMMAND_TIMEOUT_MS = 60_000;

/** The values the image and docker-compose.yml give the container whatever .env says. */
const CONTAINER_FIXED = { FILE_SD_DIRECTORY: "/file_sd", BIND: "0.0.0.0:12345" };

interface Mount {
  readonly source: string;
  readonly target: string;
  readonly readOnly: boolean;
}

interface ComposeService {
  /** null: listed, but set neither in .env nor in the shell, so not passed to the container. */
  readonly environment?: Record<string, string | null>;
  readonly volumes?: (string | { source: string; target: string; read_only?: boolean })[];
}

interface Resolved {
  readonly code: number;
  readonly stderr: string;
  readonly services: Record<string, ComposeService>;
}

/** `docker-compose config` with only PATH and HOME from the caller, so that no shell variable can change the result. */
function composeConfig(envFile: string, files: readonly string[]): Promise<Resolved> {
  const args = [...files.flatMap((file) => ["-f", join(ROOT, file)]), "--env-file", envFile, "config"];
  return new Promise((resolvePromise) => {
    execFile(
      findDockerCompose(),
      args,
      { cwd: ROOT, timeout: COMMAND_TIMEOUT_MS, env: { PATH: process.env.PATH ?? "", HOME: process.env.HOME ?? ROOT } },
      (error, stdout, stderr) => {
        const code = error === null ? 0 : typeof error.code === "number" ? error.code : -1;
        const services = code === 0 ? ((load(stdout) as { services: Record<string, ComposeService> }).services ?? {}) : {};
        resolvePromise({ code, stderr, services });
      },
    );
  });
}

async function resolvedOk(envFile: string, files: readonly string[]): Promise<Record<string, ComposeService>> {
  const result = await composeConfig(envFile, files);
  expect(result.code, `docker-compose config failed:\n${result.stderr}`).toBe(0);
  return result.services;
}

/** What the container's process gets: a null entry is not passed at all. */
function passed(service: ComposeService | undefined): Record<string, string> {
  const environment: Record<string, string> = {};
  for (const [name, value] of Object.entries(service?.environment ?? {})) if (value !== null) environment[name] = value;
  return environment;
}

function mountsOf(service: ComposeService | undefined): Mount[] {
  return (service?.volumes ?? []).map((volume) => {
    if (typeof volume !== "string") return { source: volume.source, target: volume.target, readOnly: volume.read_only === true };
    const [source = "", target = "", mode = "rw"] = volume.split(":");
    return { source, target, readOnly: mode.split(",").includes("ro") };
  });
}

/**
 * Every environment variable src/config.ts reads, recorded as it reads them: once in file mode
 * and once in etcd mode, whose settings are read only then.
 */
function variablesTheServiceReads(): string[] {
  const read = new Set<string>();
  const recording = (values: Record<string, string>): Record<string, string> =>
    new Proxy(values, {
      get(target, name, receiver) {
        if (typeof name === "string") read.add(name);
        return Reflect.get(target, name, receiver) as unknown;
      },
    });
  loadConfig(recording({}));
  loadConfig(recording({ ETCD_ENDPOINTS: "http://127.0.0.1:2379" }));
  return [...read].sort();
}

/** The value `set -a; . ./file; set +a` gives each variable, undefined when the file leaves it unset. */
async function sourcedByBash(envFile: string, names: readonly string[]): Promise<Map<string, string | undefined>> {
  const script = `set -a; . "$1"; set +a; for name in ${names.join(" ")}; do if [ "\${!name+set}" = set ]; then printf '%s=%s\\0' "$name" "\${!name}"; fi; done`;
  const output = await new Promise<string>((resolvePromise, reject) => {
    execFile("bash", ["-c", script, "bash", envFile], { env: { PATH: process.env.PATH ?? "" }, timeout: COMMAND_TIMEOUT_MS }, (error, stdout, stderr) =>
      error === null ? resolvePromise(stdout) : reject(new Error(`sourcing ${envFile} failed: ${stderr}`)),
    );
  });
  const values = new Map<string, string | undefined>(names.map((name) => [name, undefined]));
  for (const entry of output.split("\0").filter((item) => item !== "")) {
    const equals = entry.indexOf("=");
    values.set(entry.slice(0, equals), entry.slice(equals + 1));
  }
  return values;
}

const marker = (name: string): string => `from-dotenv-${name}`;

describe("Compose hands the service every setting of .env", () => {
  const serviceVariables = variablesTheServiceReads();
  const fromDotenv = serviceVariables.filter((name) => !Object.hasOwn(CONTAINER_FIXED, name));
  let scratch = "";
  let markedEnv = "";

  beforeAll(async () => {
    scratch = await makeTempDir("compose-settings-");
    // Every service variable set to a value of its own, beside Compose-only variables that must stay out of the container.
    markedEnv = join(scratch, "marked.env");
    await writeFile(
      markedEnv,
      [...serviceVariables.map((name) => `${name}=${marker(name)}`), "CONTAINER_UID=4242", "FILE_SD_IMAGE=example/file-sd:1", "FILE_SD_PORT=8081", ""].join("\n"),
    );
  });
  afterAll(async () => {
    if (scratch !== "") await removeDir(scratch);
  });

  it("the list of what the service reads is the real one: src reads the environment only through loadConfig", async () => {
    expect(serviceVariables).toEqual(expect.arrayContaining(["AUTH_TOKENS_FILE", "CERTFILE", "ETCD_ENDPOINTS", "ETCD_PASSWORD", "GROUP_SELECTOR", "LOGLEVEL", "PROMETHEUS_URL"]));
    const sources = (await readdir(join(ROOT, "src"), { recursive: true })).filter((file) => file.endsWith(".ts"));
    const elsewhere: string[] = [];
    for (const file of sources) {
      const text = await readFile(join(ROOT, "src", file), "utf8");
      for (const match of text.matchAll(/process\.env\b(?!\))/g)) elsewhere.push(`src/${file}: ${text.slice(match.index, match.index + 40)}`);
    }
    expect(elsewhere, "a variable read outside loadConfig would not be in docker-compose.yml's list").toEqual([]);
  });

  it("docker-compose.yml: each variable set in .env reaches the service with its value, FILE_SD_DIRECTORY and BIND are the container's, Compose-only ones stay out", async () => {
    const services = await resolvedOk(markedEnv, ["docker-compose.yml"]);
    const environment = passed(services["file-sd"]);
    expect(Object.keys(environment).sort()).toEqual(serviceVariables);
    for (const name of fromDotenv) expect(environment[name], name).toBe(marker(name));
    expect(environment).toMatchObject(CONTAINER_FIXED);
  });

  it("docker-compose.yml without a .env: nothing but the container's values and the neighbouring Prometheus, which the service accepts", async () => {
    const empty = join(scratch, "empty.env");
    await writeFile(empty, "");
    const environment = passed((await resolvedOk(empty, ["docker-compose.yml"]))["file-sd"]);
    expect(environment).toEqual({ ...CONTAINER_FIXED, PROMETHEUS_URL: "http://prometheus:9090" });
    const config = loadConfig(environment);
    expect(config.fileSdDirectory).toBe("/file_sd");
    expect([config.host, config.port]).toEqual(["0.0.0.0", 12345]);
    expect(config.prometheus?.urls).toEqual(["http://prometheus:9090"]);
    expect(config.etcd).toBeUndefined();
  });

  it("docker-compose.yml: a realistic .env means to the service what it says (tokens, TLS, another Prometheus, an outside etcd)", async () => {
    const envFile = join(scratch, "realistic.env");
    await writeFile(
      envFile,
      [
        "FILE_SD_DIRECTORY=./file_sd",
        "BIND=127.0.0.1:12345",
        "LOGLEVEL=debug",
        "MAX_BODY_BYTES=2048",
        "AUTH_TOKENS_FILE=/etc/file-sd-writer/tokens.yml",
        "PROMETHEUS_URL=http://prometheus-1:9090,http://prometheus-2:9090",
        "ETCD_ENDPOINTS=https://etcd-1:2379,https://etcd-2:2379",
        "ETCD_PREFIX=/sd/",
        "ETCD_TIMEOUT=2s",
        "ETCD_CA_FILE=/etc/file-sd-writer/etcd-ca.pem",
        "ETCD_USERNAME=file-sd",
        "ETCD_PASSWORD_FILE=/etc/file-sd-writer/etcd-password",
        'GROUP_SELECTOR={region="eu"}',
        "",
      ].join("\n"),
    );
    const config = loadConfig(passed((await resolvedOk(envFile, ["docker-compose.yml"]))["file-sd"]));
    expect(config.fileSdDirectory).toBe("/file_sd");
    expect([config.host, config.port]).toEqual(["0.0.0.0", 12345]);
    expect(config.logLevel).toBe("debug");
    expect(config.maxBodyBytes).toBe(2048);
    expect(config.authTokensFile).toBe("/etc/file-sd-writer/tokens.yml");
    expect(config.prometheus?.urls).toEqual(["http://prometheus-1:9090", "http://prometheus-2:9090"]);
    expect(config.etcd?.endpoints).toEqual(["https://etcd-1:2379", "https://etcd-2:2379"]);
    expect(config.etcd?.prefix).toBe("/sd/");
    expect(config.etcd?.auth).toEqual({ username: "file-sd", passwordFile: "/etc/file-sd-writer/etcd-password" });
    expect(config.etcd?.groupSelector?.text).toBe('{region="eu"}');
  });

  it("docker-compose.yml and docker-compose.etcd.yml with .env-sample as shipped: the service accepts what they pass", async () => {
    const sample = join(ROOT, ".env-sample");
    const fileMode = loadConfig(passed((await resolvedOk(sample, ["docker-compose.yml"]))["file-sd"]));
    expect(fileMode.etcd).toBeUndefined();
    expect(fileMode.prometheus?.urls).toEqual(["http://prometheus:9090"]);
    for (const instance of ["file-sd-a", "file-sd-b"]) {
      const etcdMode = loadConfig(passed((await resolvedOk(sample, ["docker-compose.etcd.yml"]))[instance]));
      expect(etcdMode.etcd?.prefix, instance).toBe("/file-sd-writer/");
      expect(etcdMode.etcd?.timeoutMs, instance).toBe(5000);
    }
  });

  it(".env-sample means the same to Compose as to `set -a; . ./.env; set +a` (make run)", async () => {
    const services = await resolvedOk(join(ROOT, ".env-sample"), ["docker-compose.yml"]);
    const environment = services["file-sd"]?.environment ?? {};
    const sourced = await sourcedByBash(join(ROOT, ".env-sample"), fromDotenv);
    for (const name of fromDotenv) {
      const composeValue = environment[name] ?? undefined;
      // PROMETHEUS_URL: an empty one in .env means "the Prometheus beside it" under Compose.
      if (name === "PROMETHEUS_URL" && (sourced.get(name) ?? "") === "") continue;
      expect(composeValue, name).toBe(sourced.get(name));
    }
  });

  it("docker-compose.etcd.yml: both instances get .env's settings, the bundled etcd's endpoints, and neither etcd credentials nor TLS it does not use", async () => {
    const services = await resolvedOk(markedEnv, ["docker-compose.etcd.yml"]);
    const notForTheBundledEtcd = ["ETCD_CA_FILE", "ETCD_CERT_FILE", "ETCD_KEY_FILE", "ETCD_USERNAME", "ETCD_PASSWORD", "ETCD_PASSWORD_FILE"];
    for (const instance of ["file-sd-a", "file-sd-b"]) {
      const environment = passed(services[instance]);
      expect(Object.keys(environment).sort(), instance).toEqual(serviceVariables.filter((name) => !notForTheBundledEtcd.includes(name)));
      for (const name of fromDotenv.filter((name) => name !== "ETCD_ENDPOINTS" && !notForTheBundledEtcd.includes(name))) {
        expect(environment[name], `${instance} ${name}`).toBe(marker(name));
      }
      expect(environment).toMatchObject({ ...CONTAINER_FIXED, ETCD_ENDPOINTS: "http://etcd-1:2379,http://etcd-2:2379,http://etcd-3:2379" });
    }
    const empty = join(scratch, "empty.env");
    await writeFile(empty, "");
    const config = loadConfig(passed((await resolvedOk(empty, ["docker-compose.etcd.yml"]))["file-sd-a"]));
    expect(config.etcd?.endpoints).toHaveLength(3);
    expect(config.prometheus?.urls).toEqual(["http://prometheus-a:9090", "http://prometheus-b:9090"]);
  });
});

describe("docker-compose.tls-tokens.yml: tokens and HTTPS by mounting the files", () => {
  let scratch = "";
  beforeAll(async () => {
    scratch = await makeTempDir("compose-override-");
  });
  afterAll(async () => {
    if (scratch !== "") await removeDir(scratch);
  });

  it("mounts TLS_TOKENS_DIR_HOST read-only and points AUTH_TOKENS_FILE, CERTFILE and KEYFILE into it; the rest is unchanged", async () => {
    const envFile = join(scratch, "override.env");
    await writeFile(envFile, "TLS_TOKENS_DIR_HOST=./my-secrets\nAUTH_TOKENS_FILE=./tokens.yml\nLOGLEVEL=warn\n");
    const services = await resolvedOk(envFile, ["docker-compose.yml", "docker-compose.tls-tokens.yml"]);
    const service = services["file-sd"];
    const mounts = mountsOf(service);
    const secrets = mounts.find((mount) => mount.source === join(ROOT, "my-secrets"));
    expect(secrets).toEqual({ source: join(ROOT, "my-secrets"), target: "/etc/file-sd-writer", readOnly: true });
    expect(mounts.find((mount) => mount.target === "/file_sd")).toEqual({ source: "file_sd", target: "/file_sd", readOnly: false });

    const environment = passed(service);
    const config = loadConfig(environment);
    // The override's paths win over .env's, which are make run's.
    expect(config.authTokensFile).toBe("/etc/file-sd-writer/tokens.yml");
    expect(config.tls).toEqual({ certFile: "/etc/file-sd-writer/cert.pem", keyFile: "/etc/file-sd-writer/key.pem" });
    for (const file of [config.authTokensFile, config.tls?.certFile, config.tls?.keyFile]) {
      expect(dirname(file ?? ""), "each file is in the mounted directory").toBe(secrets?.target);
    }
    expect(config.logLevel).toBe("warn");
    expect(environment).toMatchObject({ ...CONTAINER_FIXED, PROMETHEUS_URL: "http://prometheus:9090" });
    // Prometheus is not changed by the override.
    const base = await resolvedOk(envFile, ["docker-compose.yml"]);
    expect(services.prometheus).toEqual(base.prometheus);
  });

  it("without TLS_TOKENS_DIR_HOST, Compose refuses and names the variable", async () => {
    const envFile = join(scratch, "missing.env");
    await writeFile(envFile, "LOGLEVEL=info\n");
    const result = await composeConfig(envFile, ["docker-compose.yml", "docker-compose.tls-tokens.yml"]);
    expect(result.code).not.toBe(0);
    expect(result.stderr).toMatch(/TLS_TOKENS_DIR_HOST in \.env to the directory holding tokens\.yml, cert\.pem and key\.pem/);
  });

  it(".env-sample documents every variable the override reads", async () => {
    const override = (await readFile(join(ROOT, "docker-compose.tls-tokens.yml"), "utf8")).replace(/^\s*#.*$/gm, "");
    const sample = await readFile(join(ROOT, ".env-sample"), "utf8");
    const used = [...override.matchAll(/\$\{([A-Za-z_][A-Za-z0-9_]*)/g)].map((match) => match[1]);
    const documented = new Set([...sample.matchAll(/^([A-Za-z_][A-Za-z0-9_]*)=/gm)].map((match) => match[1]));
    expect(used.length).toBeGreaterThan(0);
    expect(used.filter((name) => !documented.has(name))).toEqual([]);
  });
});
