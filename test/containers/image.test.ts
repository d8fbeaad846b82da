import { createHash, randomBytes } from "node:crypto";
import { chmod, chown, mkdir, readFile, stat, writeFile } from "node:fs/promises";
import { request as httpsRequestRaw } from "node:https";
import { dirname, join, resolve } from "node:path";
import { fileURLToPath } from "node:url";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { eventually, makeTempDir, removeDir, request } from "../helpers.js";
import { forKubePlay, loadManifests, type KubePlay } from "../support/kubernetes.js";
import {
  BLACKBOX_EXPORTER_BASE,
  buildServiceImage,
  Cleanup,
  ensureBaseImage,
  mustRun,
  NODE_BASE,
  podmanRemove,
  preparePodman,
  PROMETHEUS_BASE,
  runCommand,
  startApiService,
  type Podman,
  type Run,
} from "../support/podman.js";
import { freePort } from "../support/ports.js";
import { targetsFromFile, waitForTargets } from "../support/prometheus.js";
import { findContainerTools, findOpenssl } from "../support/tools.js";

/**
 * The image, for real: the repository's Dockerfile built by Debian's podman on a base image
 * made from Debian packages (nothing can be pulled here), then run the two documented ways:
 * docker-compose.yml through Debian's docker-compose (talking to podman's Docker API), and
 * contrib/kubernetes/ through `podman kube play`. Each beside a real Prometheus, built the same
 * way from Debian's prometheus package, reading the shared volume.
 *
 * Bounded and cached: the base images are made once and kept (test/support/podman.ts says
 * where, and how to clear them); the service image reuses podman's build layers, so a second run
 * builds it in seconds. Every name carries this run's id, every port is a free loopback port,
 * and afterAll removes every container, pod, volume, network and the run's own image, pass
 * or fail; the base images stay.
 */

const ROOT = resolve(dirname(fileURLToPath(import.meta.url)), "..", "..");
const RUN = randomBytes(4).toString("hex");
const APPLICATION = "image-test";
/** The Dockerfile's default CONTAINER_UID/GID, which Compose and the manifests keep. */
const SERVICE_UID = 10001;

/** What the run measured, printed at the end for the record (and for BENCHMARKS-style notes). */
const timings = new Map<string, string>();
const seconds = (ms: number): string => `${(ms / 1000).toFixed(1)} s`;

let podman: Podman;
let dockerCompose = "";
let scratch = "";
let prometheusImage = "";
let blackboxImage = "";
let serviceImage = "";
let dockerHost = "";
const outerCleanup = new Cleanup();
const usedPorts = new Set<number>();

/** A free loopback port this run has not handed out yet. */
async function loopbackPort(): Promise<number> {
  for (;;) {
    const port = await freePort("127.0.0.1");
    if (!usedPorts.has(port)) {
      usedPorts.add(port);
      return port;
    }
  }
}

async function inspect(what: string, format: string): Promise<string> {
  return (await podman.mustRun(["inspect", "--format", format, what])).stdout.trim();
}

/** The state and last log lines of each container of the deployment's pod, for a failure message. */
async function podDiagnosis(deployment: string): Promise<string> {
  const pods = (await podman.run(["pod", "ps", "--filter", `name=${deployment}`, "--format", "{{.Name}}"])).stdout.split("\n").filter((name) => name !== "");
  const listed = await podman.run(["ps", "--all", ...pods.flatMap((pod) => ["--filter", `pod=${pod}`]), "--format", "{{.Names}}\t{{.Status}}"]);
  const lines = [`containers of pod ${pods.join(", ") || `(none named ${deployment})`}:`, listed.stdout.trim() || listed.stderr.trim()];
  for (const name of listed.stdout.split("\n").map((line) => line.split("\t")[0] ?? "").filter((name) => name !== "")) {
    const logs = await podman.run(["logs", "--tail", "15", name]);
    lines.push(`--- ${name}:`, `${logs.stdout}${logs.stderr}`.trim());
  }
  return lines.join("\n");
}

