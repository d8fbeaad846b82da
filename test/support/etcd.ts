import { execFile, spawn, type ChildProcess } from "node:child_process";
import { randomUUID } from "node:crypto";
import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { freePort } from "./ports.js";
import { findTool, type Tool } from "./tools.js";

export const ETCD: Tool = { name: "etcd", envVar: "ETCD_BIN", debianPackage: "etcd-server" };
export const ETCDCTL: Tool = { name: "etcdctl", envVar: "ETCDCTL_BIN", debianPackage: "etcd-client" };

/** A CA, a server certificate for 127.0.0.1, a client certificate, and an unrelated CA. */
export interface EtcdTls {
  readonly directory: string;
  readonly caFile: string;
  readonly certFile: string;
  readonly keyFile: string;
  readonly serverCertFile: string;
  readonly serverKeyFile: string;
  readonly otherCaFile: string;
}

export interface EtcdMember {
  readonly name: string;
  readonly clientUrl: string;
  pid(): number | undefined;
  isRunning(): boolean;
  /** Default SIGKILL; resolves once the process has exited. */
  kill(signal?: NodeJS.Signals): Promise<void>;
  /** Starts a stopped member again with its data directory and ports. */
  start(): Promise<void>;
  /** The last lines it logged, to explain a failure. */
  log(): string;
}

export interface EtcdCluster {
  readonly endpoints: readonly string[];
  readonly members: readonly EtcdMember[];
  readonly tls: EtcdTls | undefined;
  /** etcdctl (API v3) with the cluster's endpoints and TLS flags; rejects with its stderr. */
  etcdctl(args: readonly string[], options?: { endpoints?: readonly string[]; user?: string; timeoutMs?: number }): Promise<string>;
  /** root with `rootPassword`, and `user` with readwrite on `prefix`, then `auth enable`. */
  enableAuth(options: { rootPassword: string; user: string; password: string; prefix: string }): Promise<void>;
  /** Compacts to the current revision and returns it. */
  compact(): Promise<number>;
  /** SIGKILLs every member and removes the data directories. */
  stop(): Promise<void>;
}

export interface EtcdClusterOptions {
  readonly size?: number;
  /** Client URLs over TLS, with client certificates required. */
  readonly tls?: boolean;
  readonly startTimeoutMs?: number;
}

const live = new Set<ChildProcess>();
let exitHookInstalled = false;
const LOG_LINES_KEPT = 100;

/**
 * A real etcd cluster (Debian's etcd-server) on free loopback ports with
 * temporary data directories. Short heartbeat and election timeouts, so that
 * losing a member costs a test half a second, not several.
 */
