import { execFile } from "node:child_process";
import { readFile, writeFile } from "node:fs/promises";
import { dirname, join, posix, resolve } from "node:path";
import { fileURLToPath } from "node:url";
import { load } from "js-yaml";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { makeTempDir, removeDir } from "./helpers.js";
import { findDockerCompose, findPromtool } from "./support/tools.js";

/**
 * No Docker engine runs where the tests run, so the Docker files are checked as files:
 * docker-compose and promtool parse them, and the values that must agree across
 * Dockerfile, docker-compose.yml and prometheus.yml are compared.
 */

const ROOT = resolve(dirname(fileURLToPath(import.meta.url)), "..");
const COMMAND_TIMEOUT_MS = 60_000;

interface Run {
  readonly code: number;
  readonly stdout: string;
  readonly stderr: string;
}

/** Runs a tool in the repository with only PATH and HOME set, so the caller's shell variables cannot change the result. */
function run(file: string, args: readonly string[]): Promise<Run> {
  return new Promise((resolvePromise) => {
    execFile(
      file,
      args,
      { cwd: ROOT, timeout: COMMAND_TIMEOUT_MS, env: { PATH: process.env.PATH ?? "", HOME: process.env.HOME ?? ROOT } },
      (error, stdout, stderr) => {
        const code = error === null ? 0 : typeof error.code === "number" ? error.code : -1;
        resolvePromise({ code, stdout, stderr: error !== null && code === -1 ? `${error.message}\n${stderr}` : stderr });
      },
    );
  });
}

interface Mount {
  readonly source: string;
  readonly target: string;
  readonly readOnly: boolean;
}

interface Published {
  readonly hostIp: string;
  readonly published: number;
  readonly target: number;
}

interface ComposeService {
  readonly image?: string;
  readonly restart?: string;
  readonly build?: { readonly args?: Record<string, string> };
  readonly command?: string[];
  readonly environment?: Record<string, string>;
  readonly volumes?: (string | { source: string; target: string; read_only?: boolean })[];
  readonly ports?: (string | { host_ip?: string; published: string | number; target: number })[];
  readonly depends_on?: string[] | Record<string, unknown>;
}

interface ComposeConfig {
  readonly services: Record<string, ComposeService>;
  readonly volumes?: Record<string, unknown>;
}

/** docker-compose v1 prints short syntax (`src:target:ro`), v2 long syntax; both become a Mount. */
function mountsOf(service: ComposeService | undefined): Mount[] {
  return (service?.volumes ?? []).map((volume) => {
    if (typeof volume !== "string") return { source: volume.source, target: volume.target, readOnly: volume.read_only === true };
    const [source = "", target = "", mode = "rw"] = volume.split(":");
    return { source, target, readOnly: mode.split(",").includes("ro") };
  });
}

function portsOf(service: ComposeService | undefined): Published[] {
  return (service?.ports ?? []).map((port) => {
    if (typeof port !== "string") return { hostIp: port.host_ip ?? "", published: Number(port.published), target: port.target };
    const match = /^(?:(.*):)?([0-9]+):([0-9]+)(?:\/tcp)?$/.exec(port);
    if (match === null) throw new Error(`unexpected port mapping ${port}`);
    return { hostIp: match[1] ?? "", published: Number(match[2]), target: Number(match[3]) };
  });
}

async function composeConfig(envFile: string, composeFile = "docker-compose.yml"): Promise<ComposeConfig> {
  const result = await run(findDockerCompose(), ["-f", join(ROOT, composeFile), "--env-file", envFile, "config"]);
  expect(result.code, `docker-compose config failed:\n${result.stderr}`).toBe(0);
  return load(result.stdout) as ComposeConfig;
}

