import { execFile, spawn, type ChildProcess } from "node:child_process";
import { createHash, randomBytes } from "node:crypto";
import { existsSync } from "node:fs";
import { mkdir, rename, rm, writeFile } from "node:fs/promises";
import { request as httpRequest } from "node:http";
import { homedir } from "node:os";
import { join } from "node:path";
import { killOnExit } from "./reaper.js";

/**
 * Debian's podman driving the repository's container files for real: base images made from
 * Debian packages (no registry can be reached here), the Dockerfile built on them, and the
 * containers run as Compose and Kubernetes would run them.
 *
 * What these machines need, measured: runtime runc (crun fails on the hybrid cgroups), nofile and
 * nproc ulimits of 1024 (podman's defaults are refused), both through a containers.conf given by
 * CONTAINERS_CONF, so that every podman process (build, run, kube play, the API service Compose
 * talks to) gets them without a flag.
 */

export interface Run {
  readonly code: number;
  readonly stdout: string;
  readonly stderr: string;
  readonly ms: number;
}

export interface RunOptions {
  readonly env: Readonly<Record<string, string>>;
  readonly timeoutMs: number;
  readonly cwd?: string;
}

/**
 * Commands still running when the test process exits get SIGTERM, not SIGKILL: mmdebstrap then
 * unmounts the /proc and /sys of its chroot and removes it, podman lets go of its locks.
 */
const runningCommands = new Set<ChildProcess>();
let exitHookInstalled = false;

/** Runs a program to its end, or stops it (SIGTERM) after `timeoutMs`; never throws. */
export function runCommand(file: string, args: readonly string[], options: RunOptions): Promise<Run> {
  if (!exitHookInstalled) {
    exitHookInstalled = true;
    process.once("exit", () => {
      for (const child of runningCommands) child.kill("SIGTERM");
    });
  }
  const started = Date.now();
  return new Promise((resolvePromise) => {
    const child = execFile(
      file,
      args,
      { env: options.env, cwd: options.cwd, timeout: options.timeoutMs, killSignal: "SIGTERM", maxBuffer: 64 * 1024 * 1024 },
      (error, stdout, stderr) => {
        runningCommands.delete(child);
        const ms = Date.now() - started;
        if (error === null) return resolvePromise({ code: 0, stdout, stderr, ms });
        const code = typeof error.code === "number" ? error.code : -1;
        const why = error.killed ? `stopped after ${options.timeoutMs} ms\n` : code === -1 ? `${error.message}\n` : "";
        resolvePromise({ code, stdout, stderr: why + stderr, ms });
      },
    );
    runningCommands.add(child);
  });
}

/** The last lines of what a command printed: enough to see why it failed, not a whole build log. */
function tail(text: string, lines = 40): string {
  return text.trimEnd().split("\n").slice(-lines).join("\n");
}

/** Like runCommand, but a non-zero exit throws with the command line and the end of its output. */
export async function mustRun(file: string, args: readonly string[], options: RunOptions): Promise<Run> {
  const result = await runCommand(file, args, options);
  if (result.code !== 0) {
    throw new Error(`\`${[file, ...args].join(" ")}\` exited ${result.code}:\n${tail(result.stdout)}\n${tail(result.stderr)}`);
  }
  return result;
}

export interface Podman {
  readonly bin: string;
  /** The environment every podman (and Compose) process of the test gets. */
  readonly env: Readonly<Record<string, string>>;
  run(args: readonly string[], timeoutMs?: number): Promise<Run>;
  mustRun(args: readonly string[], timeoutMs?: number): Promise<Run>;
}

const PODMAN_TIMEOUT_MS = 120_000;

