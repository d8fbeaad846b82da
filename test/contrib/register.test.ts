import { createHash } from "node:crypto";
import { writeFile } from "node:fs/promises";
import { join } from "node:path";
import { afterAll, afterEach, beforeAll, describe, expect, it } from "vitest";
import { makeTempDir, removeDir, startTestService, type TestService } from "../helpers.js";
import { CONTRIB, findCurl, run, type Run } from "./support.js";

/**
 * contrib/systemd/file-sd-register, the script the register and heartbeat units run, against
 * the real service on a loopback port, with the real curl.
 */

const SCRIPT = join(CONTRIB, "systemd", "file-sd-register");

let service: TestService;
let curlDirectory = "";

beforeAll(async () => {
  // The script finds curl on PATH; put the one the tests found first.
  curlDirectory = join(findCurl(), "..");
  service = await startTestService();
});
afterAll(async () => {
  await service.close();
});

function register(action: string, instance: string, env: Record<string, string> = {}): Promise<Run> {
  return run("/bin/sh", [SCRIPT, action, instance], {
    env: { PATH: `${curlDirectory}:${process.env.PATH ?? ""}`, FILE_SD_URL: service.url, ...env },
    timeoutMs: 20_000,
  });
}

async function group(path: string): Promise<unknown> {
  return (await service.request("GET", path)).body;
}

describe("contrib/systemd/file-sd-register", () => {
  afterEach(async () => {
    for (const path of ["/billing/prod-hou", "/search/prod"]) await service.request("DELETE", path);
  });

  it("start adds the host to the group, keeping the targets and labels that are there", async () => {
    await service.request("PUT", "/billing/prod-hou", { body: { targets: ["other:9100"], labels: { team: "core" } } });
    const started = await register("start", "billing:prod-hou", { TARGET: "host1.example.com:9100" });
    expect(started.code, started.stderr).toBe(0);
    expect(started.stdout).toBe("registered host1.example.com:9100 in billing/prod-hou\n");
    expect(await service.fileOf("billing", "prod-hou")).toEqual([
      { targets: ["other:9100", "host1.example.com:9100"], labels: { job: "billing", env: "prod-hou", team: "core" } },
    ]);
  });

  it("start creates the group, and a second start (a reboot without a clean stop) changes nothing", async () => {
    const first = await register("start", "billing:prod-hou", { TARGET: "[2001:db8::1]:9100" });
    expect(first.code, first.stderr).toBe(0);
    const again = await register("start", "billing:prod-hou", { TARGET: "[2001:db8::1]:9100" });
    expect(again.code, again.stderr).toBe(0);
    expect(again.stdout).toBe("[2001:db8::1]:9100 in billing/prod-hou is already registered\n");
    expect(await service.fileOf("billing", "prod-hou")).toEqual([
      { targets: ["[2001:db8::1]:9100"], labels: { job: "billing", env: "prod-hou" } },
    ]);
  });

  it("registers `hostname -f`:EXPORTER_PORT when TARGET is not set", async () => {
    const hostname = (await run("hostname", ["-f"])).stdout.trim();
    const started = await register("start", "search:prod", { EXPORTER_PORT: "9256" });
    expect(started.code, started.stderr).toBe(0);
    expect(await group("/search/prod")).toEqual([{ targets: [`${hostname}:9256`], labels: { job: "search", env: "prod" } }]);
  });

  it("stop removes only this host; stopping the last one removes the group, labels and all; stopping again is fine", async () => {
    await service.request("PUT", "/billing/prod-hou", { body: { targets: ["host1:9100"], labels: { team: "core" } } });
    await register("start", "billing:prod-hou", { TARGET: "host2:9100" });

    const first = await register("stop", "billing:prod-hou", { TARGET: "host1:9100" });
    expect(first.code, first.stderr).toBe(0);
    expect(first.stdout).toBe("removed host1:9100 in billing/prod-hou\n");
    const host2Only = [{ targets: ["host2:9100"], labels: { job: "billing", env: "prod-hou", team: "core" } }];
    expect(await service.fileOf("billing", "prod-hou")).toEqual(host2Only);

    // host1 is gone already: nothing to do, and host2 stays.
    const gone = await register("stop", "billing:prod-hou", { TARGET: "host1:9100" });
    expect(gone.code, gone.stderr).toBe(0);
    expect(gone.stdout).toBe("host1:9100 in billing/prod-hou is not registered\n");
    expect(await group("/billing/prod-hou")).toEqual(host2Only);

    // The service refuses to remove the last target while the group has labels of its own.
    const last = await register("stop", "billing:prod-hou", { TARGET: "host2:9100" });
    expect(last.code, last.stderr).toBe(0);
    expect(last.stdout).toBe("removed host2:9100 in billing/prod-hou, the last target, and with it billing/prod-hou\n");
    expect(await service.fileOf("billing", "prod-hou")).toBeUndefined();

    const nothing = await register("stop", "billing:prod-hou", { TARGET: "host2:9100" });
    expect(nothing.code, nothing.stderr).toBe(0);
    expect(nothing.stdout).toBe("nothing registered in billing/prod-hou\n");
  });

  it("stop of the last target of a group with only job and env removes it in one DELETE", async () => {
    await register("start", "billing:prod-hou", { TARGET: "host1:9100" });
    const last = await register("stop", "billing:prod-hou", { TARGET: "host1:9100" });
    expect(last.code, last.stderr).toBe(0);
    expect(last.stdout).toBe("removed host1:9100 in billing/prod-hou\n");
    expect(await service.fileOf("billing", "prod-hou")).toBeUndefined();
  });

  it("stop leaves a group whose only target is another host's alone", async () => {
    await service.request("PUT", "/billing/prod-hou", { body: { targets: ["host2:9100"], labels: { team: "core" } } });
    const stopped = await register("stop", "billing:prod-hou", { TARGET: "host2:91" });
    expect(stopped.code, stopped.stderr).toBe(0);
    expect(stopped.stdout).toBe("host2:91 in billing/prod-hou is not registered\n");
    expect(await group("/billing/prod-hou")).toEqual([{ targets: ["host2:9100"], labels: { job: "billing", env: "prod-hou", team: "core" } }]);
  });

  it("renew POSTs the target with ?ttl= (the heartbeat), adding it when it is missing", async () => {
    const renewed = await register("renew", "billing:prod-hou", { TARGET: "host1:9100", TTL: "5m" });
    expect(renewed.code, renewed.stderr).toBe(0);
    expect(renewed.stdout).toBe("registered host1:9100 in billing/prod-hou for 5m\n");
    expect(await group("/billing/prod-hou")).toEqual([{ targets: ["host1:9100"], labels: { job: "billing", env: "prod-hou" } }]);
  });

  it("refuses a malformed instance, FILE_SD_URL or TTL before sending anything (exit 2)", async () => {
    for (const [action, instance, env] of [
      ["start", "billing", {}],
      ["start", "billing:", {}],
      ["start", "../etc:prod", {}],
      ["launch", "billing:prod", {}],
      ["renew", "billing:prod", { TTL: "5 minutes" }],
      ["start", "billing:prod", { FILE_SD_URL: "" }],
    ] as const) {
      const result = await register(action, instance, { TARGET: "host1:9100", ...env });
      expect(result.code, `${action} ${instance} ${JSON.stringify(env)}: ${result.stdout}${result.stderr}`).toBe(2);
      expect(result.stderr).not.toBe("");
    }
    expect(await group("/billing/prod")).toEqual([]);
  });
});