/** Waits for `<url>/-/ready` to answer 200 (the service and Prometheus both have it); refused connections are part of starting. */
async function ready(url: string, timeoutMs = 60_000): Promise<void> {
  await eventually(async () => (await fetch(`${url}/-/ready`).catch(() => undefined))?.status === 200, timeoutMs, `${url}/-/ready to answer 200`);
}

beforeAll(async () => {
  const tools = findContainerTools();
  dockerCompose = tools.dockerCompose;
  scratch = await makeTempDir("containers-");
  outerCleanup.add("the temporary directory", () => removeDir(scratch));
  podman = await preparePodman(tools.podman, scratch);

  const [node, prometheus, blackbox] = await Promise.all([
    ensureBaseImage(podman, tools.mmdebstrap, NODE_BASE),
    ensureBaseImage(podman, tools.mmdebstrap, PROMETHEUS_BASE),
    ensureBaseImage(podman, tools.mmdebstrap, BLACKBOX_EXPORTER_BASE),
  ]);
  timings.set("node base image", `${seconds(node.ms)} (${node.how})`);
  timings.set("prometheus image", `${seconds(prometheus.ms)} (${prometheus.how})`);
  timings.set("blackbox_exporter image", `${seconds(blackbox.ms)} (${blackbox.how})`);
  prometheusImage = prometheus.image;
  blackboxImage = blackbox.image;

  serviceImage = `localhost/file-sd-writer-test/service:${RUN}`;
  outerCleanup.add(`image ${serviceImage}`, () => podmanRemove(podman, ["rmi", "--force", serviceImage]));
  const build = await buildServiceImage(podman, ROOT, node.image, serviceImage);
  timings.set("service image build", seconds(build.ms));

  const api = await startApiService(podman, scratch);
  outerCleanup.add("podman system service", () => api.stop());
  dockerHost = api.socketUrl;
}, 25 * 60_000);

/**
 * Debian's docker-compose on `files`, as project `project` with `envFile`, through podman's
 * Docker API. `down` removes the project in the end; what it cannot (a half-made project) is
 * removed by its Compose labels.
 */
function composeProject(cleanup: Cleanup, project: string, files: readonly string[], envFile: string): (args: readonly string[], timeoutMs?: number) => Promise<Run> {
  const env = { ...podman.env, DOCKER_HOST: dockerHost };
  const common = ["--project-name", project, ...files.flatMap((file) => ["--file", join(ROOT, file)]), "--env-file", envFile];
  cleanup.add(`compose project ${project}`, async () => {
    await runCommand(dockerCompose, [...common, "down", "--volumes", "--remove-orphans", "--timeout", "5"], { env, timeoutMs: 120_000, cwd: ROOT });
    const label = `label=com.docker.compose.project=${project}`;
    const containers = (await podman.run(["ps", "--all", "--quiet", "--filter", label])).stdout.split("\n").filter((id) => id !== "");
    if (containers.length > 0) await podmanRemove(podman, ["rm", "--force", "--volumes", ...containers]);
    const volumes = (await podman.run(["volume", "ls", "--quiet", "--filter", label])).stdout.split("\n").filter((name) => name !== "");
    if (volumes.length > 0) await podmanRemove(podman, ["volume", "rm", "--force", ...volumes]);
    await podmanRemove(podman, ["network", "rm", "--force", `${project}_default`]);
  });
  return (args, timeoutMs = 120_000) => mustRun(dockerCompose, [...common, ...args], { env, timeoutMs, cwd: ROOT });
}

afterAll(async () => {
  try {
    await outerCleanup.run();
  } finally {
    console.log(`container test timings (run ${RUN}):\n${[...timings].map(([what, value]) => `  ${what}: ${value}`).join("\n")}`);
  }
}, 5 * 60_000);