/** Writes the containers.conf these machines need into `directory` and returns podman set up with it. */
export async function preparePodman(bin: string, directory: string): Promise<Podman> {
  const conf = join(directory, "containers.conf");
  await writeFile(
    conf,
    [
      "[containers]",
      'default_ulimits = ["nofile=1024:1024", "nproc=1024:1024"]',
      "[engine]",
      'runtime = "runc"',
      "",
    ].join("\n"),
  );
  const env = { PATH: process.env.PATH ?? "/usr/sbin:/usr/bin:/sbin:/bin", HOME: process.env.HOME ?? homedir(), CONTAINERS_CONF: conf };
  return {
    bin,
    env,
    run: (args, timeoutMs = PODMAN_TIMEOUT_MS) => runCommand(bin, args, { env, timeoutMs }),
    mustRun: (args, timeoutMs = PODMAN_TIMEOUT_MS) => mustRun(bin, args, { env, timeoutMs }),
  };
}

/**
 * What a test started, undone in reverse order in afterAll whether the test passed or not.
 * Each step is registered before the thing it removes is created, so that a failure half-way
 * through creating it still gets it removed; removing what does not exist is not an error.
 */
export class Cleanup {
  private readonly steps: { what: string; undo: () => Promise<unknown> }[] = [];

  add(what: string, undo: () => Promise<unknown>): void {
    this.steps.push({ what, undo });
  }

  async run(): Promise<void> {
    const failures: string[] = [];
    for (const step of this.steps.splice(0).reverse()) {
      try {
        await step.undo();
      } catch (error) {
        failures.push(`${step.what}: ${(error as Error).message}`);
      }
    }
    if (failures.length > 0) throw new Error(`cleanup left things behind:\n${failures.join("\n")}`);
  }
}

/** Removing something podman no longer has is fine; any other failure is not. */
export async function podmanRemove(podman: Podman, args: readonly string[]): Promise<void> {
  const result = await podman.run(args, 60_000);
  if (result.code !== 0 && !/no such|not found|does not exist|no container with name|no pod with name|unable to find network/i.test(result.stderr)) {
    throw new Error(`podman ${args.join(" ")} exited ${result.code}: ${tail(result.stderr, 5)}`);
  }
}

/**
 * A base image made from Debian packages, as mmdebstrap makes a root file system and
 * `podman import` turns it into an image. An imported image has no configuration at all (no
 * PATH, user or entrypoint), so `changes` gives it one, as `--change` instructions.
 */
export interface BaseImageRecipe {
  /** Part of the image's name: localhost/file-sd-writer-test/<name>:<hash of the recipe>. */
  readonly name: string;
  readonly suite: string;
  readonly packages: readonly string[];
  /** mmdebstrap --customize-hook commands; "$1" is the root file system. */
  readonly hooks: readonly string[];
  readonly changes: readonly string[];
}

const DEBIAN_MIRROR = "http://deb.debian.org/debian";
/** Only the Essential packages and the recipe's own, without documentation: a third smaller, as fast to build. */
const MMDEBSTRAP_OPTIONS = [
  "--variant=essential",
  "--dpkgopt=path-exclude=/usr/share/doc/*",
  "--dpkgopt=path-exclude=/usr/share/man/*",
  "--dpkgopt=path-exclude=/usr/share/locale/*",
];
/** Bump to rebuild every cached base image after a change of how they are made that the recipe does not show. */
const RECIPE_FORMAT = 1;
const MMDEBSTRAP_TIMEOUT_MS = 10 * 60_000;

/**
 * Where base images are cached between runs, as `podman import` tarballs; the imported images
 * themselves stay in podman's storage under their hashed names. Clear both with:
 *   rm -rf ~/.cache/file-sd-writer/images
 *   podman images --format '{{.Repository}}:{{.Tag}}' | grep '^localhost/file-sd-writer-test/' | xargs -r podman rmi
 * (and `podman image prune` for the build layers of old service images).
 */
export function baseImageCacheDir(): string {
  return join(process.env.XDG_CACHE_HOME ?? join(homedir(), ".cache"), "file-sd-writer", "images");
}

