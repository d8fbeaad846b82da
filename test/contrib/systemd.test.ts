import { readdir, readFile, writeFile } from "node:fs/promises";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { makeTempDir, removeDir } from "../helpers.js";
import { CONTRIB, findSystemdAnalyze, parseUnit, ROOT, run, type Directives } from "./support.js";

/**
 * The systemd units in contrib/systemd, checked with systemd's own `systemd-analyze` (no
 * systemd needs to run). `verify` refuses an ExecStart= whose program does not exist, and
 * neither /opt/file-sd-writer nor /usr/local/bin/file-sd-register exists here, so it checks
 * copies in which those two paths, and nothing else, point at this node and this repository's
 * script.
 */

const SYSTEMD = join(CONTRIB, "systemd");
const UNITS = ["file-sd-writer.service", "file-sd-register@.service", "file-sd-heartbeat@.service", "file-sd-heartbeat@.timer"];
const INSTALLED_PROGRAMS: Readonly<Record<string, string>> = {
  "/usr/bin/node": process.execPath,
  "/usr/local/bin/file-sd-register": join(SYSTEMD, "file-sd-register"),
};

async function unit(name: string): Promise<Map<string, Directives>> {
  return parseUnit(await readFile(join(SYSTEMD, name), "utf8"));
}

/** Copies the units into `directory` with the installed program paths replaced; fails when a path is no longer there. */
async function copyForVerify(directory: string): Promise<void> {
  const seen = new Set<string>();
  for (const name of UNITS) {
    let text = await readFile(join(SYSTEMD, name), "utf8");
    for (const [installed, here] of Object.entries(INSTALLED_PROGRAMS)) {
      if (text.includes(installed)) seen.add(installed);
      text = text.replaceAll(installed, here);
    }
    await writeFile(join(directory, name), text);
  }
  expect([...seen].sort()).toEqual(Object.keys(INSTALLED_PROGRAMS).sort());
}

function seconds(duration: string): number {
  const match = /^([0-9]+)(s|min)?$/.exec(duration);
  if (match === null) throw new Error(`unexpected duration ${duration}`);
  return Number(match[1]) * (match[2] === "min" ? 60 : 1);
}

