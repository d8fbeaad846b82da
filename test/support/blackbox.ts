import { spawn } from "node:child_process";
import { mkdtemp, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { freePort } from "./ports.js";
import { killOnExit } from "./reaper.js";
import { findBlackboxExporter } from "./tools.js";

/** A real blackbox_exporter (Debian's) on a free loopback port, with a configuration the test gives. */
export interface RunningBlackboxExporter {
  /** `127.0.0.1:<port>`: what Prometheus' job puts in `__address__`. */
  readonly address: string;
  readonly url: string;
  /** What it logged last, to explain a failure. */
  log(): string;
  /** SIGTERM (SIGKILL after 10 s), then removes its temporary directory. */
  close(): Promise<void>;
}

const LOG_LINES_KEPT = 200;
const PORT_ATTEMPTS = 3;

export async function startBlackboxExporter(configYaml: string, readyTimeoutMs = 20_000): Promise<RunningBlackboxExporter> {
  const binary = findBlackboxExporter();
  const directory = await mkdtemp(join(tmpdir(), "blackbox-test-"));
  const configFile = join(directory, "blackbox.yml");
  await writeFile(configFile, configYaml);
  try {
    // The free port can be taken between our look and its bind: try another then.
    for (let attempt = 1; ; attempt++) {
      const started = await launch(binary, configFile, await freePort(), readyTimeoutMs, directory);
      if (started !== "port taken") return started;
      if (attempt >= PORT_ATTEMPTS) throw new Error(`blackbox_exporter found its port taken ${PORT_ATTEMPTS} times`);
    }
  } catch (error) {
    await rm(directory, { recursive: true, force: true });
    throw error;
  }
}

async function launch(binary: string, configFile: string, port: number, readyTimeoutMs: number, directory: string): Promise<RunningBlackboxExporter | "port taken"> {
  const address = `127.0.0.1:${port}`;
  const url = `http://${address}`;
  const child = spawn(binary, [`--config.file=${configFile}`, `--web.listen-address=${address}`], { stdio: ["ignore", "pipe", "pipe"] });
  killOnExit(child);
  const lines: string[] = [];
  const keep = (chunk: Buffer): void => {
    lines.push(...chunk.toString("utf8").split("\n").filter((line) => line !== ""));
    lines.splice(0, Math.max(0, lines.length - LOG_LINES_KEPT));
  };
  child.stdout.on("data", keep);
  child.stderr.on("data", keep);
  const log = (): string => lines.join("\n");
  const exited = new Promise<void>((resolve) => {
    child.once("exit", () => resolve());
    child.once("error", () => resolve());
  });
  let hasExited = false;
  void exited.then(() => (hasExited = true));

  let closing: Promise<void> | undefined;
  const close = (): Promise<void> => {
    closing ??= (async () => {
      if (!hasExited) {
        child.kill("SIGTERM");
        const late = setTimeout(() => child.kill("SIGKILL"), 10_000);
        await exited;
        clearTimeout(late);
      }
      await rm(directory, { recursive: true, force: true });
    })();
    return closing;
  };

  const started = Date.now();
  for (;;) {
    if (hasExited) {
      if (/address already in use/.test(log())) return "port taken";
      throw new Error(`${binary} stopped before it was ready:\n${log()}`);
    }
    // Its own page, so the port is known to be this process' and not someone else's.
    const answer = await fetch(`${url}/-/healthy`).then(
      async (response) => ({ ok: response.ok, text: await response.text() }),
      () => undefined,
    );
    if (answer?.ok === true && /healthy/i.test(answer.text)) return { address, url, log, close };
    if (Date.now() - started > readyTimeoutMs) {
      await close();
      throw new Error(`${binary} did not answer ${url}/-/healthy within ${readyTimeoutMs} ms:\n${log()}`);
    }
    await new Promise((resolve) => setTimeout(resolve, 50));
  }
}
