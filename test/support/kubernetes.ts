import { readdir, readFile } from "node:fs/promises";
import { dirname, join, resolve } from "node:path";
import { fileURLToPath } from "node:url";
import { dump, loadAll } from "js-yaml";
import ts from "typescript";

/**
 * The manifests of contrib/kubernetes/, and their check against the Kubernetes API's own
 * schemas. The schemas come with the npm package kubernetes-models (generated from the
 * OpenAPI document of Kubernetes 1.27, offline, nothing is downloaded at test time), used two
 * ways:
 *  - its JSON-schema validators: types, required fields, enums and formats;
 *  - its TypeScript interfaces, through the compiler's excess-property check: a field the API
 *    does not have (`readinesProbe`, `securityContex`) is an error. The JSON schemas allow
 *    unknown fields, and so do both kubectl's lenient mode and podman's kube play, which would
 *    silently drop such a field: this is what kubeconform's --strict does.
 */

export const KUBERNETES_DIR = resolve(dirname(fileURLToPath(import.meta.url)), "..", "..", "contrib", "kubernetes");

export interface Manifest {
  readonly file: string;
  readonly apiVersion: string;
  readonly kind: string;
  readonly name: string;
  /** The document as parsed from YAML. */
  readonly object: Record<string, unknown>;
}

/** Every document of every *.yaml in `directory`, in file-name order (what `kubectl apply -f dir/` applies). */
export async function loadManifests(directory = KUBERNETES_DIR): Promise<Manifest[]> {
  const files = (await readdir(directory)).filter((file) => file.endsWith(".yaml")).sort();
  const manifests: Manifest[] = [];
  for (const file of files) {
    for (const document of loadAll(await readFile(join(directory, file), "utf8"))) {
      if (document === null || document === undefined) continue;
      if (typeof document !== "object" || Array.isArray(document)) throw new Error(`${file}: a document that is not a mapping`);
      const object = document as Record<string, unknown>;
      const metadata = object.metadata as { name?: unknown } | undefined;
      manifests.push({
        file,
        apiVersion: String(object.apiVersion),
        kind: String(object.kind),
        name: String(metadata?.name),
        object,
      });
    }
  }
  return manifests;
}

/** `apps/v1` + `Deployment` → `kubernetes-models/apps/v1/Deployment`; the core group is bare `v1`. */
function modelModule(manifest: Manifest): string {
  if (!/^([a-z0-9.-]+\/)?v[0-9]+((alpha|beta)[0-9]+)?$/.test(manifest.apiVersion) || !/^[A-Z][A-Za-z0-9]*$/.test(manifest.kind)) {
    throw new Error(`${manifest.file}: ${manifest.kind} ${manifest.name} has apiVersion ${JSON.stringify(manifest.apiVersion)}, kind ${JSON.stringify(manifest.kind)}: not a Kubernetes type`);
  }
  return `kubernetes-models/${manifest.apiVersion}/${manifest.kind}`;
}

interface Model {
  validate(): void;
}

/** The JSON-schema errors of one document, empty when it is valid. */
export async function schemaErrors(manifest: Manifest): Promise<string[]> {
  let module: Record<string, unknown>;
  try {
    module = (await import(modelModule(manifest))) as Record<string, unknown>;
  } catch (error) {
    return [`${manifest.kind} in ${manifest.apiVersion} is not a type Kubernetes 1.27 knows (${(error as Error).message.split("\n")[0]})`];
  }
  const ModelClass = module[manifest.kind] as (new (data: unknown) => Model) | undefined;
  if (ModelClass === undefined) return [`kubernetes-models has no ${manifest.kind} in ${manifest.apiVersion}`];
  try {
    new ModelClass(manifest.object).validate();
    return [];
  } catch (error) {
    return [(error as Error).message];
  }
}

/**
 * Fields the Kubernetes API does not have, and values of the wrong type, found by type-checking
 * each document as an object literal of its kubernetes-models interface. One compiler run for
 * all documents (about a second).
 */
