import { spawn } from "node:child_process";
import { chmod, chown, cp, mkdir, readFile, stat } from "node:fs/promises";
import { existsSync } from "node:fs";
import { join } from "node:path";
import { createInterface } from "node:readline";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { makeTempDir, removeDir } from "../helpers.js";
import { shellBlocksUnder, shellCommands } from "../support/markdown.js";
import { freePort } from "../support/ports.js";
import { killOnExit } from "../support/reaper.js";
import { findSystemdSysusers, parseUnit, ROOT, run } from "./support.js";

/**
 * docs/systemd.md's install, performed as written (README's systemd line links there), into a
 * stand-in for the machine's root: every absolute path (/opt, /etc, /var) lands under a
 * temporary directory, and `sudo ` is dropped (the tests run as root). The build line runs in a
 * copy of the checkout, since `npm prune --omit=dev` would take the test tools out of this one.
 * Where systemd would start the unit (`systemctl enable --now`, which needs systemd as PID 1),
 * the installed unit's ExecStart= runs with its Environment=, EnvironmentFile= and
 * WorkingDirectory=, as nobody in the part of the file-sd-writer user (which
 * systemd-sysusers creates only inside the stand-in root), with BIND moved to a free port.
 */

const DOC = join(ROOT, "docs", "systemd.md");
const HEADING = "## Install the service";
const NOBODY = 65534;
const BUILD_TIMEOUT_MS = 240_000;
const START_TIMEOUT_MS = 20_000;
/** What the test does instead of systemd, by the command the line starts with. */
const DONE_BY_THIS_TEST = new Map([["systemctl", "systemd is not PID 1 here: the test starts the installed unit's ExecStart= itself"]]);
const COMMANDS = new Set(["npm", "mkdir", "cp", "install", "systemd-sysusers", ...DONE_BY_THIS_TEST.keys()]);

