import { spawn } from "node:child_process";
import { copyFile, readFile } from "node:fs/promises";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { eventually, makeTempDir, removeDir } from "./helpers.js";
import { shellBlocksUnder, shellCommands } from "./support/markdown.js";
import { freePort } from "./support/ports.js";
import { killOnExit } from "./support/reaper.js";

/**
 * README's "Settings": `cp .env-sample .env; set -a; . ./.env; set +a; make run`, run as
 * written with the shipped .env-sample, in a shell that has nothing else set. Two changes, both
 * after the sourcing: BIND moves to a free port and FILE_SD_DIRECTORY to a temporary directory
 * (the sample's ./file_sd would land in this checkout), and `make` runs with `-C` the checkout,
 * since the block runs in a temporary directory so that it cannot overwrite a developer's .env.
 */

const ROOT = join(import.meta.dirname, "..");
const START_TIMEOUT_MS = 60_000;

describe("README: .env-sample works as shipped with set -a; . ./.env; set +a; make run", () => {
  let scratch = "";
  let stop: () => Promise<number | null> = async () => null;
  let output = "";

  beforeAll(async () => {
    scratch = await makeTempDir("env-sample-");
    await copyFile(join(ROOT, ".env-sample"), join(scratch, ".env-sample"));
  });
  afterAll(async () => {
    await stop();
    if (scratch !== "") await removeDir(scratch);
  });

  it("starts the service with the sample's settings, which registers a target", async () => {
    const blocks = shellBlocksUnder(await readFile(join(ROOT, "README.md"), "utf8"), "## Settings");
    const block = blocks.find((candidate) => candidate.lines.some((line) => line.includes("set -a")));
    expect(block, 'README\'s "## Settings" has the block that sources .env').toBeDefined();
    const commands = shellCommands(block!).map(({ text }) => text);
    expect(commands.map((command) => command.split(/\s+/)[0])).toEqual(["cp", "set", "make"]);

    const port = await freePort();
    const directory = join(scratch, "file_sd");
    const script = commands
      .map((command) =>
        command.startsWith("make ")
          ? `export BIND=127.0.0.1:${port} FILE_SD_DIRECTORY=${directory}; exec ${command.replace(/^make /, `make -C ${ROOT} `)}`
          : command,
      )
      .join("\n");
    // A process group of its own (bash → make → node, pino-pretty), stopped as one.
    const child = spawn("bash", ["-e", "-c", script], {
      cwd: scratch,
      env: { PATH: process.env.PATH ?? "", HOME: process.env.HOME ?? scratch },
      detached: true,
      stdio: ["ignore", "pipe", "pipe"],
    });
    killOnExit(child);
    child.stdout.setEncoding("utf8").on("data", (chunk: string) => (output += chunk));
    child.stderr.setEncoding("utf8").on("data", (chunk: string) => (output += chunk));
    const exited = new Promise<number | null>((resolve) => child.once("close", (code) => resolve(code)));
    let done = false;
    void exited.then(() => (done = true));
    stop = async () => {
      if (!done) process.kill(-(child.pid as number), "SIGTERM");
      return exited;
    };

    const url = `http://127.0.0.1:${port}`;
    await eventually(
      async () => {
        if (done) throw new Error(`make run ended before listening:\n${output}`);
        return (await fetch(`${url}/-/ready`).catch(() => undefined))?.status === 200;
      },
      START_TIMEOUT_MS,
      "make run to listen",
    );
    const put = await fetch(`${url}/billing/prod`, { method: "PUT", body: new URLSearchParams({ targets: "host1:9100" }) });
    expect(put.status).toBe(200);
    expect(JSON.parse(await readFile(join(directory, "billing@prod.json"), "utf8"))).toEqual([
      { targets: ["host1:9100"], labels: { job: "billing", env: "prod" } },
    ]);
    // SIGTERM to the group, as Ctrl-C in a terminal: node drains and says so; make itself ends by the signal.
    await stop();
    expect(output).toMatch(/INFO \([0-9]+\): stopped/);
  });
});