export interface BaseImage {
  readonly image: string;
  /** How it was had: "cached" (in podman already), "imported" (from the cached tarball), "built" (mmdebstrap). */
  readonly how: "cached" | "imported" | "built";
  readonly ms: number;
}

export async function ensureBaseImage(podman: Podman, mmdebstrap: string, recipe: BaseImageRecipe): Promise<BaseImage> {
  const started = Date.now();
  const inputs = { RECIPE_FORMAT, DEBIAN_MIRROR, MMDEBSTRAP_OPTIONS, ...recipe };
  const key = createHash("sha256").update(JSON.stringify(inputs)).digest("hex").slice(0, 16);
  const image = `localhost/file-sd-writer-test/${recipe.name}:${key}`;
  if ((await podman.run(["image", "exists", image])).code === 0) return { image, how: "cached", ms: Date.now() - started };

  const cacheDir = baseImageCacheDir();
  const tarball = join(cacheDir, `${recipe.name}-${key}.tar`);
  let how: BaseImage["how"] = "imported";
  if (!existsSync(tarball)) {
    how = "built";
    await mkdir(cacheDir, { recursive: true });
    // Another run may be building the same tarball: each writes its own, the rename is atomic.
    // Named *.tar: mmdebstrap picks its output format by the name, and would make a directory of anything else.
    const partial = join(cacheDir, `.${recipe.name}-${key}.${process.pid}.${randomBytes(4).toString("hex")}.tar`);
    try {
      await mustRun(
        mmdebstrap,
        [
          "--format=tar",
          ...MMDEBSTRAP_OPTIONS,
          `--include=${recipe.packages.join(",")}`,
          ...recipe.hooks.map((hook) => `--customize-hook=${hook}`),
          recipe.suite,
          partial,
          DEBIAN_MIRROR,
        ],
        { env: podman.env, timeoutMs: MMDEBSTRAP_TIMEOUT_MS },
      );
      await rename(partial, tarball);
    } finally {
      await rm(partial, { force: true });
    }
  }
  await podman.mustRun(["import", ...recipe.changes.flatMap((change) => ["--change", change]), tarball, image], 5 * 60_000);
  return { image, how, ms: Date.now() - started };
}

export const IMPORTED_PATH = "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";

/** Stands in for node:24-slim: trixie's nodejs (20.19) and npm, and passwd for the Dockerfile's groupadd/useradd. */
export const NODE_BASE: BaseImageRecipe = {
  name: "node",
  suite: "trixie",
  packages: ["nodejs", "npm", "passwd"],
  hooks: [],
  changes: [`ENV ${IMPORTED_PATH}`, 'CMD ["node"]'],
};

/**
 * Stands in for prom/prometheus, laid out like it: the binary as the entrypoint, user nobody,
 * the TSDB at /prometheus (owned by nobody, so a new named volume there is too), config at
 * /etc/prometheus/prometheus.yml.
 */
export const PROMETHEUS_BASE: BaseImageRecipe = {
  name: "prometheus",
  suite: "trixie",
  packages: ["prometheus"],
  hooks: ['mkdir -p "$1/prometheus" && chown 65534:65534 "$1/prometheus"'],
  changes: [
    `ENV ${IMPORTED_PATH}`,
    "USER 65534:65534",
    "WORKDIR /prometheus",
    'VOLUME ["/prometheus"]',
    "EXPOSE 9090",
    'ENTRYPOINT ["/usr/bin/prometheus"]',
    'CMD ["--config.file=/etc/prometheus/prometheus.yml", "--storage.tsdb.path=/prometheus"]',
  ],
};

/**
 * Stands in for prom/blackbox-exporter, laid out like it: the binary as the entrypoint (Debian
 * names it after its package), user nobody, port 9115, the configuration at
 * /etc/blackbox_exporter/config.yml (Compose and the manifests mount blackbox.yml there).
 */