export function strictErrors(manifests: readonly Manifest[]): string[] {
  const root = resolve(dirname(fileURLToPath(import.meta.url)), "..", "..");
  const virtual = join(root, "test", "support", "__kubernetes_manifests__.ts");
  const lines: string[] = [];
  const where: { line: number; manifest: Manifest }[] = [];
  manifests.forEach((manifest, index) => {
    lines.push(`import type { I${manifest.kind} as T${index} } from ${JSON.stringify(modelModule(manifest))};`);
  });
  manifests.forEach((manifest, index) => {
    where.push({ line: lines.length, manifest });
    lines.push(`export const m${index}: T${index} = ${JSON.stringify(manifest.object, null, 2)};`);
  });
  const source = lines.join("\n");
  const options: ts.CompilerOptions = {
    strict: true,
    noEmit: true,
    skipLibCheck: true,
    target: ts.ScriptTarget.ES2022,
    module: ts.ModuleKind.NodeNext,
    moduleResolution: ts.ModuleResolutionKind.NodeNext,
    types: [],
  };
  const host = ts.createCompilerHost(options);
  const getSourceFile = host.getSourceFile.bind(host);
  const fileExists = host.fileExists.bind(host);
  host.getSourceFile = (fileName, languageVersion, ...rest) =>
    fileName === virtual ? ts.createSourceFile(fileName, source, languageVersion, true) : getSourceFile(fileName, languageVersion, ...rest);
  host.fileExists = (fileName) => fileName === virtual || fileExists(fileName);
  const program = ts.createProgram([virtual], options, host);
  return ts.getPreEmitDiagnostics(program).map((diagnostic) => {
    const message = ts.flattenDiagnosticMessageText(diagnostic.messageText, "\n");
    if (diagnostic.file?.fileName !== virtual || diagnostic.start === undefined) return message;
    const { line } = diagnostic.file.getLineAndCharacterOfPosition(diagnostic.start);
    const owner = where.filter((entry) => entry.line <= line).at(-1)?.manifest;
    const text = diagnostic.file.text.split("\n")[line]?.trim() ?? "";
    return owner === undefined ? message : `${owner.file}: ${owner.kind} ${owner.name}, at ${text}: ${message}`;
  });
}

/**
 * The manifests as `podman kube play` (4.3) can run them here, changed only where podman or
 * this machine differ from a cluster:
 *  - names get `suffix`, so that two runs never share a pod or a volume;
 *  - images are the test's own, mapped by container name, and never pulled;
 *  - Services are left out (kube play has none); instead each named container port is
 *    published on a loopback port (hostIP/hostPort), which is how the test reaches the pod;
 *  - PersistentVolumeClaims are left out too, and their volumes are the caller's to create
 *    (`claims`): kube play refuses a claim whose volume exists, so it could never start the
 *    pod again on the same claims, which is the point of having them. In a cluster the claims
 *    outlive the pod just so.
 * The caller also stands in for the kubelet's fsGroup, which podman ignores
 * (containers/podman#17583): podman gives a new volume to whichever container mounts it first,
 * so a claim two containers share must be given the pod's fsGroup before the pod starts.
 * And for the init containers: podman 4.3's kube play fails to remove one that has finished
 * ("cannot remove container … as it is running") and does not start the pod, so they are left
 * out of the YAML and given to the caller (`initContainers`) to run as the kubelet would, one
 * after the other before the pod starts, with their image, command, user and mounts.
 */
export interface KubePlay {
  readonly yaml: string;
  readonly deployment: string;
  /** The claims' volumes to create before kube play; `shared`: mounted by more than one container. */
  readonly claims: readonly { name: string; shared: boolean }[];
  /** The volumes kube play makes of the ConfigMaps. */
  readonly configMapVolumes: readonly string[];
  /** Loopback port of each named container port. */
  readonly hostPorts: ReadonlyMap<string, number>;
  /** Each container's probes: port name and path. */
  readonly probes: readonly { container: string; kind: "liveness" | "readiness"; port: string; path: string }[];
  /** The pod's fsGroup. */
  readonly fsGroup: number | undefined;
  /** The init containers, in order: each mount's volume is a claim's (renamed) or a ConfigMap's. */
  readonly initContainers: readonly {
    readonly name: string;
    readonly image: string;
    readonly command: readonly string[];
    readonly user: string | undefined;
    readonly readOnlyRootFilesystem: boolean;
    readonly mounts: readonly { readonly volume: string; readonly mountPath: string }[];
  }[];
}

interface ContainerSpec {
  name: string;
  command?: string[];
  securityContext?: { runAsUser?: number; runAsGroup?: number; readOnlyRootFilesystem?: boolean };
  volumeMounts?: { name: string; mountPath: string }[];
  image?: string;
  imagePullPolicy?: string;
  ports?: { name?: string; containerPort: number; hostPort?: number; hostIP?: string }[];
  livenessProbe?: { httpGet?: { path?: string; port: string | number } };
  readinessProbe?: { httpGet?: { path?: string; port: string | number } };
}

