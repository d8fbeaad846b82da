import { spawn, type ChildProcess } from "node:child_process";
import { randomBytes } from "node:crypto";
import { readFileSync } from "node:fs";
import { mkdtemp, rm, writeFile } from "node:fs/promises";
import { request as httpRequest, type IncomingMessage } from "node:http";
import { request as httpsRequest } from "node:https";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { freePort } from "./ports.js";
import { findEtcd, findEtcdctl, findOpenssl, findTool } from "./tools.js";
import { killOnExit } from "./reaper.js";

/**
 * A real etcd cluster of separate processes on free loopback ports, for the tests of the etcd
 * backend: members can be SIGKILLed and restarted to lose and regain the quorum, and the
 * cluster can require client certificates or users.
 */

export interface EtcdTls {
  readonly caFile: string;
  /** The client certificate and its key, signed by `caFile`: what the code under test presents. */
  readonly certFile: string;
  readonly keyFile: string;
  /** A second, unrelated CA, to test a wrong CA being refused. */
  readonly otherCaFile: string;
  readonly directory: string;
}

export interface EtcdMember {
  /** "m0", "m1", "m2" */
  readonly name: string;
  /** http(s)://127.0.0.1:<port> */
  readonly clientUrl: string;
  /** undefined while stopped */
  pid(): number | undefined;
  isRunning(): boolean;
  /** Default SIGKILL; resolves when the process has exited (SIGKILL follows any other signal after 10 s). */
  kill(signal?: NodeJS.Signals): Promise<void>;
  /**
   * Restarts a stopped member on the same data directory and ports, and resolves once its
   * /health says true. Health needs a quorum: when fewer than a majority of members run,
   * start the missing ones together (`Promise.all`), or each waits for the others in vain.
   */
  start(): Promise<void>;
}

export interface EtcdCluster {
  /** The members' client URLs. */
  readonly endpoints: readonly string[];
  readonly members: readonly EtcdMember[];
  readonly tls: EtcdTls | undefined;
  /**
   * etcdctl (API v3) against the cluster (or the given endpoints), with the TLS flags filled in;
   * `user` is "name:password". Resolves stdout, rejects with stderr on a non-zero exit; killed
   * after 20 s. Without `user`, no credentials are sent even after `enableAuth`.
   */
  etcdctl(args: readonly string[], options?: { endpoints?: readonly string[]; user?: string }): Promise<string>;
  /**
   * Enables auth: creates user root with `rootPassword`, and a user `user` with password
   * `password` granted readwrite on the key prefix `prefix` (role), then `auth enable`.
   * `compact` uses root from then on.
   */
  enableAuth(options: { rootPassword: string; user: string; password: string; prefix: string }): Promise<void>;
  /** Compacts to the current revision (etcdctl compaction --physical), returns that revision. */
  compact(): Promise<number>;
  /**
   * Resolves once every running member reports healthy, that is, serves with a leader; default
   * bound 30 s. After the leader is killed a write waits out its whole timeout rather than failing
   * fast until a new one is elected (about 1-2 s), so a test that needs a leader waits here first.
   */
  waitHealthy(timeoutMs?: number): Promise<void>;
  /** SIGKILLs every member still running, waits, removes the temporary data directories. Safe to call twice. */
  stop(): Promise<void>;
  /** The last lines each member wrote, to explain a failure. */
  log(): string;
}

export interface EtcdClusterOptions {
  /** Default 3. */
  readonly size?: number;
  /** Client TLS with client certificates required; peers stay plain http on loopback. */
  readonly tls?: boolean;
  /** Until every member reports healthy; default 30 s. */
  readonly startTimeoutMs?: number;
  /** More flags for every member (`--max-txn-ops=16`). */
  readonly flags?: readonly string[];
}

const LOG_LINES_KEPT = 200;
/**
 * Short enough that a new leader is elected within a couple of seconds of a SIGKILL, long
 * enough that a loaded 2-core machine does not trigger elections by itself.
 */
const HEARTBEAT_INTERVAL_MS = 100;
const ELECTION_TIMEOUT_MS = 1_000;
const START_TIMEOUT_MS = 30_000;
const KILL_TIMEOUT_MS = 10_000;
const COMMAND_TIMEOUT_MS = 20_000;
const POLL_MS = 100;
const PORT_ATTEMPTS = 3;