describe("docker-compose.yml, run by Debian's docker-compose on podman", () => {
  const cleanup = new Cleanup();
  const project = `fsdtest${RUN}`;
  const environment = `compose-${RUN}`;
  const maxBodyBytes = 4096;
  let fileSdUrl = "";
  let prometheusUrl = "";
  let service = "";
  let prometheus = "";
  let compose: (args: readonly string[], timeoutMs?: number) => Promise<Run>;

  beforeAll(async () => {
    const [fileSdPort, prometheusPort, blackboxPort] = [await loopbackPort(), await loopbackPort(), await loopbackPort()];
    fileSdUrl = `http://127.0.0.1:${fileSdPort}`;
    prometheusUrl = `http://127.0.0.1:${prometheusPort}`;
    // A .env as a user writes it: the images to run, the ports, and one setting of the service.
    const envFile = join(scratch, "compose.env");
    await writeFile(
      envFile,
      [
        `FILE_SD_IMAGE=${serviceImage}`,
        `PROMETHEUS_IMAGE=${prometheusImage}`,
        `BLACKBOX_EXPORTER_IMAGE=${blackboxImage}`,
        "PUBLISH_ADDRESS=127.0.0.1",
        `FILE_SD_PORT=${fileSdPort}`,
        `PROMETHEUS_PORT=${prometheusPort}`,
        `BLACKBOX_EXPORTER_PORT=${blackboxPort}`,
        `MAX_BODY_BYTES=${maxBodyBytes}`,
        "",
      ].join("\n"),
    );
    compose = composeProject(cleanup, project, ["docker-compose.yml"], envFile);
    const up = await compose(["up", "--detach", "--no-build"]);
    timings.set("compose up", seconds(up.ms));
    service = (await compose(["ps", "--quiet", "file-sd"])).stdout.trim();
    prometheus = (await compose(["ps", "--quiet", "prometheus"])).stdout.trim();
    expect(service, "docker-compose ps found no file-sd container").not.toBe("");
    expect(prometheus, "docker-compose ps found no prometheus container").not.toBe("");
    await ready(fileSdUrl);
    await ready(prometheusUrl);
  }, 5 * 60_000);

  afterAll(() => cleanup.run(), 5 * 60_000);

  it("Prometheus lists a target registered through the service's published port, and the service sees it scraped", async () => {
    const fileName = `${APPLICATION}@${environment}.json`;
    const started = Date.now();
    // Prometheus itself, as Prometheus reaches it: a target that is up.
    const put = await request(fileSdUrl, "PUT", `/${APPLICATION}/${environment}`, { body: "targets=localhost:9090" });
    expect(put.status, JSON.stringify(put.body)).toBe(200);
    const seen = await waitForTargets(prometheusUrl, (targets) => targetsFromFile(targets, fileName).length === 1, { what: fileName, timeoutMs: 30_000 });
    timings.set("compose: PUT to listed by Prometheus", seconds(Date.now() - started));
    expect(targetsFromFile(seen.targets, fileName)[0]?.labels).toMatchObject({ job: APPLICATION, env: environment, instance: "localhost:9090" });

    // PROMETHEUS_URL=http://prometheus:9090 from docker-compose.yml: the service asks its neighbour.
    const status = await request(fileSdUrl, "GET", `/${APPLICATION}/${environment}/status?wait=45s`);
    expect(status.status, JSON.stringify(status.body)).toBe(200);
    expect(status.body).toMatchObject({ ready: true });
    timings.set("compose: PUT to up in the status answer", seconds(Date.now() - started));
  }, 90_000);

  it("a URL registered as a probe is probed by the blackbox_exporter beside Prometheus, and its status answers 200", async () => {
    const started = Date.now();
    // The service's own /-/healthy, as the exporter reaches it on Compose's network.
    const put = await request(fileSdUrl, "PUT", `/${APPLICATION}/${environment}/probes`, { body: "targets=http://file-sd:12345/-/healthy&__param_module=http_2xx" });
    expect(put.status, JSON.stringify(put.body)).toBe(200);
    const status = await request(fileSdUrl, "GET", `/${APPLICATION}/${environment}/probes/status?wait=45s`);
    expect(status.status, JSON.stringify(status.body)).toBe(200);
    expect(status.body).toMatchObject({ ready: true, targets: [{ target: "http://file-sd:12345/-/healthy", servers: [{ health: "up", probe: { success: true, httpStatusCode: 200 } }] }] });
    timings.set("compose: probe PUT to probe_success in the status answer", seconds(Date.now() - started));
  }, 90_000);

  it("a setting in .env reaches the running service: MAX_BODY_BYTES turns a larger body away", async () => {
    const body = `targets=localhost:9090&padding=${"x".repeat(maxBodyBytes)}`;
    const answer = await request(fileSdUrl, "PUT", `/${APPLICATION}/too-large`, { body });
    expect(answer.status).toBe(413);
  });

  it("the service runs as uid 10001, the volume and its files are its own, and Prometheus can only read them", async () => {
    const processStatus = (await podman.mustRun(["exec", service, "cat", "/proc/1/status"])).stdout;
    expect(/^Uid:\s+(\d+)/m.exec(processStatus)?.[1]).toBe(String(SERVICE_UID));
    expect(/^Gid:\s+(\d+)/m.exec(processStatus)?.[1]).toBe(String(SERVICE_UID));

    const mountpoint = (await podman.mustRun(["volume", "inspect", "--format", "{{.Mountpoint}}", `${project}_file_sd`])).stdout.trim();
    for (const path of [mountpoint, join(mountpoint, `${APPLICATION}@${environment}.json`)]) {
      const owner = await stat(path);
      expect([owner.uid, owner.gid], path).toEqual([SERVICE_UID, SERVICE_UID]);
    }
    const write = await podman.run(["exec", prometheus, "sh", "-c", "echo [] > /file_sd/prometheus-wrote-this.json"]);
    expect(write.code).not.toBe(0);
    expect(write.stderr).toMatch(/read-only file system/i);
  });

  it("the Dockerfile's HEALTHCHECK answers: healthy now, unhealthy on a port nothing listens on", async () => {
    const healthcheck = await podman.run(["healthcheck", "run", service]);
    expect(healthcheck.code, `podman healthcheck run: ${healthcheck.stdout}${healthcheck.stderr}`).toBe(0);

    // The same command, asked about a port where nothing listens, must say unhealthy: the check can fail.
    const test = JSON.parse(await inspect(service, "{{json .Config.Healthcheck.Test}}")) as string[];
    expect(test[0]).toBe("CMD");
    const elsewhere = await podman.run(["exec", "--env", "BIND=0.0.0.0:1", service, ...test.slice(1)]);
    expect(elsewhere.code).toBe(1);
  });

  it("podman stop: SIGTERM reaches node, which drains and exits 0 well within the grace period", async () => {
    const graceSeconds = Number(await inspect(service, "{{.Config.StopTimeout}}"));
    expect(graceSeconds, "stop_grace_period of docker-compose.yml").toBe(15);
    const stop = await podman.mustRun(["stop", service], (graceSeconds + 30) * 1000);
    timings.set("podman stop (compose's file-sd)", seconds(stop.ms));
    expect(await inspect(service, "{{.State.ExitCode}}")).toBe("0");
    expect(stop.ms).toBeLessThan(graceSeconds * 1000);
    const logs = await podman.mustRun(["logs", service]);
    expect(logs.stdout + logs.stderr).toMatch(/"msg":"stopped"/);
  }, 60_000);
});

