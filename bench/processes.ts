import { spawn, type ChildProcess } from "node:child_process";
import { closeSync, openSync } from "node:fs";
import { readFile } from "node:fs/promises";
import { connect, createServer } from "node:net";
import { fileURLToPath } from "node:url";

/** Everything the benchmark measures runs in a child process of its own, baselines included. */

// BENCH_SERVICE points at another build (e.g. a copy of dist/ from before a change) for A/B runs.
const SERVICE_MAIN = process.env.BENCH_SERVICE ?? fileURLToPath(new URL("../../dist/main.js", import.meta.url));
const BARE_SERVERS = {
  node: fileURLToPath(new URL("./bare-server.js", import.meta.url)),
  koa: fileURLToPath(new URL("./bare-koa.js", import.meta.url)),
} as const;
const START_TIMEOUT_MS = 60_000;
const STOP_TIMEOUT_MS = 20_000;

const children = new Set<ChildProcess>();
// Whatever happens to the benchmark, it leaves no server behind.
process.once("exit", () => {
  for (const child of children) child.kill("SIGKILL");
});

export interface Memory {
  /** Resident set size now, MB. */
  readonly rssMb: number;
  /** The highest resident set size so far, MB. */
  readonly peakMb: number;
}

export interface ServiceProcess {
  readonly url: string;
  readonly pid: number;
  /** User + system CPU time the process has used so far. */
  cpuSeconds(): Promise<number>;
  /** From spawn to the first accepted TCP connection. */
  readonly startupMs: number;
  memory(): Promise<Memory>;
  /** SIGTERM, as a user would stop it; resolves once it exited 0. */
  stop(): Promise<void>;
  /** SIGKILL, a crash; resolves once it is gone. */
  kill(): Promise<void>;
}

export interface ServiceOptions {
  readonly directory: string;
  readonly logFile: string;
  readonly logLevel: string;
  /** e.g. `--cpu-prof`, given to node before the script. */
  readonly nodeArgs?: readonly string[];
  /** More environment, e.g. ETCD_ENDPOINTS. */
  readonly env?: Readonly<Record<string, string>>;
}

/** Starts the built service (dist/main.js) the way `npm start` does; stdout and stderr go to `logFile`. */
export async function startService(options: ServiceOptions): Promise<ServiceProcess> {
  const port = await freePort();
  const log = openSync(options.logFile, "a");
  const spawnedAt = performance.now();
  const child = spawn(process.execPath, [...(options.nodeArgs ?? []), SERVICE_MAIN], {
    env: {
      ...process.env,
      FILE_SD_DIRECTORY: options.directory,
      BIND: `127.0.0.1:${port}`,
      LOGLEVEL: options.logLevel,
      ...options.env,
    },
    stdio: ["ignore", log, log],
  });
  closeSync(log);
  track(child);
  try {
    await waitForPort(port, child);
  } catch (error) {
    child.kill("SIGKILL");
    const tail = (await readFile(options.logFile, "utf8").catch(() => "")).split("\n").slice(-5).join("\n");
    throw new Error(`the service did not start: ${(error as Error).message}\nlast log lines:\n${tail}`);
  }
  const startupMs = performance.now() - spawnedAt;
  const pid = child.pid as number;
  return {
    url: `http://127.0.0.1:${port}`,
    pid,
    startupMs,
    cpuSeconds: () => cpuSecondsOf(pid),
    memory: () => memoryOf(pid),
    stop: () => stop(child),
    kill: async () => {
      if (child.exitCode !== null || child.signalCode !== null) return;
      const exited = new Promise((resolve) => child.once("exit", resolve));
      child.kill("SIGKILL");
      await exited;
    },
  };
}

export interface BareServer {
  readonly url: string;
  cpuSeconds(): Promise<number>;
  stop(): Promise<void>;
}

/**
 * A baseline answering `documents[path]` as JSON, nothing else: bare node:http, or Koa +
 * @koa/router (the service's framework). `nodeArgs` as for the service (e.g. `--cpu-prof`).
 */
export async function startBareServer(
  documents: Readonly<Record<string, unknown>>,
  kind: keyof typeof BARE_SERVERS = "node",
  nodeArgs: readonly string[] = [],
): Promise<BareServer> {
  const child = spawn(process.execPath, [...nodeArgs, BARE_SERVERS[kind]], { stdio: ["ignore", "ignore", "inherit", "ipc"] });
  track(child);
  const url = await new Promise<string>((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`the bare ${kind} server did not start`)), START_TIMEOUT_MS);
    child.once("message", (message: { url: string }) => {
      clearTimeout(timer);
      resolve(message.url);
    });
    child.once("exit", (code) => reject(new Error(`the bare ${kind} server exited with ${code}`)));
    child.send({ documents });
  });
  const pid = child.pid as number;
  return { url, cpuSeconds: () => cpuSecondsOf(pid), stop: () => stop(child) };
}

function track(child: ChildProcess): void {
  children.add(child);
  child.once("exit", () => children.delete(child));
}

async function stop(child: ChildProcess): Promise<void> {
  if (child.exitCode !== null || child.signalCode !== null) return;
  const exited = new Promise<string>((resolve) =>
    child.once("exit", (code, signal) => resolve(signal === null ? `code ${code}` : `signal ${signal}`)),
  );
  child.kill("SIGTERM");
  const timer = setTimeout(() => child.kill("SIGKILL"), STOP_TIMEOUT_MS);
  const how = await exited;
  clearTimeout(timer);
  if (how !== "code 0") throw new Error(`pid ${child.pid} ended with ${how} after SIGTERM, not code 0`);
}

/** utime + stime from /proc/<pid>/stat, in clock ticks of 1/100 s (USER_HZ on Linux). */
async function cpuSecondsOf(pid: number): Promise<number> {
  const stat = await readFile(`/proc/${pid}/stat`, "utf8");
  // The command name (field 2) may hold spaces; count fields after its closing parenthesis.
  const fields = stat.slice(stat.lastIndexOf(")") + 2).split(" ");
  return (Number(fields[11]) + Number(fields[12])) / 100;
}

async function memoryOf(pid: number): Promise<Memory> {
  const status = await readFile(`/proc/${pid}/status`, "utf8");
  const kilobytes = (field: string): number => Number(new RegExp(`^${field}:\\s+(\\d+) kB`, "m").exec(status)?.[1]);
  return { rssMb: kilobytes("VmRSS") / 1024, peakMb: kilobytes("VmHWM") / 1024 };
}

function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const server = createServer();
    server.once("error", reject);
    server.listen(0, "127.0.0.1", () => {
      const { port } = server.address() as { port: number };
      server.close(() => resolve(port));
    });
  });
}

/** Polls until the port accepts a connection; fails when the child exits or after START_TIMEOUT_MS. */
async function waitForPort(port: number, child: ChildProcess): Promise<void> {
  const deadline = performance.now() + START_TIMEOUT_MS;
  for (;;) {
    if (child.exitCode !== null) throw new Error(`it exited with ${child.exitCode}`);
    if (await accepts(port)) return;
    if (performance.now() > deadline) throw new Error(`nothing listened on port ${port} within ${START_TIMEOUT_MS} ms`);
    await new Promise((resolve) => setTimeout(resolve, 2));
  }
}

function accepts(port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const socket = connect(port, "127.0.0.1");
    socket.once("connect", () => {
      socket.destroy();
      resolve(true);
    });
    socket.once("error", () => resolve(false));
  });
}