export async function startEtcdCluster(options: EtcdClusterOptions = {}): Promise<EtcdCluster> {
  const programs = { etcd: findEtcd(), etcdctl: findEtcdctl() };
  const size = options.size ?? 3;
  if (!Number.isInteger(size) || size < 1) throw new Error(`an etcd cluster needs at least one member, not size ${size}`);
  const tls = options.tls ? await makeEtcdTls() : undefined;
  try {
    // A free port can be taken between our probe and etcd's bind; start over on new ones then.
    for (let attempt = 1; ; attempt++) {
      try {
        return await launchCluster(programs, size, tls, options.startTimeoutMs ?? START_TIMEOUT_MS, options.flags ?? []);
      } catch (error) {
        if (!(error instanceof PortTaken) || attempt >= PORT_ATTEMPTS) throw error;
      }
    }
  } catch (error) {
    if (tls) await rm(tls.directory, { recursive: true, force: true });
    throw error;
  }
}

class PortTaken extends Error {}

interface Programs {
  readonly etcd: string;
  readonly etcdctl: string;
}

async function launchCluster(programs: Programs, size: number, tls: EtcdTls | undefined, startTimeoutMs: number, flags: readonly string[]): Promise<EtcdCluster> {
  const directory = await mkdtemp(join(tmpdir(), "etcd-test-"));
  const ports = await distinctFreePorts(2 * size);
  const scheme = tls ? "https" : "http";
  const plans = Array.from({ length: size }, (_, index): MemberPlan => ({
    name: `m${index}`,
    clientUrl: `${scheme}://127.0.0.1:${ports[2 * index]}`,
    peerUrl: `http://127.0.0.1:${ports[2 * index + 1]}`,
    dataDir: join(directory, `m${index}`),
  }));
  const shared: SharedPlan = {
    etcd: programs.etcd,
    initialCluster: plans.map((plan) => `${plan.name}=${plan.peerUrl}`).join(","),
    token: `etcd-test-${randomBytes(8).toString("hex")}`,
    tls,
    credentials: tls && readCredentials(tls),
    flags,
  };
  const members = plans.map((plan) => new Member(plan, shared));
  const log = (): string => members.map((member) => `--- ${member.name} (${member.clientUrl}):\n${member.log()}`).join("\n");
  const killAll = (): Promise<unknown> => Promise.all(members.map((member) => member.kill("SIGKILL")));

  // All at once: the first election needs a majority of them up.
  for (const member of members) member.launch("new");
  const deadline = Date.now() + startTimeoutMs;
  try {
    await Promise.all(members.map((member) => member.waitHealthy(deadline)));
  } catch (error) {
    await killAll();
    await rm(directory, { recursive: true, force: true });
    if (/address already in use/.test(log())) throw new PortTaken(`a port was taken:\n${log()}`);
    throw new Error(`etcd cluster did not start: ${(error as Error).message}\nThe members' last output:\n${log()}`);
  }

  const endpoints = members.map((member) => member.clientUrl);
  let root: string | undefined;
  const etcdctl: EtcdCluster["etcdctl"] = (args, options = {}) =>
    runProgram(programs.etcdctl, [...etcdctlFlags(options.endpoints ?? endpoints, tls, options.user), ...args], {
      env: { ETCDCTL_API: "3" },
      dropEnvPrefix: "ETCDCTL_",
    });

  let stopping: Promise<void> | undefined;
  return {
    endpoints,
    members,
    tls,
    etcdctl,
    log,
    enableAuth: async ({ rootPassword, user, password, prefix }) => {
      const role = `${user}-readwrite`;
      await etcdctl(["user", "add", "root", `--new-user-password=${rootPassword}`]);
      await etcdctl(["user", "grant-role", "root", "root"]);
      await etcdctl(["role", "add", role]);
      await etcdctl(["role", "grant-permission", role, "readwrite", prefix, "--prefix=true"]);
      await etcdctl(["user", "add", user, `--new-user-password=${password}`]);
      await etcdctl(["user", "grant-role", user, role]);
      await etcdctl(["auth", "enable"]);
      root = `root:${rootPassword}`;
    },
    compact: async () => {
      // A linearizable read answers with the cluster's current revision in its header.
      const read = JSON.parse(await etcdctl(["get", "compact-revision-probe", "-w", "json"], { user: root })) as {
        header: { revision: number };
      };
      const revision = read.header.revision;
      try {
        await etcdctl(["compaction", "--physical", String(revision)], { user: root });
      } catch (error) {
        // Compacted there already, by an earlier call with no write since: the same outcome.
        if (!/required revision has been compacted/.test((error as Error).message)) throw error;
      }
      return revision;
    },
    waitHealthy: async (timeoutMs = START_TIMEOUT_MS) => {
      const deadline = Date.now() + timeoutMs;
      const running = members.filter((member) => member.isRunning());
      await Promise.all(running.map((member) => member.waitHealthy(deadline))).catch((error: unknown) => {
        throw new Error(`${(error as Error).message}\nThe members' last output:\n${log()}`);
      });
    },
    stop: () => {
      stopping ??= (async () => {
        await killAll();
        await rm(directory, { recursive: true, force: true });
        if (tls) await rm(tls.directory, { recursive: true, force: true });
      })();
      return stopping;
    },
  };
}

