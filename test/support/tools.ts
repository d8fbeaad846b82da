import { accessSync, constants, statSync } from "node:fs";
import { delimiter, dirname, join } from "node:path";

/** An outside program some tests run for real: `make test` needs it everywhere, there is no skip. */
export interface Tool {
  readonly name: string;
  /** Overrides the PATH lookup, for a binary installed elsewhere. */
  readonly envVar: string;
  readonly debianPackage: string;
}

export const PROMETHEUS: Tool = { name: "prometheus", envVar: "PROMETHEUS_BIN", debianPackage: "prometheus" };
export const PROMTOOL: Tool = { name: "promtool", envVar: "PROMTOOL_BIN", debianPackage: "prometheus" };
/** Debian names the binary after its package; upstream's release tarball calls it blackbox_exporter (set BLACKBOX_EXPORTER_BIN). */
export const BLACKBOX_EXPORTER: Tool = { name: "prometheus-blackbox-exporter", envVar: "BLACKBOX_EXPORTER_BIN", debianPackage: "prometheus-blackbox-exporter" };
/** Debian's chromium, driven by playwright-core: the page tests never download a browser. */
export const CHROMIUM: Tool = { name: "chromium", envVar: "CHROMIUM_BIN", debianPackage: "chromium" };
export const DOCKER_COMPOSE: Tool = { name: "docker-compose", envVar: "DOCKER_COMPOSE_BIN", debianPackage: "docker-compose" };
export const ETCD: Tool = { name: "etcd", envVar: "ETCD_BIN", debianPackage: "etcd-server" };
export const ETCDCTL: Tool = { name: "etcdctl", envVar: "ETCDCTL_BIN", debianPackage: "etcd-client" };
export const OPENSSL: Tool = { name: "openssl", envVar: "OPENSSL_BIN", debianPackage: "openssl" };
/** The container tests (test/containers/): Debian's podman with runc, and mmdebstrap for base images. */
export const PODMAN: Tool = { name: "podman", envVar: "PODMAN_BIN", debianPackage: "podman" };
/** crun, podman's other runtime, fails on these machines' hybrid cgroups. */
export const RUNC: Tool = { name: "runc", envVar: "RUNC_BIN", debianPackage: "runc" };
/** The pause process of the pods `podman kube play` starts. */
export const CATATONIT: Tool = { name: "catatonit", envVar: "CATATONIT_BIN", debianPackage: "catatonit" };
export const MMDEBSTRAP: Tool = { name: "mmdebstrap", envVar: "MMDEBSTRAP_BIN", debianPackage: "mmdebstrap" };
/** Container networks: without netavark (and iptables, which it drives) podman only says "No such file or directory". */
export const NETAVARK: Tool = { name: "netavark", envVar: "NETAVARK_BIN", debianPackage: "netavark" };
/** Names on a container network (Compose's `prometheus`, `file-sd`). */
export const AARDVARK_DNS: Tool = { name: "aardvark-dns", envVar: "AARDVARK_DNS_BIN", debianPackage: "aardvark-dns" };
export const IPTABLES: Tool = { name: "iptables", envVar: "IPTABLES_BIN", debianPackage: "iptables" };

/** Where Debian's podman keeps the helpers it runs, off PATH. */
const PODMAN_HELPER_DIRS = ["/usr/lib/podman", "/usr/libexec/podman"];

/**
 * The path of `tool`: `$<envVar>` when set, else the first one on PATH (`extraDirs` first).
 * Throws a message telling how to install it; a missing tool fails the test, never skips it,
 * so that CI cannot go green without having run it.
 */
export function findTool(tool: Tool, extraDirs: readonly string[] = []): string {
  const given = process.env[tool.envVar]?.trim();
  if (given) {
    if (!isExecutable(given)) {
      throw new Error(`${tool.envVar}=${given} is not an executable file; fix the path or unset ${tool.envVar} to look on PATH`);
    }
    return given;
  }
  const dirs = [...extraDirs, ...(process.env.PATH ?? "").split(delimiter).filter((dir) => dir !== "")];
  const found = dirs.map((dir) => join(dir, tool.name)).find(isExecutable);
  if (found !== undefined) return found;
  throw new Error(
    `${tool.name} not found on PATH: make test runs it for real. ` +
      `Install it with \`sudo apt-get install ${tool.debianPackage}\` (Debian/Ubuntu; make test does this when run as root), ` +
      `or set ${tool.envVar}=/path/to/${tool.name}.`,
  );
}

export function findPrometheus(): string {
  return findTool(PROMETHEUS);
}

/** promtool ships beside prometheus, so it is looked for there first. */
export function findPromtool(): string {
  const prometheus = process.env[PROMETHEUS.envVar]?.trim();
  return findTool(PROMTOOL, prometheus ? [dirname(prometheus)] : []);
}

export function findBlackboxExporter(): string {
  return findTool(BLACKBOX_EXPORTER);
}

export function findChromium(): string {
  return findTool(CHROMIUM);
}

export function findDockerCompose(): string {
  return findTool(DOCKER_COMPOSE);
}

export function findEtcd(): string {
  return findTool(ETCD);
}

/** etcdctl from a release tarball sits beside etcd, so it is looked for there first. */
export function findEtcdctl(): string {
  const etcd = process.env[ETCD.envVar]?.trim();
  return findTool(ETCDCTL, etcd ? [dirname(etcd)] : []);
}

export function findOpenssl(): string {
  return findTool(OPENSSL);
}

/**
 * Every program the container tests need, found up front: a missing netavark or runc would
 * otherwise surface as a podman error that does not name the package.
 */
export function findContainerTools(): { podman: string; mmdebstrap: string; dockerCompose: string } {
  findTool(RUNC);
  findTool(CATATONIT, PODMAN_HELPER_DIRS);
  findTool(NETAVARK, PODMAN_HELPER_DIRS);
  findTool(AARDVARK_DNS, PODMAN_HELPER_DIRS);
  findTool(IPTABLES, ["/usr/sbin", "/sbin"]);
  return { podman: findTool(PODMAN), mmdebstrap: findTool(MMDEBSTRAP), dockerCompose: findDockerCompose() };
}

function isExecutable(path: string): boolean {
  try {
    accessSync(path, constants.X_OK);
    return statSync(path).isFile();
  } catch {
    return false;
  }
}