interface PodTemplate {
  securityContext?: { fsGroup?: number };
  initContainers?: ContainerSpec[];
  containers: ContainerSpec[];
  volumes?: { name: string; persistentVolumeClaim?: { claimName: string }; configMap?: { name?: string } }[];
}

export async function forKubePlay(
  manifests: readonly Manifest[],
  options: { suffix: string; images: ReadonlyMap<string, string>; freePort: () => Promise<number> },
): Promise<KubePlay> {
  const documents = manifests
    .filter((manifest) => manifest.kind !== "Service" && manifest.kind !== "PersistentVolumeClaim")
    .map((manifest) => structuredClone(manifest.object));
  const claimNames = new Set(manifests.filter((manifest) => manifest.kind === "PersistentVolumeClaim").map((manifest) => manifest.name));
  const claims: { name: string; shared: boolean }[] = [];
  const configMapVolumes: string[] = [];
  const hostPorts = new Map<string, number>();
  const probes: KubePlay["probes"][number][] = [];
  const initContainers: KubePlay["initContainers"][number][] = [];
  let deployment: string | undefined;
  let fsGroup: number | undefined;
  for (const document of documents) {
    const metadata = document.metadata as { name: string };
    metadata.name += options.suffix;
    if (document.kind === "ConfigMap") configMapVolumes.push(metadata.name);
    if (document.kind !== "Deployment") continue;
    if (deployment !== undefined) throw new Error("contrib/kubernetes has more than one Deployment; the test runs one pod");
    deployment = metadata.name;
    const pod = (document.spec as { template: { spec: PodTemplate } }).template.spec;
    fsGroup = pod.securityContext?.fsGroup;
    for (const volume of pod.volumes ?? []) {
      if (volume.persistentVolumeClaim !== undefined) {
        if (!claimNames.has(volume.persistentVolumeClaim.claimName)) {
          throw new Error(`volume ${volume.name} claims ${volume.persistentVolumeClaim.claimName}, which contrib/kubernetes does not define`);
        }
        volume.persistentVolumeClaim.claimName += options.suffix;
        const mountedBy = [...(pod.initContainers ?? []), ...pod.containers].filter((container) => (container.volumeMounts ?? []).some((mount) => mount.name === volume.name));
        claims.push({ name: volume.persistentVolumeClaim.claimName, shared: mountedBy.length > 1 });
      }
      if (volume.configMap?.name !== undefined) volume.configMap.name += options.suffix;
    }
    const volumeNames = new Map(
      (pod.volumes ?? []).map((volume) => [volume.name, volume.persistentVolumeClaim?.claimName ?? volume.configMap?.name ?? volume.name]),
    );
    for (const container of pod.initContainers ?? []) {
      const image = options.images.get(container.name);
      if (image === undefined) throw new Error(`no test image for init container ${container.name}; map it in the test`);
      const { runAsUser, runAsGroup } = container.securityContext ?? {};
      initContainers.push({
        name: container.name,
        image,
        command: container.command ?? [],
        user: runAsUser === undefined ? undefined : `${runAsUser}:${runAsGroup ?? runAsUser}`,
        readOnlyRootFilesystem: container.securityContext?.readOnlyRootFilesystem === true,
        mounts: (container.volumeMounts ?? []).map((mount) => ({ volume: volumeNames.get(mount.name) ?? mount.name, mountPath: mount.mountPath })),
      });
    }
    delete pod.initContainers;
    for (const container of pod.containers) {
      const image = options.images.get(container.name);
      if (image === undefined) throw new Error(`no test image for container ${container.name}; map it in the test`);
      container.image = image;
      container.imagePullPolicy = "Never";
      for (const port of container.ports ?? []) {
        if (port.name === undefined) throw new Error(`container ${container.name}: name every port, the probes and Services refer to them by name`);
        if (hostPorts.has(port.name)) throw new Error(`two container ports are named ${port.name}`);
        port.hostIP = "127.0.0.1";
        port.hostPort = await options.freePort();
        hostPorts.set(port.name, port.hostPort);
      }
      for (const [kind, probe] of [["liveness", container.livenessProbe], ["readiness", container.readinessProbe]] as const) {
        if (probe?.httpGet !== undefined) probes.push({ container: container.name, kind, port: String(probe.httpGet.port), path: probe.httpGet.path ?? "/" });
      }
    }
  }
  if (deployment === undefined) throw new Error("contrib/kubernetes has no Deployment");
  return { yaml: documents.map((document) => dump(document)).join("---\n"), deployment, claims, configMapVolumes, hostPorts, probes, fsGroup, initContainers };
}