function etcdctlFlags(endpoints: readonly string[], tls: EtcdTls | undefined, user: string | undefined): string[] {
  return [
    `--endpoints=${endpoints.join(",")}`,
    // Defaults a caller's own --command-timeout, given later, overrides.
    "--dial-timeout=2s",
    "--command-timeout=5s",
    ...(tls ? [`--cacert=${tls.caFile}`, `--cert=${tls.certFile}`, `--key=${tls.keyFile}`] : []),
    ...(user === undefined ? [] : [`--user=${user}`]),
  ];
}

interface MemberPlan {
  readonly name: string;
  readonly clientUrl: string;
  readonly peerUrl: string;
  readonly dataDir: string;
}

interface SharedPlan {
  readonly etcd: string;
  readonly initialCluster: string;
  readonly token: string;
  readonly tls: EtcdTls | undefined;
  readonly credentials: Credentials | undefined;
  readonly flags: readonly string[];
}

/** One etcd process at a time on a fixed data directory and ports; its output outlives restarts. */
class Member implements EtcdMember {
  readonly name: string;
  readonly clientUrl: string;
  #child: ChildProcess | undefined;
  #exited: Promise<void> = Promise.resolve();
  readonly #lines: string[] = [];

  constructor(
    private readonly plan: MemberPlan,
    private readonly shared: SharedPlan,
  ) {
    this.name = plan.name;
    this.clientUrl = plan.clientUrl;
  }

  pid(): number | undefined {
    return this.isRunning() ? this.#child?.pid : undefined;
  }

  isRunning(): boolean {
    const child = this.#child;
    return child !== undefined && child.pid !== undefined && child.exitCode === null && child.signalCode === null;
  }

  log(): string {
    return this.#lines.join("\n");
  }

  async kill(signal: NodeJS.Signals = "SIGKILL"): Promise<void> {
    const child = this.#child;
    if (child === undefined || !this.isRunning()) return this.#exited;
    child.kill(signal);
    const force = signal === "SIGKILL" ? undefined : setTimeout(() => child.kill("SIGKILL"), KILL_TIMEOUT_MS);
    try {
      await this.#exited;
    } finally {
      clearTimeout(force);
    }
  }

  async start(): Promise<void> {
    if (this.isRunning()) throw new Error(`etcd member ${this.name} is already running (pid ${this.pid()})`);
    this.launch("existing");
    await this.waitHealthy(Date.now() + START_TIMEOUT_MS).catch(async (error: unknown) => {
      await this.kill("SIGKILL");
      throw new Error(`${(error as Error).message}\nIts last output:\n${this.log()}`);
    });
  }