export async function startEtcdCluster(options: EtcdClusterOptions = {}): Promise<EtcdCluster> {
  const etcd = findTool(ETCD);
  const etcdctlBinary = findTool(ETCDCTL);
  if (!exitHookInstalled) {
    exitHookInstalled = true;
    process.once("exit", () => {
      for (const child of live) child.kill("SIGKILL");
    });
  }
  const size = options.size ?? 3;
  const directory = await mkdtemp(join(tmpdir(), "etcd-test-"));
  const tls = options.tls === true ? await makeEtcdTls() : undefined;
  const scheme = tls === undefined ? "http" : "https";
  const specs = await Promise.all(
    Array.from({ length: size }, async (_, i) => ({
      name: `m${i}`,
      clientUrl: `${scheme}://127.0.0.1:${await freePort()}`,
      peerUrl: `http://127.0.0.1:${await freePort()}`,
      dataDir: join(directory, `m${i}`),
    })),
  );
  const initialCluster = specs.map((spec) => `${spec.name}=${spec.peerUrl}`).join(",");
  const token = `test-${randomUUID()}`;
  const endpoints = specs.map((spec) => spec.clientUrl);

  const tlsFlags = (): string[] =>
    tls === undefined ? [] : ["--cacert", tls.caFile, "--cert", tls.certFile, "--key", tls.keyFile];
  const etcdctl: EtcdCluster["etcdctl"] = (args, callOptions = {}) =>
    new Promise((resolve, reject) => {
      const flags = [
        "--endpoints",
        (callOptions.endpoints ?? endpoints).join(","),
        "--command-timeout",
        `${Math.round((callOptions.timeoutMs ?? 5000) / 1000)}s`,
        "--dial-timeout",
        "2s",
        ...tlsFlags(),
        ...(callOptions.user === undefined ? [] : ["--user", callOptions.user]),
      ];
      execFile(etcdctlBinary, [...flags, ...args], { env: { ...process.env, ETCDCTL_API: "3" }, timeout: (callOptions.timeoutMs ?? 5000) + 5000 }, (error, stdout, stderr) => {
        if (error !== null) reject(new Error(`etcdctl ${args.join(" ")} failed: ${stderr.trim() || error.message}`));
        else resolve(stdout);
      });
    });

  const members = specs.map((spec) => {
    let child: ChildProcess | undefined;
    let exited: Promise<void> = Promise.resolve();
    let lines: string[] = [];
    let state: "new" | "existing" = "new";
    const launch = (): void => {
      const clientTls = tls === undefined ? [] : ["--client-cert-auth", "--trusted-ca-file", tls.caFile, "--cert-file", tls.serverCertFile, "--key-file", tls.serverKeyFile];
      const process_ = spawn(
        etcd,
        [
          "--name", spec.name,
          "--data-dir", spec.dataDir,
          "--listen-client-urls", spec.clientUrl,
          "--advertise-client-urls", spec.clientUrl,
          "--listen-peer-urls", spec.peerUrl,
          "--initial-advertise-peer-urls", spec.peerUrl,
          "--initial-cluster", initialCluster,
          "--initial-cluster-token", token,
          "--initial-cluster-state", state,
          "--heartbeat-interval", "50",
          "--election-timeout", "500",
          "--logger", "zap",
          "--log-outputs", "stderr",
          ...clientTls,
        ],
        { stdio: ["ignore", "ignore", "pipe"] },
      );
      state = "existing";
      child = process_;
      live.add(process_);
      lines = [];
      process_.stderr?.setEncoding("utf8").on("data", (chunk: string) => {
        lines.push(...chunk.split("\n").filter((line) => line !== ""));
        if (lines.length > LOG_LINES_KEPT) lines = lines.slice(-LOG_LINES_KEPT);
      });
      exited = new Promise((resolve) =>
        process_.once("exit", () => {
          live.delete(process_);
          resolve();
        }),
      );
    };
    const running = (): boolean => child !== undefined && child.exitCode === null && child.signalCode === null;
    const member: EtcdMember & { launch(): void } = {
      name: spec.name,
      clientUrl: spec.clientUrl,
      pid: () => (running() ? child?.pid : undefined),
      isRunning: running,
      kill: async (signal = "SIGKILL") => {
        if (running()) child?.kill(signal);
        await exited;
      },
      start: async () => {
        if (running()) return;
        launch();
        await waitFor(
          async () => {
            await etcdctl(["endpoint", "health"], { endpoints: [spec.clientUrl], timeoutMs: 1000 });
            return true;
          },
          options.startTimeoutMs ?? 30_000,
          () => `etcd member ${spec.name} did not become healthy:\n${lines.join("\n")}`,
        );
      },
      log: () => lines.join("\n"),
      launch,
    };
    return member;
  });

  const stop = async (): Promise<void> => {
    await Promise.all(members.map((member) => member.kill("SIGKILL")));
    await rm(directory, { recursive: true, force: true });
    if (tls !== undefined) await rm(tls.directory, { recursive: true, force: true });
  };

  try {
    for (const member of members) member.launch();
    await waitFor(
      async () => {
        await etcdctl(["endpoint", "health"], { timeoutMs: 1000 });
        return true;
      },
      options.startTimeoutMs ?? 30_000,
      () => `etcd cluster did not become healthy:\n${members.map((member) => `${member.name}:\n${member.log()}`).join("\n")}`,
    );
  } catch (error) {
    await stop();
    throw error;
  }

  return {
    endpoints,
    members,
    tls,
    etcdctl,
    enableAuth: async ({ rootPassword, user, password, prefix }) => {
      await etcdctl(["user", "add", `root:${rootPassword}`]);
      await etcdctl(["role", "add", "registry"]);
      await etcdctl(["role", "grant-permission", "registry", "--prefix=true", "readwrite", prefix]);
      await etcdctl(["user", "add", `${user}:${password}`]);
      await etcdctl(["user", "grant-role", user, "registry"]);
      await etcdctl(["auth", "enable"]);
    },
    compact: async () => {
      const status = JSON.parse(await etcdctl(["endpoint", "status", "-w", "json"], { endpoints: [endpoints[0]!] })) as { Status: { header: { revision: number } } }[];
      const revision = status[0]!.Status.header.revision;
      await etcdctl(["compaction", "--physical", String(revision)]);
      return revision;
    },
    stop,
  };
}

/** openssl: a CA, a server certificate for 127.0.0.1 and localhost, a client certificate, and a second CA. */
export async function makeEtcdTls(): Promise<EtcdTls> {
  const openssl = findTool({ name: "openssl", envVar: "OPENSSL_BIN", debianPackage: "openssl" });
  const directory = await mkdtemp(join(tmpdir(), "etcd-tls-"));
  const path = (name: string): string => join(directory, name);
  const run = (args: string[]): Promise<void> =>
    new Promise((resolve, reject) =>
      execFile(openssl, args, { cwd: directory }, (error, _stdout, stderr) => (error === null ? resolve() : reject(new Error(`openssl ${args[0]}: ${stderr}`)))),
    );
  const ca = async (name: string): Promise<void> =>
    run(["req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2", "-subj", `/CN=${name}`, "-keyout", path(`${name}.key`), "-out", path(`${name}.crt`)]);
  await ca("ca");
  await ca("other-ca");
  const signed = async (name: string, extensions: string): Promise<void> => {
    await run(["req", "-newkey", "rsa:2048", "-nodes", "-subj", `/CN=${name}`, "-keyout", path(`${name}.key`), "-out", path(`${name}.csr`)]);
    const { writeFile } = await import("node:fs/promises");
    await writeFile(path(`${name}.ext`), extensions);
    await run(["x509", "-req", "-in", path(`${name}.csr`), "-CA", path("ca.crt"), "-CAkey", path("ca.key"), "-CAcreateserial", "-days", "2", "-extfile", path(`${name}.ext`), "-out", path(`${name}.crt`)]);
  };
  await signed("server", "subjectAltName=IP:127.0.0.1,DNS:localhost\nextendedKeyUsage=serverAuth,clientAuth\n");
  await signed("client", "extendedKeyUsage=clientAuth\n");
  return {
    directory,
    caFile: path("ca.crt"),
    certFile: path("client.crt"),
    keyFile: path("client.key"),
    serverCertFile: path("server.crt"),
    serverKeyFile: path("server.key"),
    otherCaFile: path("other-ca.crt"),
  };
}

async function waitFor(check: () => Promise<boolean>, timeoutMs: number, message: () => string): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    try {
      if (await check()) return;
    } catch {
      // not yet
    }
    if (Date.now() > deadline) throw new Error(message());
    await new Promise((resolve) => setTimeout(resolve, 100));
  }
}