/** Dockerfile instructions of the last stage, continuation lines joined: `["ENV", "A=1 B=2"]`. */
async function finalStage(): Promise<[string, string][]> {
  const text = (await readFile(join(ROOT, "Dockerfile"), "utf8")).replace(/\\\n/g, " ");
  const instructions = text
    .split("\n")
    .map((line) => line.trim())
    .filter((line) => line !== "" && !line.startsWith("#"))
    .map((line): [string, string] => {
      const space = line.search(/\s/);
      return [line.slice(0, space).toUpperCase(), line.slice(space + 1).trim()];
    });
  const lastFrom = instructions.map(([instruction]) => instruction).lastIndexOf("FROM");
  return instructions.slice(lastFrom);
}

function imageEnv(stage: readonly [string, string][]): Record<string, string> {
  const env: Record<string, string> = {};
  for (const [, rest] of stage.filter(([instruction]) => instruction === "ENV")) {
    for (const [, name = "", value = ""] of rest.matchAll(/([A-Za-z_][A-Za-z0-9_]*)=(\S*)/g)) env[name] = value;
  }
  return env;
}

function fileSdGlobs(prometheusYml: unknown): string[] {
  const config = prometheusYml as { scrape_configs?: { file_sd_configs?: { files?: string[] }[] }[] };
  return (config.scrape_configs ?? []).flatMap((job) => (job.file_sd_configs ?? []).flatMap((sd) => sd.files ?? []));
}