/** A request over HTTPS that trusts `ca` only (fetch cannot be given a CA). */
function httpsRequest(url: string, ca: string, options: { method?: string; body?: string; token?: string } = {}): Promise<{ status: number; body: string }> {
  return new Promise((resolvePromise, reject) => {
    const headers: Record<string, string> = {};
    if (options.body !== undefined) headers["content-type"] = "application/x-www-form-urlencoded";
    if (options.token !== undefined) headers.authorization = `Bearer ${options.token}`;
    const outgoing = httpsRequestRaw(url, { method: options.method ?? "GET", ca, headers, timeout: 10_000 }, (incoming) => {
      let body = "";
      incoming.setEncoding("utf8");
      incoming.on("data", (chunk: string) => (body += chunk));
      incoming.on("end", () => resolvePromise({ status: incoming.statusCode ?? 0, body }));
    });
    outgoing.on("error", reject);
    outgoing.on("timeout", () => outgoing.destroy(new Error(`${url}: no answer within 10 s`)));
    outgoing.end(options.body);
  });
}

describe("docker-compose.tls-tokens.yml on top, for real: HTTPS and write tokens from the mounted directory", () => {
  const cleanup = new Cleanup();
  const project = `fsdtls${RUN}`;
  const token = randomBytes(32).toString("hex");
  let url = "";
  let ca = "";
  let service = "";

  beforeAll(async () => {
    // The directory as docs/containers.md says to make it: a certificate, its key readable by the service's group, a tokens file.
    const secrets = join(scratch, "tls-tokens");
    await mkdir(secrets);
    await mustRun(
      findOpenssl(),
      ["req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes", "-days", "7", "-subj", "/CN=localhost",
        "-addext", "subjectAltName=DNS:localhost,IP:127.0.0.1", "-keyout", join(secrets, "key.pem"), "-out", join(secrets, "cert.pem")],
      { env: podman.env, timeoutMs: 30_000 },
    );
    await chown(join(secrets, "key.pem"), 0, SERVICE_UID);
    await chmod(join(secrets, "key.pem"), 0o640);
    const digest = createHash("sha256").update(token).digest("hex");
    await writeFile(join(secrets, "tokens.yml"), `tokens:\n  - name: ci\n    sha256: ${digest}\n    applications: ["${APPLICATION}"]\n`);
    ca = await readFile(join(secrets, "cert.pem"), "utf8");

    const port = await loopbackPort();
    url = `https://127.0.0.1:${port}`;
    const envFile = join(scratch, "tls-tokens.env");
    await writeFile(envFile, [`FILE_SD_IMAGE=${serviceImage}`, "PUBLISH_ADDRESS=127.0.0.1", `FILE_SD_PORT=${port}`, `TLS_TOKENS_DIR_HOST=${secrets}`, ""].join("\n"));
    const compose = composeProject(cleanup, project, ["docker-compose.yml", "docker-compose.tls-tokens.yml"], envFile);
    // The service alone: Prometheus is not what this override changes.
    await compose(["up", "--detach", "--no-build", "file-sd"]);
    service = (await compose(["ps", "--quiet", "file-sd"])).stdout.trim();
    await eventually(async () => (await httpsRequest(`${url}/-/ready`, ca).catch(() => undefined))?.status === 200, 60_000, `${url}/-/ready over HTTPS`);
  }, 5 * 60_000);

  afterAll(() => cleanup.run(), 5 * 60_000);

  it("speaks HTTPS with the mounted certificate, and writes need a token from the mounted tokens file", async () => {
    const path = `${url}/${APPLICATION}/tls-${RUN}`;
    expect((await httpsRequest(path, ca, { method: "PUT", body: "targets=host1:9100" })).status).toBe(401);
    const put = await httpsRequest(path, ca, { method: "PUT", body: "targets=host1:9100", token });
    expect(put.status, put.body).toBe(200);
    expect(JSON.parse((await httpsRequest(path, ca)).body)).toEqual([{ targets: ["host1:9100"], labels: { job: APPLICATION, env: `tls-${RUN}` } }]);
    // The HEALTHCHECK follows CERTFILE to HTTPS.
    const healthcheck = await podman.run(["healthcheck", "run", service]);
    expect(healthcheck.code, `podman healthcheck run: ${healthcheck.stdout}${healthcheck.stderr}`).toBe(0);
  });
});

