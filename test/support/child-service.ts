import { spawn } from "node:child_process";
import { existsSync } from "node:fs";
import { createInterface } from "node:readline";
import { fileURLToPath } from "node:url";
import { childCaughtBug } from "./no-stray-errors.js";
import { killOnExit } from "./reaper.js";

/**
 * The built server (dist/main.js) as a child process: what crash, shutdown and
 * fuzz tests need, because only a separate process can be SIGKILLed, receive a
 * real SIGTERM, or crash without taking the test runner with it.
 * `make test` builds before running vitest; run `npm run build` before
 * `npx vitest run` by hand.
 */

export const MAIN_SCRIPT = fileURLToPath(new URL("../../dist/main.js", import.meta.url));

/** One pino line the child wrote to stdout. */
export interface LogLine {
  readonly level: number;
  readonly time: number;
  readonly msg: string;
  readonly [field: string]: unknown;
}

export interface Exit {
  readonly code: number | null;
  readonly signal: NodeJS.Signals | null;
}

export interface ChildService {
  readonly url: string;
  readonly pid: number;
  readonly directory: string;
  /** Every JSON line the child has written to stdout so far. */
  readonly logs: readonly LogLine[];
  /** Whatever the child wrote to stderr, and stdout lines that were not JSON. */
  readonly otherOutput: string;
  /** Settles when the process has exited (and its output is fully read). */
  readonly exited: Promise<Exit>;
  /** Milliseconds from spawn to the "listening" line. */
  readonly startMs: number;
  isRunning(): boolean;
  signal(signal: NodeJS.Signals): void;
  /** SIGTERM, then SIGKILL if it has not exited after `timeoutMs`. Safe to call twice. */
  stop(timeoutMs?: number): Promise<Exit>;
}

export interface ChildServiceOptions {
  readonly directory: string;
  /** Extra environment; BIND defaults to a free loopback port and LOGLEVEL to info. */
  readonly env?: Readonly<Record<string, string>>;
  readonly startTimeoutMs?: number;
  /** Working directory of the child; a relative path it wrongly wrote to would land here. */
  readonly cwd?: string;
  /** The child's open-files limit (ulimit -n), as a container or a unit may set it. */
  readonly openFilesLimit?: number;
}

/**
 * Preloaded into the child: when the test process dies without cleaning up
 * (killed by a timeout, say), the child's stdin pipe closes and it goes too.
 */
const ORPHAN_GUARD = "data:text/javascript,process.stdin.on('end',()=>process.kill(process.pid,'SIGKILL')).resume()";


/** Starts `node dist/main.js` on `directory` and resolves once it logs "listening". */
export async function startChildService(options: ChildServiceOptions): Promise<ChildService> {
  if (!existsSync(MAIN_SCRIPT)) {
    throw new Error(`${MAIN_SCRIPT} does not exist: run \`npm run build\` (make test does) before these tests`);
  }
  const startTimeoutMs = options.startTimeoutMs ?? 20_000;
  const started = Date.now();
  const node = [process.execPath, "--import", ORPHAN_GUARD, MAIN_SCRIPT];
  const [command, ...args] =
    options.openFilesLimit === undefined ? node : ["/bin/sh", "-c", `ulimit -n ${options.openFilesLimit} && exec "$0" "$@"`, ...node];
  const child = spawn(command!, args, {
    env: {
      ...process.env,
      FILE_SD_DIRECTORY: options.directory,
      BIND: "127.0.0.1:0",
      LOGLEVEL: "info",
      ...options.env,
    },
    stdio: ["pipe", "pipe", "pipe"],
    cwd: options.cwd,
  });
  killOnExit(child);

  const logs: LogLine[] = [];
  let otherOutput = "";
  child.stderr.setEncoding("utf8").on("data", (chunk: string) => (otherOutput += chunk));
  const stdoutClosed = new Promise<void>((resolve) => child.stdout.once("close", resolve));
  const exited = new Promise<Exit>((resolve) => {
    child.once("exit", (code, signal) => {
      // Lines written just before exit are still in the pipe; read them first.
      void stdoutClosed.then(() => resolve({ code, signal }));
    });
  });

  let onListening: (url: string) => void = () => undefined;
  const listening = new Promise<string>((resolve) => (onListening = resolve));
  createInterface({ input: child.stdout }).on("line", (line) => {
    let parsed: LogLine;
    try {
      parsed = JSON.parse(line) as LogLine;
    } catch {
      otherOutput += `${line}\n`;
      return;
    }
    logs.push(parsed);
    if (parsed.bug === true) childCaughtBug(line);
    if (parsed.msg === "listening" && typeof parsed.url === "string") onListening(parsed.url);
  });

  let timer: NodeJS.Timeout | undefined;
  const url = await Promise.race([
    listening,
    exited.then((exit) => {
      throw new Error(
        `dist/main.js exited before listening (code ${exit.code}, signal ${exit.signal}):\n` +
          logs.map((log) => JSON.stringify(log)).join("\n") + otherOutput,
      );
    }),
    new Promise<never>((_, reject) => {
      timer = setTimeout(() => reject(new Error(`dist/main.js did not log "listening" within ${startTimeoutMs} ms`)), startTimeoutMs);
    }),
  ]).catch(async (error: unknown) => {
    child.kill("SIGKILL");
    await exited;
    throw error;
  }).finally(() => clearTimeout(timer));
  const startMs = Date.now() - started;

  const pid = child.pid as number;
  const running = (): boolean => child.exitCode === null && child.signalCode === null;

  return {
    url,
    pid,
    directory: options.directory,
    logs,
    get otherOutput() {
      return otherOutput;
    },
    exited,
    startMs,
    isRunning: running,
    signal: (signal) => {
      if (running()) child.kill(signal);
    },
    stop: async (timeoutMs = 15_000) => {
      if (running()) {
        child.kill("SIGTERM");
        const force = setTimeout(() => child.kill("SIGKILL"), timeoutMs);
        try {
          return await exited;
        } finally {
          clearTimeout(force);
        }
      }
      return exited;
    },
  };
}
