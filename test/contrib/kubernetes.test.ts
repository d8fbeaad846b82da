import { execFile } from "node:child_process";
import { readFile, writeFile } from "node:fs/promises";
import { dirname, join, posix, resolve } from "node:path";
import { fileURLToPath } from "node:url";
import { load } from "js-yaml";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { makeTempDir, removeDir } from "../helpers.js";
import { loadManifests, schemaErrors, strictErrors, type Manifest } from "../support/kubernetes.js";
import { findPromtool } from "../support/tools.js";

/**
 * contrib/kubernetes/ against the Kubernetes API's schemas (test/support/kubernetes.ts says
 * which, and why two ways), and against the rest of the repository: the image's directory and
 * uid, the service's probe endpoints, the repository's prometheus.yml. test/containers/image.test.ts
 * runs the same manifests with `podman kube play`.
 */

const ROOT = resolve(dirname(fileURLToPath(import.meta.url)), "..", "..");

interface Probe {
  readonly httpGet?: { readonly path?: string; readonly port: string | number };
}

interface Container {
  readonly name: string;
  readonly env?: readonly { name: string; value?: string }[];
  readonly ports?: readonly { name?: string; containerPort: number }[];
  readonly livenessProbe?: Probe;
  readonly readinessProbe?: Probe;
  readonly resources?: { requests?: Record<string, string>; limits?: Record<string, string> };
  readonly securityContext?: { runAsUser?: number; runAsGroup?: number; readOnlyRootFilesystem?: boolean; allowPrivilegeEscalation?: boolean };
  readonly volumeMounts?: readonly { name: string; mountPath: string; readOnly?: boolean }[];
}

interface PodSpec {
  readonly securityContext?: { runAsNonRoot?: boolean; fsGroup?: number };
  readonly terminationGracePeriodSeconds?: number;
  readonly containers: readonly Container[];
  readonly volumes?: readonly { name: string; persistentVolumeClaim?: { claimName: string }; configMap?: { name: string } }[];
}

interface Deployment {
  readonly spec: { readonly strategy?: { type?: string }; readonly template: { metadata: { labels: Record<string, string> }; spec: PodSpec } };
}

interface Service {
  readonly spec: { readonly selector: Record<string, string>; readonly ports: readonly { name?: string; port: number; targetPort: string | number }[] };
}

function only(manifests: readonly Manifest[], kind: string): Manifest[] {
  return manifests.filter((manifest) => manifest.kind === kind);
}

function configMap(manifests: readonly Manifest[], name: string): { metadata: { name: string }; data: Record<string, string> } | undefined {
  return only(manifests, "ConfigMap").find((manifest) => manifest.name === name)?.object as { metadata: { name: string }; data: Record<string, string> } | undefined;
}

function container(pod: PodSpec, name: string): Container {
  const found = pod.containers.find((candidate) => candidate.name === name);
  if (found === undefined) throw new Error(`the pod has no container named ${name}`);
  return found;
}