  launch(state: "new" | "existing"): void {
    const { plan, shared } = this;
    const args = [
      `--name=${plan.name}`,
      `--data-dir=${plan.dataDir}`,
      `--listen-client-urls=${plan.clientUrl}`,
      `--advertise-client-urls=${plan.clientUrl}`,
      `--listen-peer-urls=${plan.peerUrl}`,
      `--initial-advertise-peer-urls=${plan.peerUrl}`,
      `--initial-cluster=${shared.initialCluster}`,
      `--initial-cluster-token=${shared.token}`,
      `--initial-cluster-state=${state}`,
      `--heartbeat-interval=${HEARTBEAT_INTERVAL_MS}`,
      `--election-timeout=${ELECTION_TIMEOUT_MS}`,
      "--logger=zap",
      "--log-outputs=stderr",
      ...shared.flags,
      ...(shared.tls
        ? [
            "--client-cert-auth",
            `--trusted-ca-file=${shared.tls.caFile}`,
            `--cert-file=${join(shared.tls.directory, "server.pem")}`,
            `--key-file=${join(shared.tls.directory, "server.key")}`,
          ]
        : []),
    ];
    const [command, commandArgs] = withParentDeathSignal(shared.etcd, args);
    // etcd reads every ETCD_* variable as a flag: ETCD_BIN (ours) or a developer's own must not
    // reach it, but ETCD_UNSUPPORTED_ARCH must, for etcd to start at all on arm64.
    const env = { ...withoutPrefix(process.env, "ETCD_"), ETCD_UNSUPPORTED_ARCH: process.env.ETCD_UNSUPPORTED_ARCH };
    const child = spawn(command, commandArgs, { stdio: ["ignore", "pipe", "pipe"], env });
    this.#child = child;
    killOnExit(child);
    const keep = (chunk: Buffer): void => {
      this.#lines.push(...chunk.toString("utf8").split("\n").filter((line) => line !== ""));
      this.#lines.splice(0, Math.max(0, this.#lines.length - LOG_LINES_KEPT));
    };
    child.stdout?.on("data", keep);
    child.stderr?.on("data", keep);
    this.#exited = new Promise<void>((resolve) => {
      const exited = (how: string): void => {
        this.#lines.push(`--- ${this.name} (pid ${child.pid}) ${how}`);
        resolve();
      };
      child.once("exit", (code, signal) => exited(signal ? `killed by ${signal}` : `exited with code ${code}`));
      child.once("error", (error) => exited(`could not run ${shared.etcd}: ${error.message}`));
    });
  }

  /** Polls /health until it says true; throws when the process exits or `deadline` passes. */
  async waitHealthy(deadline: number): Promise<void> {
    const started = Date.now();
    for (;;) {
      if (!this.isRunning()) throw new Error(`etcd member ${this.name} exited before it was healthy`);
      if (await isHealthy(this.clientUrl, this.shared.credentials)) return;
      if (Date.now() > deadline) {
        throw new Error(
          `etcd member ${this.name} at ${this.clientUrl} was not healthy within ${Date.now() - started} ms ` +
            "(health needs a quorum: restart stopped members together)",
        );
      }
      await sleep(POLL_MS);
    }
  }
}

interface Credentials {
  readonly ca: Buffer;
  readonly cert: Buffer;
  readonly key: Buffer;
}

function readCredentials(tls: EtcdTls): Credentials {
  return { ca: readFileSync(tls.caFile), cert: readFileSync(tls.certFile), key: readFileSync(tls.keyFile) };
}

/** etcd's /health is true once the member sees a leader and a quorum read goes through. */
function isHealthy(clientUrl: string, credentials: Credentials | undefined): Promise<boolean> {
  return new Promise((resolve) => {
    const url = new URL("/health", clientUrl);
    const options = { agent: false, timeout: 2_000, ...credentials };
    const answered = (response: IncomingMessage): void => {
      let body = "";
      response.setEncoding("utf8").on("data", (chunk: string) => (body += chunk));
      response.on("end", () => {
        try {
          resolve(response.statusCode === 200 && (JSON.parse(body) as { health?: unknown }).health === "true");
        } catch {
          resolve(false);
        }
      });
      response.on("error", () => resolve(false));
    };
    const request = url.protocol === "https:" ? httpsRequest(url, options, answered) : httpRequest(url, options, answered);
    request.on("timeout", () => request.destroy(new Error("timed out")));
    request.on("error", () => resolve(false));
    request.end();
  });
}

/** Makes a CA, a server certificate for 127.0.0.1/localhost (SAN) and a client certificate, plus an unrelated second CA, with openssl, in a new temp dir. */
export async function makeEtcdTls(): Promise<EtcdTls> {
  const openssl = findOpenssl();
  const directory = await mkdtemp(join(tmpdir(), "etcd-tls-"));
  const file = (name: string): string => join(directory, name);
  // P-256 keys: generated in milliseconds, and Go's TLS takes them.
  const newKey = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes"];
  const makeCa = (name: string): Promise<string> =>
    runProgram(openssl, [
      "req", "-x509", ...newKey, "-days", "7", "-subj", `/CN=etcd-test-${name}`,
      "-keyout", file(`${name}.key`), "-out", file(`${name}.pem`),
      "-addext", "basicConstraints=critical,CA:TRUE", "-addext", "keyUsage=critical,keyCertSign,cRLSign",
    ]);
  const makeSigned = async (name: string, commonName: string, extensions: string): Promise<void> => {
    await writeFile(file(`${name}.ext`), extensions);
    await runProgram(openssl, ["req", "-new", ...newKey, "-subj", `/CN=${commonName}`, "-keyout", file(`${name}.key`), "-out", file(`${name}.csr`)]);
    await runProgram(openssl, [
      "x509", "-req", "-in", file(`${name}.csr`), "-CA", file("ca.pem"), "-CAkey", file("ca.key"),
      "-set_serial", `0x${randomBytes(8).toString("hex")}`, "-days", "7", "-extfile", file(`${name}.ext`), "-out", file(`${name}.pem`),
    ]);
  };
  try {
    await Promise.all([makeCa("ca"), makeCa("other-ca")]);
    await Promise.all([
      // etcd's gRPC gateway dials its own port with the server certificate, hence clientAuth too.
      makeSigned("server", "127.0.0.1", "subjectAltName=IP:127.0.0.1,DNS:localhost\nkeyUsage=critical,digitalSignature\nextendedKeyUsage=serverAuth,clientAuth\n"),
      // Not "root": with auth on, etcd takes a client certificate's CN as the user name.
      makeSigned("client", "etcd-test-client", "keyUsage=critical,digitalSignature\nextendedKeyUsage=clientAuth\n"),
    ]);
  } catch (error) {
    await rm(directory, { recursive: true, force: true });
    throw error;
  }
  return { caFile: file("ca.pem"), certFile: file("client.pem"), keyFile: file("client.key"), otherCaFile: file("other-ca.pem"), directory };
}