describe("contrib/kubernetes, run by podman kube play", () => {
  const cleanup = new Cleanup();
  const suffix = `-fsdtest${RUN}`;
  const network = `fsdtest${RUN}`;
  const environment = `kube-${RUN}`;
  let play: KubePlay;
  let manifestFile = "";
  let fileSdUrl = "";
  let prometheusUrl = "";

  const kubePlay = async (): Promise<void> => {
    const started = Date.now();
    // The pod's init containers, as the kubelet runs them before the pod (test/support/kubernetes.ts says why here).
    for (const init of play.initContainers) {
      await podman.mustRun([
        "run", "--rm", "--name", `${init.name}${suffix}`,
        ...(init.user === undefined ? [] : ["--user", init.user]),
        ...(init.readOnlyRootFilesystem ? ["--read-only"] : []),
        ...init.mounts.flatMap((mount) => ["--volume", `${mount.volume}:${mount.mountPath}`]),
        "--entrypoint", init.command[0] ?? "", init.image, ...init.command.slice(1),
      ]);
    }
    await podman.mustRun(["kube", "play", "--network", network, manifestFile], 180_000);
    try {
      await ready(fileSdUrl);
      await ready(prometheusUrl);
    } catch (error) {
      throw new Error(`${(error as Error).message}\n${await podDiagnosis(play.deployment)}`);
    }
    timings.set(timings.has("kube play to ready") ? "kube play to ready, again" : "kube play to ready", seconds(Date.now() - started));
  };

  beforeAll(async () => {
    play = await forKubePlay(await loadManifests(), {
      suffix,
      images: new Map([
        ["file-sd-folders", serviceImage],
        ["file-sd-writer", serviceImage],
        ["prometheus", prometheusImage],
        ["blackbox-exporter", blackboxImage],
      ]),
      freePort: loopbackPort,
    });
    manifestFile = join(scratch, "kube-play.yaml");
    await writeFile(manifestFile, play.yaml);
    const port = (name: string): number => {
      const hostPort = play.hostPorts.get(name);
      if (hostPort === undefined) throw new Error(`no container port named ${name} in contrib/kubernetes`);
      return hostPort;
    };
    fileSdUrl = `http://127.0.0.1:${port("http")}`;
    prometheusUrl = `http://127.0.0.1:${port("web")}`;

    cleanup.add(`network ${network}`, () => podmanRemove(podman, ["network", "rm", "--force", network]));
    for (const volume of [...play.claims.map((claim) => claim.name), ...play.configMapVolumes]) {
      cleanup.add(`volume ${volume}`, () => podmanRemove(podman, ["volume", "rm", "--force", volume]));
    }
    cleanup.add(`pod of ${play.deployment}`, async () => {
      await podman.run(["kube", "down", manifestFile], 120_000);
      const pods = (await podman.run(["pod", "ps", "--quiet", "--filter", `name=${play.deployment}`])).stdout.split("\n").filter((id) => id !== "");
      if (pods.length > 0) await podmanRemove(podman, ["pod", "rm", "--force", ...pods]);
    });
    await podman.mustRun(["network", "create", network]);
    // The claims, bound before the pod starts. A shared one gets what the kubelet does with the
    // pod's fsGroup: group-owned by it, setgid, group-writable; used once by a throwaway container
    // first, or podman would still give it to whichever container of the pod mounts it first.
    expect(play.claims.filter((claim) => claim.shared).length, "the pod shares its file_sd claim between two containers").toBe(1);
    expect(play.fsGroup).toBe(SERVICE_UID);
    for (const claim of play.claims) {
      await podman.mustRun(["volume", "create", claim.name]);
      if (!claim.shared) continue;
      await podman.mustRun(["run", "--rm", "--user", "0:0", "--volume", `${claim.name}:/volume`, serviceImage, "true"]);
      const mountpoint = (await podman.mustRun(["volume", "inspect", "--format", "{{.Mountpoint}}", claim.name])).stdout.trim();
      await chown(mountpoint, 0, play.fsGroup ?? 0);
      await chmod(mountpoint, 0o2775);
    }
    await kubePlay();
  }, 5 * 60_000);

  afterAll(() => cleanup.run(), 5 * 60_000);

  it("a target registered through the sidecar's port is listed by the Prometheus of the same pod, and every probe answers 200", async () => {
    const fileName = `${APPLICATION}@${environment}.json`;
    const started = Date.now();
    // The sidecar's own /metrics, as Prometheus reaches it inside the pod.
    const put = await request(fileSdUrl, "PUT", `/${APPLICATION}/${environment}`, { body: "targets=localhost:12345" });
    expect(put.status, JSON.stringify(put.body)).toBe(200);
    const seen = await waitForTargets(prometheusUrl, (targets) => targetsFromFile(targets, fileName).length === 1, { what: fileName, timeoutMs: 30_000 });
    timings.set("kube: PUT to listed by Prometheus", seconds(Date.now() - started));
    expect(targetsFromFile(seen.targets, fileName)[0]?.labels).toMatchObject({ job: APPLICATION, env: environment });

    // On the claim's volume, as the service's user.
    const mountpoint = (await podman.mustRun(["volume", "inspect", "--format", "{{.Mountpoint}}", `file-sd${suffix}`])).stdout.trim();
    const owner = await stat(join(mountpoint, fileName));
    expect([owner.uid, owner.gid]).toEqual([SERVICE_UID, SERVICE_UID]);

    // What the kubelet would ask (kube play 4.3 turns probes into curl health checks, and the images have no curl).
    expect(play.probes.map(({ container, kind }) => `${container} ${kind}`).sort()).toEqual([
      "blackbox-exporter liveness",
      "blackbox-exporter readiness",
      "file-sd-writer liveness",
      "file-sd-writer readiness",
      "prometheus liveness",
      "prometheus readiness",
    ]);
    for (const probe of play.probes) {
      const answer = await fetch(`http://127.0.0.1:${play.hostPorts.get(probe.port)}${probe.path}`);
      expect(answer.status, `${probe.container} ${probe.kind} probe ${probe.path}`).toBe(200);
    }
  }, 60_000);

  it("a URL registered as a probe is probed by the pod's blackbox_exporter, and its status answers 200", async () => {
    const started = Date.now();
    // The sidecar's own /-/healthy, on the pod's localhost.
    const put = await request(fileSdUrl, "PUT", `/${APPLICATION}/${environment}/probes`, { body: "targets=http://localhost:12345/-/healthy" });
    expect(put.status, JSON.stringify(put.body)).toBe(200);
    // The init container made the folder on the claim, as the service's user.
    const mountpoint = (await podman.mustRun(["volume", "inspect", "--format", "{{.Mountpoint}}", `file-sd${suffix}`])).stdout.trim();
    const folder = await stat(join(mountpoint, "probes"));
    expect([folder.uid, folder.isDirectory()]).toEqual([SERVICE_UID, true]);
    const status = await request(fileSdUrl, "GET", `/${APPLICATION}/${environment}/probes/status?wait=45s`);
    expect(status.status, `${JSON.stringify(status.body)}\n${await podDiagnosis(play.deployment)}`).toBe(200);
    expect(status.body).toMatchObject({ ready: true, targets: [{ servers: [{ health: "up", probe: { success: true, httpStatusCode: 200 } }] }] });
    timings.set("kube: probe PUT to probe_success in the status answer", seconds(Date.now() - started));
  }, 90_000);

  it("registrations outlive the pod: after kube down and kube play again, the group is there and Prometheus lists it", async () => {
    const down = await podman.mustRun(["kube", "down", manifestFile], 120_000);
    timings.set("kube down", seconds(down.ms));
    await kubePlay();
    const fileName = `${APPLICATION}@${environment}.json`;
    const group = await request(fileSdUrl, "GET", `/${APPLICATION}/${environment}`);
    expect(group.body).toEqual([{ targets: ["localhost:12345"], labels: { job: APPLICATION, env: environment } }]);
    await waitForTargets(prometheusUrl, (targets) => targetsFromFile(targets, fileName).length === 1, { what: fileName, timeoutMs: 30_000 });
  }, 5 * 60_000);
});