export const BLACKBOX_EXPORTER_BASE: BaseImageRecipe = {
  name: "blackbox-exporter",
  suite: "trixie",
  packages: ["prometheus-blackbox-exporter"],
  hooks: [],
  changes: [
    `ENV ${IMPORTED_PATH}`,
    "USER 65534:65534",
    "EXPOSE 9115",
    'ENTRYPOINT ["/usr/bin/prometheus-blackbox-exporter"]',
    'CMD ["--config.file=/etc/blackbox_exporter/config.yml"]',
  ],
};

export const HOST_CA_BUNDLE = "/etc/ssl/certs/ca-certificates.crt";

/**
 * `podman build` of the repository's Dockerfile on `nodeImage`, through its NODE_IMAGE argument.
 *  - `--format docker`: podman's default OCI format has no HEALTHCHECK and drops it (with a
 *    warning); Docker always builds this format.
 *  - The host's CA bundle is mounted over the image's for the RUN steps only (a build volume
 *    is never part of a layer): npm ci reaches the registry through this network's TLS proxy.
 *    The Dockerfile stays as a Docker user needs it; behind such a proxy they would do the same
 *    (`docker build` has no volumes; a BuildKit secret mount would be the equivalent).
 *  - Build layers are podman's cache: an unchanged package-lock.json does not run npm ci again.
 */
export async function buildServiceImage(podman: Podman, context: string, nodeImage: string, tag: string): Promise<Run> {
  const caVolume = existsSync(HOST_CA_BUNDLE) ? ["--volume", `${HOST_CA_BUNDLE}:${HOST_CA_BUNDLE}:ro`] : [];
  return podman.mustRun(
    ["build", "--runtime", "runc", "--format", "docker", "--layers", "--build-arg", `NODE_IMAGE=${nodeImage}`, ...caVolume, "--tag", tag, context],
    10 * 60_000,
  );
}

export interface ApiService {
  /** For DOCKER_HOST. */
  readonly socketUrl: string;
  stop(): Promise<void>;
}

/**
 * `podman system service`: the Docker-compatible API that Debian's docker-compose talks to, on
 * a socket of the test's own. Containers outlive it (conmon holds them), so stopping it is
 * not a way to remove them.
 */
export async function startApiService(podman: Podman, directory: string, readyTimeoutMs = 30_000): Promise<ApiService> {
  const socket = join(directory, "podman.sock");
  const child: ChildProcess = spawn(podman.bin, ["system", "service", "--time=0", `unix://${socket}`], {
    env: podman.env,
    stdio: ["ignore", "ignore", "pipe"],
  });
  killOnExit(child);
  let stderr = "";
  child.stderr?.on("data", (chunk: Buffer) => {
    stderr = (stderr + chunk.toString("utf8")).slice(-4000);
  });
  const exited = new Promise<void>((resolvePromise) => child.once("exit", () => resolvePromise()));
  const stop = async (): Promise<void> => {
    if (child.exitCode !== null || child.signalCode !== null) return;
    child.kill("SIGTERM");
    const late = setTimeout(() => child.kill("SIGKILL"), 10_000);
    await exited;
    clearTimeout(late);
  };
  const started = Date.now();
  for (;;) {
    if (await ping(socket)) return { socketUrl: `unix://${socket}`, stop };
    if (child.exitCode !== null || Date.now() - started > readyTimeoutMs) {
      await stop();
      throw new Error(`podman system service did not answer on ${socket} within ${readyTimeoutMs} ms:\n${stderr}`);
    }
    await new Promise((resolvePromise) => setTimeout(resolvePromise, 100));
  }
}

function ping(socketPath: string): Promise<boolean> {
  return new Promise((resolvePromise) => {
    const request = httpRequest({ socketPath, path: "/_ping", timeout: 2000 }, (response) => {
      response.resume();
      resolvePromise(response.statusCode === 200);
    });
    request.on("error", () => resolvePromise(false));
    request.on("timeout", () => request.destroy());
    request.end();
  });
}