describe("contrib/systemd/file-sd-register with write tokens", () => {
  const token = "4f1e1a7c0c6c4b0f9d3e2b1a0f9e8d7c6b5a49382716051f4e3d2c1b0a998877";
  let directory = "";
  let guarded: TestService;

  beforeAll(async () => {
    directory = await makeTempDir("contrib-register-");
    const tokens = join(directory, "tokens.yaml");
    const digest = createHash("sha256").update(token).digest("hex");
    await writeFile(tokens, `read: token\ntokens:\n  - name: hosts\n    sha256: ${digest}\n    applications: ["billing"]\n`);
    guarded = await startTestService({ env: { AUTH_TOKENS_FILE: tokens } });
  });
  afterAll(async () => {
    await guarded?.close();
    if (directory !== "") await removeDir(directory);
  });

  const registerWith = (action: string, env: Record<string, string>): Promise<Run> =>
    run("/bin/sh", [SCRIPT, action, "billing:prod"], {
      env: { PATH: `${curlDirectory}:${process.env.PATH ?? ""}`, FILE_SD_URL: guarded.url, TARGET: "host1:9100", ...env },
      timeoutMs: 20_000,
    });

  it("sends FILE_SD_TOKEN as a Bearer token on every request (GET included, for read: token)", async () => {
    const started = await registerWith("start", { FILE_SD_TOKEN: token });
    expect(started.code, started.stderr).toBe(0);
    const stopped = await registerWith("stop", { FILE_SD_TOKEN: token });
    expect(stopped.code, stopped.stderr).toBe(0);
    expect(await guarded.fileOf("billing", "prod")).toBeUndefined();
  });

  it("fails (exit 1) with the service's message when the token is missing or wrong", async () => {
    for (const env of [{}, { FILE_SD_TOKEN: "wrong" }] as Record<string, string>[]) {
      const result = await registerWith("start", env);
      expect(result.code).toBe(1);
      expect(result.stderr).toMatch(/^file-sd-register: could not read billing\/prod: HTTP 401 \{"message":".+"\}\n$/);
    }
    const renewed = await registerWith("renew", { FILE_SD_TOKEN: "wrong" });
    expect(renewed.code).toBe(1);
    expect(renewed.stderr).toMatch(/could not register host1:9100 in billing\/prod for 90s: HTTP 401/);
    expect(await guarded.fileOf("billing", "prod")).toBeUndefined();
  });
});