describe("contrib/systemd", () => {
  let scratch = "";
  beforeAll(async () => {
    scratch = await makeTempDir("contrib-systemd-");
    await copyForVerify(scratch);
  });
  afterAll(async () => {
    if (scratch !== "") await removeDir(scratch);
  });

  it("has exactly the units this test checks, beside the script and the settings they read", async () => {
    const files = (await readdir(SYSTEMD)).sort();
    expect(files.filter((file) => /\.(service|timer)$/.test(file)).sort()).toEqual([...UNITS].sort());
  });

  it("systemd-analyze verify accepts every unit without a warning", async () => {
    const result = await run(findSystemdAnalyze(), ["verify", ...UNITS.map((name) => `./${name}`)], { cwd: scratch });
    const ours = result.stderr.split("\n").filter((line) => /file-sd-/.test(line));
    expect(result.code, `systemd-analyze verify failed:\n${result.stdout}${result.stderr}`).toBe(0);
    expect(ours, `systemd-analyze verify warned:\n${result.stderr}`).toEqual([]);
  });

  it("systemd-analyze verify does warn about a unit with a mistake, so the check above can fail", async () => {
    const broken = join(scratch, "file-sd-broken.service");
    const text = await readFile(join(scratch, "file-sd-writer.service"), "utf8");
    await writeFile(broken, text.replace("NoNewPrivileges=yes", "NoNewPrivilege=yes"));
    const result = await run(findSystemdAnalyze(), ["verify", "./file-sd-broken.service"], { cwd: scratch });
    expect(result.stderr).toMatch(/file-sd-broken\.service:[0-9]+: Unknown key .*NoNewPrivilege/);
  });

  it("the service unit's hardening scores as 'OK' in systemd-analyze security (exposure at most 2.0 of 10)", async () => {
    for (const [name, threshold] of [
      ["file-sd-writer.service", 20],
      ["file-sd-register@.service", 25],
      ["file-sd-heartbeat@.service", 25],
    ] as const) {
      // --threshold is on systemd's internal 0-100 scale: 20 is the "2.0" it prints.
      const result = await run(findSystemdAnalyze(), ["security", "--offline=yes", `--threshold=${threshold}`, `./${name}`], { cwd: scratch });
      const exposure = /Overall exposure level for \S+: ([0-9.]+)/.exec(result.stdout)?.[1];
      expect(result.code, `${name}: exposure ${exposure}\n${result.stdout}${result.stderr}`).toBe(0);
      expect(Number(exposure)).toBeLessThanOrEqual(threshold / 10);
    }
  });

  it("the service unit runs node on the built tree as its own user, stops with SIGTERM after the drain, restarts on failure", async () => {
    const service = (await unit("file-sd-writer.service")).get("Service");
    const one = (key: string): string | undefined => service?.get(key)?.at(-1);
    expect(one("ExecStart")).toBe("/usr/bin/node /opt/file-sd-writer/dist/main.js");
    expect(["exec", "simple"]).toContain(one("Type"));
    expect(one("User")).toBe("file-sd-writer");
    expect(one("DynamicUser")).toBeUndefined();
    expect(one("KillSignal")).toBe("SIGTERM");
    expect(one("Restart")).toBe("on-failure");
    expect(one("EnvironmentFile")).toBe("-/etc/file-sd-writer/file-sd-writer.env");

    const drainMs = Number(/const DRAIN_TIMEOUT_MS = ([0-9_]+);/.exec(await readFile(join(ROOT, "src/server.ts"), "utf8"))?.[1]?.replaceAll("_", ""));
    expect(drainMs).toBeGreaterThan(0);
    expect(seconds(one("TimeoutStopSec") ?? "")).toBeGreaterThanOrEqual(drainMs / 1000 + 5);

    for (const [key, value] of Object.entries({
      NoNewPrivileges: "yes",
      ProtectSystem: "strict",
      ProtectHome: "yes",
      PrivateTmp: "yes",
      PrivateDevices: "yes",
      RestrictAddressFamilies: "AF_INET AF_INET6 AF_UNIX",
      CapabilityBoundingSet: "",
    })) {
      expect(one(key), key).toBe(value);
    }
  });

  it("the directory the service may write is the one it is told to use, by the unit and by the sample settings", async () => {
    const service = (await unit("file-sd-writer.service")).get("Service");
    const directory = service?.get("Environment")?.find((value) => value.startsWith("FILE_SD_DIRECTORY="))?.split("=")[1];
    expect(directory).toBe("/var/lib/file-sd-writer");
    expect(service?.get("ReadWritePaths")).toEqual([directory]);
    expect(`/var/lib/${service?.get("StateDirectory")?.[0]}`).toBe(directory);
    const settings = await readFile(join(SYSTEMD, "file-sd-writer.env"), "utf8");
    expect(/^FILE_SD_DIRECTORY=(.*)$/m.exec(settings)?.[1]).toBe(directory);
    const sysusers = await readFile(join(SYSTEMD, "file-sd-writer.sysusers.conf"), "utf8");
    expect(sysusers).toMatch(new RegExp(`^u file-sd-writer - "[^"]+" ${directory} `, "m"));
  });

  it("the register unit adds the host at start and removes it at stop; the timer renews it only while registered", async () => {
    const register = (await unit("file-sd-register@.service")).get("Service");
    expect(register?.get("Type")).toEqual(["oneshot"]);
    expect(register?.get("RemainAfterExit")).toEqual(["yes"]);
    expect(register?.get("ExecStart")).toEqual(["/usr/local/bin/file-sd-register start %i"]);
    expect(register?.get("ExecStop")).toEqual(["/usr/local/bin/file-sd-register stop %i"]);

    const heartbeat = await unit("file-sd-heartbeat@.service");
    expect(heartbeat.get("Service")?.get("ExecStart")).toEqual(["/usr/local/bin/file-sd-register renew %i"]);
    expect(heartbeat.get("Unit")?.get("Requisite")).toEqual(["file-sd-register@%i.service"]);

    const timer = await unit("file-sd-heartbeat@.timer");
    const every = seconds(timer.get("Timer")?.get("OnUnitActiveSec")?.[0] ?? "");
    const documented = /^#TTL=([0-9]+)s$/m.exec(await readFile(join(SYSTEMD, "register.env"), "utf8"))?.[1];
    const scriptDefault = /post_with_ttl "\$\{TTL:-([0-9]+)s\}"/.exec(await readFile(join(SYSTEMD, "file-sd-register"), "utf8"))?.[1];
    expect(scriptDefault).toBe(documented);
    // The default TTL outlives two missed renewals.
    expect(Number(documented)).toBeGreaterThanOrEqual(3 * every);
  });
});