/** The image's ENV and ARG defaults, as the Dockerfile gives them. */
async function dockerfileValue(name: string): Promise<string | undefined> {
  const text = (await readFile(join(ROOT, "Dockerfile"), "utf8")).replace(/^\s*#.*$/gm, "");
  return new RegExp(`\\b${name}=("?)([^\\s"\\\\]+)\\1`).exec(text)?.[2];
}

describe("contrib/kubernetes/", () => {
  let manifests: Manifest[] = [];
  let pod: PodSpec;
  let scratch = "";

  beforeAll(async () => {
    manifests = await loadManifests();
    const [deployment] = only(manifests, "Deployment");
    pod = (deployment?.object as unknown as Deployment).spec.template.spec;
    scratch = await makeTempDir("kubernetes-");
  });
  afterAll(async () => {
    if (scratch !== "") await removeDir(scratch);
  });

  it("holds Prometheus' Deployment, its config and blackbox_exporter's, two claims and two Services", () => {
    expect(manifests.map((manifest) => `${manifest.kind}/${manifest.name}`).sort()).toEqual([
      "ConfigMap/blackbox-exporter-config",
      "ConfigMap/prometheus-config",
      "Deployment/prometheus",
      "PersistentVolumeClaim/file-sd",
      "PersistentVolumeClaim/prometheus-data",
      "Service/file-sd-writer",
      "Service/prometheus",
    ]);
  });

  it("every document is valid against the Kubernetes schemas", async () => {
    for (const manifest of manifests) expect(await schemaErrors(manifest), `${manifest.file}: ${manifest.kind} ${manifest.name}`).toEqual([]);
  });

  it("no document has a field the Kubernetes API does not know", () => {
    expect(strictErrors(manifests)).toEqual([]);
  });

  it("the checks catch a misspelt field, a value of the wrong type and an unknown kind", async () => {
    const deployment = only(manifests, "Deployment")[0];
    if (deployment === undefined) throw new Error("no Deployment");
    const mutate = (change: (container: Record<string, unknown>) => void): Manifest => {
      const object = structuredClone(deployment.object) as { spec: { template: { spec: { containers: Record<string, unknown>[] } } } };
      change(object.spec.template.spec.containers[0] ?? {});
      return { ...deployment, object: object as unknown as Record<string, unknown> };
    };
    const misspelt = mutate((container) => {
      container.readinesProbe = container.readinessProbe;
      delete container.readinessProbe;
    });
    // The JSON schemas let an unknown field through; the strict check does not.
    expect(await schemaErrors(misspelt)).toEqual([]);
    expect(strictErrors([misspelt])).toEqual([expect.stringMatching(/deployment\.yaml: Deployment prometheus.*'"readinesProbe"' does not exist/)]);
    const wrongType = mutate((container) => {
      container.ports = [{ name: "http", containerPort: "12345" }];
    });
    expect((await schemaErrors(wrongType)).join("\n")).toMatch(/containerPort must be integer/);
    expect(strictErrors([wrongType]).join("\n")).toMatch(/not assignable to type 'number'/);
    expect(await schemaErrors({ ...deployment, kind: "Deploymnet" })).toEqual([expect.stringMatching(/not a type Kubernetes 1\.27 knows/)]);
  });

  it("one pod: the sidecar writes the claimed file_sd volume where the image says, Prometheus reads it where its config looks", async () => {
    const writer = container(pod, "file-sd-writer");
    const prometheus = container(pod, "prometheus");
    const directory = await dockerfileValue("FILE_SD_DIRECTORY");
    expect(directory).toBe("/file_sd");
    const written = writer.volumeMounts?.find((mount) => mount.mountPath === directory);
    expect(written?.readOnly ?? false).toBe(false);

    const volume = pod.volumes?.find((candidate) => candidate.name === written?.name);
    const claims = only(manifests, "PersistentVolumeClaim").map((claim) => claim.name);
    expect(claims).toContain(volume?.persistentVolumeClaim?.claimName);

    const config = configMap(manifests, "prometheus-config");
    const prometheusYml = load(config?.data["prometheus.yml"] ?? "") as { scrape_configs: { file_sd_configs?: { files: string[] }[] }[] };
    const globs = prometheusYml.scrape_configs.flatMap((job) => (job.file_sd_configs ?? []).flatMap((sd) => sd.files));
    expect(globs).toEqual(["/file_sd/*.json", "/file_sd/probes/*.json"]);
    expect(prometheus.volumeMounts).toContainEqual({ name: written?.name, mountPath: posix.dirname(globs[0] ?? ""), readOnly: true });

    // Prometheus' config is the ConfigMap, mounted where its --config.file points.
    const configVolume = pod.volumes?.find((candidate) => candidate.configMap?.name === config?.metadata.name);
    const configArg = ((prometheus as { args?: string[] }).args ?? []).find((arg) => arg.startsWith("--config.file="));
    const configMount = prometheus.volumeMounts?.find((mount) => mount.name === configVolume?.name);
    expect(configArg).toBe(`--config.file=${configMount?.mountPath}/prometheus.yml`);
    // The TSDB on its own claim, so a new pod keeps the history.
    const dataArg = ((prometheus as { args?: string[] }).args ?? []).find((arg) => arg.startsWith("--storage.tsdb.path="));
    const dataMount = prometheus.volumeMounts?.find((mount) => mount.mountPath === dataArg?.slice("--storage.tsdb.path=".length));
    expect(claims).toContain(pod.volumes?.find((candidate) => candidate.name === dataMount?.name)?.persistentVolumeClaim?.claimName);
  });

  it("the ConfigMap's prometheus.yml is the repository's, with the sidecar and blackbox_exporter on localhost, and promtool accepts it", async () => {
    const config = configMap(manifests, "prometheus-config");
    const text = config?.data["prometheus.yml"] ?? "";
    const blackbox = container(pod, "blackbox-exporter").ports?.find((port) => port.name === "blackbox")?.containerPort;
    const repository = (await readFile(join(ROOT, "prometheus.yml"), "utf8"))
      .replaceAll("file-sd:12345", "localhost:12345")
      .replaceAll("blackbox-exporter:9115", `localhost:${blackbox}`);
    expect(load(text)).toEqual(load(repository));
    const file = join(scratch, "prometheus.yml");
    await writeFile(file, text);
    const result = await new Promise<{ code: number; output: string }>((resolvePromise) => {
      execFile(findPromtool(), ["check", "config", file], { timeout: 60_000 }, (error, stdout, stderr) =>
        resolvePromise({ code: error === null ? 0 : 1, output: stdout + stderr }),
      );
    });
    expect(result.code, result.output).toBe(0);
  });

  it("blackbox_exporter is the pod's third container, with the repository's blackbox.yml where its --config.file points", async () => {
    const exporter = container(pod, "blackbox-exporter") as Container & { args?: string[] };
    const config = configMap(manifests, "blackbox-exporter-config");
    const volume = pod.volumes?.find((candidate) => candidate.configMap?.name === "blackbox-exporter-config");
    const mount = exporter.volumeMounts?.find((candidate) => candidate.name === volume?.name);
    expect(mount?.readOnly).toBe(true);
    const [file = ""] = Object.keys(config?.data ?? {});
    expect(exporter.args).toContain(`--config.file=${mount?.mountPath}/${file}`);
    expect(config?.data[file]).toBe(await readFile(join(ROOT, "blackbox.yml"), "utf8"));
    expect(exporter.securityContext?.runAsUser).not.toBe(0);
  });

  it("an init container makes the probes/ folder on the claim as the service's user, before Prometheus first looks for it", async () => {
    const init = ((pod as PodSpec & { initContainers?: (Container & { command?: string[] })[] }).initContainers ?? []).find((each) => each.name === "file-sd-folders");
    expect(init?.command?.join(" ")).toContain("/file_sd/probes");
    expect(init?.volumeMounts).toEqual(container(pod, "file-sd-writer").volumeMounts);
    expect(String(init?.securityContext?.runAsUser)).toBe(await dockerfileValue("CONTAINER_UID"));
  });

  it("the sidecar runs as the image's uid, not root, and asks the Prometheus beside it", async () => {
    const writer = container(pod, "file-sd-writer");
    expect(String(writer.securityContext?.runAsUser)).toBe(await dockerfileValue("CONTAINER_UID"));
    expect(String(writer.securityContext?.runAsGroup)).toBe(await dockerfileValue("CONTAINER_GID"));
    expect(pod.securityContext?.runAsNonRoot).toBe(true);
    // The pod's volumes are group-writable by the service's group (the kubelet's fsGroup).
    expect(String(pod.securityContext?.fsGroup)).toBe(await dockerfileValue("CONTAINER_GID"));
    const web = container(pod, "prometheus").ports?.find((port) => port.name === "web")?.containerPort;
    expect(writer.env).toContainEqual({ name: "PROMETHEUS_URL", value: `http://localhost:${web}` });
    // Longer than the service's 10 s drain on SIGTERM, as Compose's stop_grace_period.
    expect(pod.terminationGracePeriodSeconds).toBeGreaterThanOrEqual(15);
    // ReadWriteOnce claims: the old pod must let go before the new one mounts them.
    expect((only(manifests, "Deployment")[0]?.object as unknown as Deployment).spec.strategy?.type).toBe("Recreate");
  });

  it("every container has resource requests, and probes on /-/healthy (liveness) and /-/ready (readiness) at a port it names", () => {
    for (const each of pod.containers) {
      expect(Object.keys(each.resources?.requests ?? {}).sort(), each.name).toEqual(["cpu", "memory"]);
      expect(each.resources?.limits?.memory, each.name).toBeDefined();
      const ports = (each.ports ?? []).map((port) => port.name);
      expect(each.livenessProbe?.httpGet?.path, each.name).toBe("/-/healthy");
      expect(each.readinessProbe?.httpGet?.path, each.name).toBe("/-/ready");
      expect(ports, each.name).toContain(each.livenessProbe?.httpGet?.port);
      expect(ports, each.name).toContain(each.readinessProbe?.httpGet?.port);
      expect(each.securityContext?.allowPrivilegeEscalation, each.name).toBe(false);
      expect(each.securityContext?.readOnlyRootFilesystem, each.name).toBe(true);
    }
  });

  it("the Services select the pod and reach the API and Prometheus by port name", async () => {
    const deployment = only(manifests, "Deployment")[0]?.object as unknown as Deployment;
    const labels = deployment.spec.template.metadata.labels;
    const byName = new Map(only(manifests, "Service").map((service) => [service.name, service.object as unknown as Service]));
    for (const service of byName.values()) {
      for (const [key, value] of Object.entries(service.spec.selector)) expect(labels[key]).toBe(value);
    }
    const api = byName.get("file-sd-writer")?.spec.ports;
    expect(api).toEqual([{ name: "http", port: Number(/:([0-9]+)$/.exec((await dockerfileValue("BIND")) ?? "")?.[1]), targetPort: "http" }]);
    expect(byName.get("prometheus")?.spec.ports).toEqual([{ name: "web", port: 9090, targetPort: "web" }]);
    const named = pod.containers.flatMap((each) => (each.ports ?? []).map((port) => port.name));
    for (const service of byName.values()) for (const port of service.spec.ports) expect(named).toContain(port.targetPort);
  });
});