describe("the Docker and Prometheus files (checked without a Docker engine)", () => {
  let scratch = "";
  beforeAll(async () => {
    scratch = await makeTempDir("static-config-");
  });
  afterAll(async () => {
    if (scratch !== "") await removeDir(scratch);
  });

  it("promtool accepts prometheus.yml", async () => {
    const result = await run(findPromtool(), ["check", "config", join(ROOT, "prometheus.yml")]);
    expect(result.code, `promtool check config failed:\n${result.stdout}${result.stderr}`).toBe(0);
    expect(result.stdout + result.stderr).toMatch(/SUCCESS/);
  });

  it("docker-compose config, with .env-sample, runs the service and Prometheus on one shared file_sd volume", async () => {
    const compose = await composeConfig(join(ROOT, ".env-sample"));
    const service = compose.services["file-sd"];
    const prometheus = compose.services.prometheus;
    const stage = await finalStage();
    const env = imageEnv(stage);
    const promConfig = load(await readFile(join(ROOT, "prometheus.yml"), "utf8"));

    // The service writes where the image says FILE_SD_DIRECTORY is, on the named volume.
    expect(env.FILE_SD_DIRECTORY).toBeDefined();
    const written = mountsOf(service).find((mount) => mount.target === env.FILE_SD_DIRECTORY);
    expect(written).toEqual({ source: "file_sd", target: env.FILE_SD_DIRECTORY, readOnly: false });
    expect(Object.keys(compose.volumes ?? {})).toContain("file_sd");

    // Prometheus reads the same volume, where its file_sd_configs globs look: the groups, and the probes in their folder.
    const globs = fileSdGlobs(promConfig);
    expect(globs).toEqual(["/file_sd/*.json", "/file_sd/probes/*.json"]);
    const read = mountsOf(prometheus).find((mount) => mount.source === "file_sd");
    expect(read).toEqual({ source: "file_sd", target: posix.dirname(globs[0] ?? ""), readOnly: true });
    expect(posix.basename(globs[0] ?? "")).toBe("*.json");

    // Prometheus runs the repository's prometheus.yml.
    const configArg = (prometheus?.command ?? []).find((arg) => arg.startsWith("--config.file="));
    expect(mountsOf(prometheus)).toContainEqual({
      source: join(ROOT, "prometheus.yml"),
      target: configArg?.slice("--config.file=".length),
      readOnly: true,
    });

    // The published port reaches the port the image listens on.
    const exposed = stage.filter(([instruction]) => instruction === "EXPOSE").map(([, port]) => Number(port));
    const bindPort = Number(/:([0-9]+)$/.exec(env.BIND ?? "")?.[1]);
    expect(exposed).toEqual([bindPort]);
    expect(portsOf(service)).toEqual([{ hostIp: "127.0.0.1", published: 12345, target: bindPort }]);
    expect(portsOf(prometheus)).toEqual([{ hostIp: "127.0.0.1", published: 9090, target: 9090 }]);

    expect(service?.restart).toBe("unless-stopped");
    expect(prometheus?.restart).toBe("unless-stopped");
    expect(service?.build?.args).toEqual({ CONTAINER_UID: "10001", CONTAINER_GID: "10001" });
  });

  it("docker-compose config with FILE_SD_DIR_HOST and other ports shares that host directory instead", async () => {
    const envFile = join(scratch, "custom.env");
    await writeFile(envFile, "FILE_SD_DIR_HOST=./file_sd\nFILE_SD_PORT=8080\nPROMETHEUS_PORT=19090\nPUBLISH_ADDRESS=0.0.0.0\n");
    const compose = await composeConfig(envFile);
    const hostDirectory = join(ROOT, "file_sd");

    expect(mountsOf(compose.services["file-sd"])).toEqual([{ source: hostDirectory, target: "/file_sd", readOnly: false }]);
    expect(mountsOf(compose.services.prometheus).filter((mount) => mount.source === hostDirectory)).toEqual([
      { source: hostDirectory, target: "/file_sd", readOnly: true },
    ]);
    expect(portsOf(compose.services["file-sd"])).toEqual([{ hostIp: "0.0.0.0", published: 8080, target: 12345 }]);
    expect(portsOf(compose.services.prometheus)).toEqual([{ hostIp: "0.0.0.0", published: 19090, target: 9090 }]);
  });

  it.each(["docker-compose.yml", "docker-compose.etcd.yml"])(".env-sample documents every variable %s reads", async (file) => {
    const compose = (await readFile(join(ROOT, file), "utf8")).replace(/^\s*#.*$/gm, "");
    const sample = await readFile(join(ROOT, ".env-sample"), "utf8");
    const used = new Set([...compose.matchAll(/\$\{([A-Za-z_][A-Za-z0-9_]*)/g)].map((match) => match[1]));
    const documented = new Set([...sample.matchAll(/^([A-Za-z_][A-Za-z0-9_]*)=/gm)].map((match) => match[1]));
    expect([...used].filter((name) => !documented.has(name))).toEqual([]);
  });

  it("promtool accepts prometheus.etcd.yml", async () => {
    const result = await run(findPromtool(), ["check", "config", join(ROOT, "prometheus.etcd.yml")]);
    expect(result.code, `promtool check config failed:\n${result.stdout}${result.stderr}`).toBe(0);
  });

  it("docker-compose.etcd.yml: a three-member etcd, and an HA pair where each Prometheus reads only its own instance's volume", async () => {
    const compose = await composeConfig(join(ROOT, ".env-sample"), "docker-compose.etcd.yml");
    const members = ["etcd-1", "etcd-2", "etcd-3"];
    for (const member of members) {
      const environment = compose.services[member]?.environment ?? {};
      expect(environment.ETCD_NAME).toBe(member);
      expect(environment.ETCD_INITIAL_CLUSTER?.split(",").map((entry) => entry.split("=")[0])).toEqual(members);
      expect(mountsOf(compose.services[member]).map((mount) => mount.target)).toEqual(["/etcd-data"]);
    }
    const volumeOf = (service: string, target: string): Mount | undefined => mountsOf(compose.services[service]).find((mount) => mount.target === target);
    for (const [instance, prometheus] of [["file-sd-a", "prometheus-a"], ["file-sd-b", "prometheus-b"]] as const) {
      const environment = compose.services[instance]?.environment ?? {};
      expect(environment.ETCD_ENDPOINTS?.split(",")).toEqual(members.map((member) => `http://${member}:2379`));
      const written = volumeOf(instance, "/file_sd");
      const read = volumeOf(prometheus, "/file_sd");
      expect(written?.readOnly).toBe(false);
      expect(read?.readOnly).toBe(true);
      expect(read?.source).toBe(written?.source);
      expect(volumeOf(prometheus, "/etc/prometheus/prometheus.yml")?.source).toBe(join(ROOT, "prometheus.etcd.yml"));
    }
    expect(volumeOf("file-sd-a", "/file_sd")?.source).not.toBe(volumeOf("file-sd-b", "/file_sd")?.source);
    const globs = fileSdGlobs(load(await readFile(join(ROOT, "prometheus.etcd.yml"), "utf8")));
    expect(globs).toEqual(["/file_sd/*.json", "/file_sd/probes/*.json"]);
  });

  it.each([
    ["docker-compose.yml", "prometheus.yml", ["prometheus"]],
    ["docker-compose.etcd.yml", "prometheus.etcd.yml", ["prometheus-a", "prometheus-b"]],
  ])("%s runs blackbox_exporter with blackbox.yml, where %s's probes job sends each probe", async (file, prometheusYml, servers) => {
    const compose = await composeConfig(join(ROOT, ".env-sample"), file);
    const exporter = compose.services["blackbox-exporter"];
    const configArg = (exporter?.command ?? []).find((arg) => arg.startsWith("--config.file="));
    expect(mountsOf(exporter)).toEqual([{ source: join(ROOT, "blackbox.yml"), target: configArg?.slice("--config.file=".length), readOnly: true }]);
    expect(exporter?.restart).toBe("unless-stopped");
    expect(portsOf(exporter)).toEqual([{ hostIp: "127.0.0.1", published: 9115, target: 9115 }]);
    const jobs = (load(await readFile(join(ROOT, prometheusYml), "utf8")) as { scrape_configs: { job_name: string; relabel_configs?: { target_label?: string; replacement?: string }[]; static_configs?: { targets: string[] }[] }[] }).scrape_configs;
    const probes = jobs.find((job) => job.job_name === "probes");
    const exporterAddress = probes?.relabel_configs?.find((rule) => rule.target_label === "__address__")?.replacement;
    expect(exporterAddress).toBe("blackbox-exporter:9115");
    // The exporter's own metrics, for the alert that says it is gone.
    expect(jobs.find((job) => job.job_name === "blackbox-exporter")?.static_configs).toEqual([{ targets: [exporterAddress] }]);
    for (const server of servers) {
      const dependsOn = compose.services[server]?.depends_on;
      expect(Array.isArray(dependsOn) ? dependsOn : Object.keys(dependsOn ?? {}), server).toContain("blackbox-exporter");
    }
  });

  it("the image ships the probes/ folder, owned by the service, so a new volume has it before Prometheus looks", async () => {
    const run = (await finalStage()).filter(([instruction]) => instruction === "RUN").map(([, rest]) => rest).join(" ");
    expect(run).toMatch(/mkdir -p \/file_sd\/probes/);
    expect(run).toMatch(/chown "\$\{CONTAINER_UID\}:\$\{CONTAINER_GID\}" \/file_sd \/file_sd\/probes/);
  });

  it("the image runs node itself as a non-root user, with a health check, so SIGTERM reaches the service", async () => {
    const stage = await finalStage();
    const last = (name: string): string | undefined => stage.filter(([instruction]) => instruction === name).at(-1)?.[1];

    // Exec form: no shell between Docker and node to swallow SIGTERM.
    expect(JSON.parse(last("CMD") ?? "null")).toEqual(["node", "dist/main.js"]);
    expect(last("STOPSIGNAL")).toBe("SIGTERM");
    expect(last("USER")).toBeDefined();
    expect(last("USER")).not.toMatch(/^(root|0)(:|$)/);
    expect(last("HEALTHCHECK")).toContain("/-/healthy");
    expect(last("VOLUME")).toContain(imageEnv(stage).FILE_SD_DIRECTORY);
    expect(imageEnv(stage).BIND).toBe("0.0.0.0:12345");
  });
});