/** `/opt/x`, `/etc/x`, `/var/x` → under `root`. */
const underRoot = (root: string, text: string): string => text.replace(/(^|[\s=])\/(opt|etc|var)\//g, `$1${root}/$2/`);

/** systemd's EnvironmentFile= syntax as the repository's env file uses it: KEY=VALUE lines, # comments. */
function environmentFile(text: string): Map<string, string> {
  const values = new Map<string, string>();
  for (const line of text.split("\n")) {
    const trimmed = line.trim();
    if (trimmed === "" || trimmed.startsWith("#") || trimmed.startsWith(";")) continue;
    const equals = trimmed.indexOf("=");
    if (equals < 0) throw new Error(`unexpected line in an environment file: ${line}`);
    values.set(trimmed.slice(0, equals), trimmed.slice(equals + 1).replace(/^"(.*)"$/, "$1"));
  }
  return values;
}

interface Started {
  readonly url: string;
  readonly exited: Promise<number | null>;
  stop(): Promise<number | null>;
}

describe("docs/systemd.md: the install as written, and the installed unit's ExecStart", () => {
  let scratch = "";
  let root = "";
  let checkout = "";
  let unit: ReturnType<typeof parseUnit>;
  const ran: string[] = [];

  /** The installed unit's ExecStart= with its environment, as systemd would start it (BIND moved, `extra` added). */
  async function startUnit(extra: Readonly<Record<string, string>> = {}): Promise<Started> {
    const service = unit.get("Service");
    const one = (key: string): string => {
      const value = service?.get(key)?.at(-1);
      if (value === undefined) throw new Error(`the unit has no ${key}=`);
      return value;
    };
    const environment = new Map<string, string>();
    for (const assignment of service?.get("Environment") ?? []) {
      for (const [, name = "", value = ""] of assignment.matchAll(/([A-Za-z_][A-Za-z0-9_]*)=(\S*)/g)) environment.set(name, value);
    }
    // EnvironmentFile= wins over Environment=, as in systemd; "-" makes the file optional.
    for (const file of service?.get("EnvironmentFile") ?? []) {
      const path = underRoot(root, file.replace(/^-/, ""));
      if (!existsSync(path) && file.startsWith("-")) continue;
      for (const [name, value] of environmentFile(await readFile(path, "utf8"))) environment.set(name, value);
    }
    environment.set("BIND", `127.0.0.1:${await freePort()}`);
    for (const [name, value] of Object.entries(extra)) environment.set(name, value);
    const env: Record<string, string> = { PATH: "/usr/local/bin:/usr/bin:/bin" };
    for (const [name, value] of environment) env[name] = underRoot(root, value);

    const [program = "", ...args] = one("ExecStart").split(/\s+/);
    const node = program === "/usr/bin/node" && !existsSync(program) ? process.execPath : program;
    const child = spawn(node, args.map((arg) => underRoot(root, arg)), {
      cwd: underRoot(root, one("WorkingDirectory")),
      env,
      uid: NOBODY,
      gid: NOBODY,
      stdio: ["ignore", "pipe", "pipe"],
    });
    killOnExit(child);
    let output = "";
    child.stderr.setEncoding("utf8").on("data", (chunk: string) => (output += chunk));
    const exited = new Promise<number | null>((resolve) => child.once("close", (code) => resolve(code)));
    const url = await new Promise<string>((resolve, reject) => {
      const timer = setTimeout(() => reject(new Error(`the unit's ExecStart did not listen within ${START_TIMEOUT_MS} ms:\n${output}`)), START_TIMEOUT_MS);
      createInterface({ input: child.stdout }).on("line", (line) => {
        output += `${line}\n`;
        const parsed = JSON.parse(line) as { msg?: string; url?: string };
        if (parsed.msg === "listening" && parsed.url !== undefined) {
          clearTimeout(timer);
          resolve(parsed.url);
        }
      });
      void exited.then((code) => {
        clearTimeout(timer);
        reject(Object.assign(new Error(`the unit's ExecStart exited with ${code} before listening:\n${output}`), { code }));
      });
    });
    return {
      url,
      exited,
      stop: async () => {
        child.kill("SIGTERM");
        return exited;
      },
    };
  }

  beforeAll(async () => {
    scratch = await makeTempDir("systemd-install-");
    root = join(scratch, "root");
    checkout = join(scratch, "checkout");
    // What every machine with systemd has; /etc/sysusers.d is not among it (Debian does not ship one).
    await mkdir(join(root, "etc", "systemd", "system"), { recursive: true });
    // The unprivileged user must reach what is installed, as on a real machine.
    await chmod(scratch, 0o755);
    await chmod(root, 0o755);
    await cp(ROOT, checkout, {
      recursive: true,
      filter: (source) => !/\/(node_modules|dist|dist-bench|coverage|file_sd|\.git)$/.test(source),
    });

    const blocks = shellBlocksUnder(await readFile(DOC, "utf8"), HEADING);
    // The first block under the heading is the install; the one after it checks the result.
    expect(blocks.length, `docs/systemd.md has a shell block under "${HEADING}"`).toBeGreaterThan(0);
    for (const { text, line } of shellCommands(blocks[0]!)) {
      const command = text.replace(/\bsudo /g, "");
      const programs = command.split(/&&|;/).map((part) => part.trim().split(/\s+/)[0] ?? "");
      const unknown = programs.filter((program) => !COMMANDS.has(program));
      expect(unknown, `docs/systemd.md:${line} runs ${unknown.join(", ")}: say in this test how to run it here`).toEqual([]);
      if (programs.every((program) => DONE_BY_THIS_TEST.has(program))) continue;
      const script = underRoot(root, command).replace(/\bsystemd-sysusers\b/, `${findSystemdSysusers()} --root=${root}`);
      const result = await run("bash", ["-e", "-c", script], { cwd: checkout, timeoutMs: BUILD_TIMEOUT_MS });
      expect(result.code, `docs/systemd.md:${line}: ${command}\n${result.stdout}${result.stderr}`).toBe(0);
      ran.push(command);
    }
    const installed = join(root, "etc", "systemd", "system", "file-sd-writer.service");
    unit = parseUnit(await readFile(installed, "utf8"));
    // What StateDirectory= does before the start: the directory, owned by the unit's user.
    const service = unit.get("Service");
    const state = join(root, "var", "lib", service?.get("StateDirectory")?.[0] ?? "");
    await mkdir(state, { recursive: true, mode: Number.parseInt(service?.get("StateDirectoryMode")?.[0] ?? "0755", 8) });
    await chown(state, NOBODY, NOBODY);
  }, BUILD_TIMEOUT_MS * 2);

  afterAll(async () => {
    if (scratch !== "") await removeDir(scratch);
  });

  it("runs every line it can, and the installed tree is what the unit's header lists", async () => {
    expect(ran.some((command) => command.startsWith("npm ci"))).toBe(true);
    const tree = join(root, "opt", "file-sd-writer");
    for (const part of ["package.json", "dist/main.js", "node_modules/koa/package.json", "ui/app.js", "ui/view.js", "ui/app.css"]) {
      expect(existsSync(join(tree, part)), `${part} installed`).toBe(true);
    }
    // npm prune --omit=dev: the test tools stay on the build machine.
    expect(existsSync(join(tree, "node_modules", "vitest"))).toBe(false);
    const header = await readFile(join(ROOT, "contrib", "systemd", "file-sd-writer.service"), "utf8");
    for (const part of ["package.json", "dist/", "node_modules/", "ui/"]) expect(header, `the unit's header names ${part}`).toContain(part);
    // systemd-sysusers created the user with the state directory as its home.
    const passwd = await readFile(join(root, "etc", "passwd"), "utf8");
    expect(passwd).toMatch(/^file-sd-writer:x:[0-9]+:[0-9]+:[^:]*:\/var\/lib\/file-sd-writer:/m);
  });

  it("the installed unit, started as systemd would, serves the page with its scripts and registers a target", async () => {
    const started = await startUnit();
    try {
      const page = await fetch(`${started.url}/`, { headers: { accept: "text/html" } });
      expect(page.status).toBe(200);
      expect(page.headers.get("content-type")).toMatch(/^text\/html/);
      const html = await page.text();
      const assets = [...html.matchAll(/<(?:script[^>]* src|link[^>]* href)="(\/[^"]+)"/g)].map((match) => match[1] ?? "");
      expect(assets).toEqual(expect.arrayContaining(["/-/ui/app.js", "/-/ui/app.css"]));
      for (const asset of assets) {
        const answer = await fetch(`${started.url}${asset}`);
        expect(answer.status, asset).toBe(200);
        if (asset.endsWith(".js")) expect(answer.headers.get("content-type"), asset).toMatch(/javascript/);
      }
      // ui/view.js, imported by app.js: the page needs it too.
      const app = await (await fetch(`${started.url}/-/ui/app.js`)).text();
      for (const [, imported = ""] of app.matchAll(/from "\.\/([a-z-]+\.js)"/g)) {
        expect((await fetch(`${started.url}/-/ui/${imported}`)).status, imported).toBe(200);
      }

      const put = await fetch(`${started.url}/billing/prod`, { method: "PUT", body: new URLSearchParams({ targets: "host1:9100" }) });
      expect(put.status).toBe(200);
      const file = join(root, "var", "lib", "file-sd-writer", "billing@prod.json");
      expect(JSON.parse(await readFile(file, "utf8"))).toEqual([{ targets: ["host1:9100"], labels: { job: "billing", env: "prod" } }]);
      const { uid, mode } = await stat(file);
      expect(uid).toBe(NOBODY);
      // Prometheus, another user, reads it.
      expect(mode & 0o777).toBe(0o644);
    } finally {
      expect(await started.stop()).toBe(0);
    }
  });

  it("a setting that cannot work exits with the status the unit does not restart after", async () => {
    const prevent = unit.get("Service")?.get("RestartPreventExitStatus")?.at(-1);
    const failed = await startUnit({ AUTH_TOKENS_FILE: "/etc/file-sd-writer/tokens.yml" }).then(
      async (started) => {
        await started.stop();
        return undefined;
      },
      (error: unknown) => (error as { code?: number }).code,
    );
    expect(failed).toBeDefined();
    expect(prevent?.split(/\s+/)).toContain(String(failed));
  });
});