/** Runs `program` to its end; resolves stdout, rejects with stderr on a non-zero exit or after `timeoutMs`. */
function runProgram(
  program: string,
  args: readonly string[],
  { env = {}, dropEnvPrefix, timeoutMs = COMMAND_TIMEOUT_MS }: { env?: Record<string, string>; dropEnvPrefix?: string; timeoutMs?: number } = {},
): Promise<string> {
  return new Promise((resolve, reject) => {
    const base = dropEnvPrefix === undefined ? process.env : withoutPrefix(process.env, dropEnvPrefix);
    const child = spawn(program, args, { stdio: ["ignore", "pipe", "pipe"], env: { ...base, ...env } });
    let stdout = "";
    let stderr = "";
    child.stdout.setEncoding("utf8").on("data", (chunk: string) => (stdout += chunk));
    child.stderr.setEncoding("utf8").on("data", (chunk: string) => (stderr += chunk));
    // Test passwords, but an error message is no place for passwords of any kind.
    const command = `${program} ${args.join(" ")}`.replace(/(--user=[^:\s]*:|--new-user-password=)\S+/g, "$1***");
    let timedOut = false;
    const timer = setTimeout(() => {
      timedOut = true;
      child.kill("SIGKILL");
    }, timeoutMs);
    child.once("error", (error) => {
      clearTimeout(timer);
      reject(new Error(`could not run ${command}: ${error.message}`));
    });
    child.once("close", (code, signal) => {
      clearTimeout(timer);
      if (code === 0) resolve(stdout);
      else if (timedOut) reject(new Error(`${command} did not finish within ${timeoutMs} ms: ${stderr}`));
      else reject(new Error(`${command} failed (${signal ? `signal ${signal}` : `exit code ${code}`}): ${stderr}`));
    });
  });
}

function withoutPrefix(env: NodeJS.ProcessEnv, prefix: string): NodeJS.ProcessEnv {
  return Object.fromEntries(Object.entries(env).filter(([name]) => !name.startsWith(prefix)));
}

async function distinctFreePorts(count: number): Promise<number[]> {
  const ports = new Set<number>();
  while (ports.size < count) ports.add(await freePort());
  return [...ports];
}

const SETPRIV = { name: "setpriv", envVar: "SETPRIV_BIN", debianPackage: "util-linux" };

/**
 * etcd is a Go program that cannot be taught child-service's stdin guard, so when util-linux'
 * setpriv is there the kernel SIGKILLs each member as soon as the test process dies, however
 * it dies; the exit hook below covers an ordinary exit. setpriv execs etcd: the PID stays etcd's.
 */
function withParentDeathSignal(program: string, args: readonly string[]): [string, string[]] {
  let setpriv: string;
  try {
    setpriv = findTool(SETPRIV);
  } catch {
    return [program, [...args]];
  }
  return [setpriv, ["--pdeathsig", "KILL", "--", program, ...args]];
}


function sleep(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms));
}

/** The member that leads now, as the members themselves say (etcdctl endpoint status). */
export async function leaderOf(cluster: EtcdCluster): Promise<EtcdCluster["members"][number]> {
  const status = JSON.parse(await cluster.etcdctl(["endpoint", "status", "-w", "json"])) as {
    Endpoint: string;
    Status: { header: { member_id: number }; leader: number };
  }[];
  const leader = status.find((entry) => entry.Status.header.member_id === entry.Status.leader);
  const member = cluster.members.find((candidate) => candidate.clientUrl === leader?.Endpoint);
  if (member === undefined) throw new Error(`no leader in ${JSON.stringify(status)}`);
  return member;
}
