import { afterAll, beforeAll, beforeEach, describe, expect, it } from "vitest";
import { EXPIRY_GRACE_MS, RENEWAL_SLACK_MS } from "../../src/rules/registration.js";
import { backendEnv, eventually, filesIn, makeTempDir, removeDir, startTestService, type TestService } from "../helpers.js";

/**
 * etcd mode keeps a target EXPIRY_GRACE_MS past its deadline (every instance's renewals answered from memory
 * have arrived by then); file mode restores a deadline RENEWAL_SLACK_MS later after a restart (docs/heartbeats.md).
 */
const onEtcd = backendEnv().ETCD_ENDPOINTS !== undefined;
const graceMs = onEtcd ? EXPIRY_GRACE_MS : 0;
const restoredLaterMs = onEtcd ? 0 : RENEWAL_SLACK_MS;

type Group = { targets: string[]; labels: Record<string, string> };
type IndexLine = { application: string; environment: string; expires?: Record<string, string> };

/**
 * docs/api.md through a real listener, with real time and short TTLs, on the
 * directory and (project api-on-etcd) on etcd: an expired target leaves the
 * file, GET, `/` and `/-/http_sd` within 2 s of its deadline.
 */
describe("registrations that expire (docs/api.md)", () => {
  let sd: TestService;
  beforeAll(async () => {
    sd = await startTestService();
  });
  afterAll(() => sd.close());
  beforeEach(async () => {
    for (const path of ["/ttl/prod", "/ttl/dev"]) await sd.request("DELETE", path);
  });

  const targetsEverywhere = async (service: TestService, application: string, environment: string): Promise<string[][]> => {
    const path = `/${application}/${environment}`;
    const file = ((await service.fileOf(application, environment)) as Group[] | undefined)?.[0]?.targets ?? [];
    const get = ((await service.request("GET", path)).body as Group[])[0]?.targets ?? [];
    const index = (((await service.request("GET", "/")).body as { groups: (IndexLine & { targets: number })[] }).groups.find(
      (line) => line.application === application && line.environment === environment,
    )?.targets ?? 0);
    const httpSd = ((await service.request("GET", `/-/http_sd?application=${application}&environment=${environment}`)).body as Group[])[0]?.targets ?? [];
    return [file, get, Array.from({ length: index }, () => "?"), httpSd];
  };

  it("a bad or out-of-range ttl is a 400 that names the value and the accepted form; nothing changes", async () => {
    for (const ttl of ["abc", "10", "500ms", "0s", "366d", "-5s", "1.5s"]) {
      const answer = await sd.request("PUT", `/ttl/prod?ttl=${encodeURIComponent(ttl)}`, { body: "targets=a:1" });
      expect(answer.status, ttl).toBe(400);
      expect((answer.body as { message: string }).message).toContain(`?ttl=${JSON.stringify(ttl)}`);
      expect((answer.body as { message: string }).message).toContain("from 1s to 365d");
    }
    // A duration too long to count is out of range, not a syntax error.
    const huge = await sd.request("PUT", "/ttl/prod?ttl=99999999999999999999d", { body: "targets=a:1" });
    expect((huge.body as { message: string }).message).toMatch(/^\?ttl="99999999999999999999d" is not between 1s and 365d/);
    expect((await sd.request("PUT", "/ttl/prod?ttl=1s&ttl=2s", { body: "targets=a:1" })).status).toBe(400);
    expect((await sd.request("PUT", "/ttl/prod?ttl=60s", { body: "team=x" })).status).toBe(400);
    expect(await sd.fileOf("ttl", "prod")).toBeUndefined();
    await sd.request("PUT", "/ttl/prod", { body: "targets=a:1" });
    const remove = await sd.request("DELETE", "/ttl/prod?ttl=60s", { body: "targets=a:1" });
    expect(remove.status).toBe(400);
    expect((remove.body as { message: string }).message).toContain("for PUT and POST");
    expect((await sd.request("PUT", "/ttl/prod?ttl=365d", { body: "targets=a:1" })).status).toBe(200);
  });

  it("works with every body format, and the index shows each expiring target's deadline", async () => {
    const before = Date.now();
    expect((await sd.request("PUT", "/ttl/prod?ttl=1h30m", { body: "targets=form:1,perm:1" })).status).toBe(200);
    expect((await sd.request("POST", "/ttl/prod?ttl=7d", { body: { targets: ["json:1"] } })).status).toBe(200);
    expect((await sd.request("POST", "/ttl/prod?ttl=90s", { body: "targets: [yaml:1]\n", contentType: "text/yaml" })).status).toBe(200);
    // Named without a ttl: permanent again.
    expect((await sd.request("PUT", "/ttl/prod", { body: { targets: ["form:1", "perm:1", "json:1", "yaml:1"] } })).status).toBe(200);
    expect((await sd.request("POST", "/ttl/prod?ttl=1h30m", { body: "targets=form:1" })).status).toBe(200);
    expect((await sd.request("POST", "/ttl/prod?ttl=90s", { body: "targets=yaml:1" })).status).toBe(200);
    const after = Date.now();
    const line = ((await sd.request("GET", "/")).body as { groups: IndexLine[] }).groups.find((group) => group.application === "ttl")!;
    expect(Object.keys(line.expires ?? {}).sort()).toEqual(["form:1", "yaml:1"]);
    const form = Date.parse(line.expires!["form:1"]!);
    expect(form).toBeGreaterThanOrEqual(before + 5_400_000);
    expect(form).toBeLessThanOrEqual(after + 5_400_000);
    expect(line.expires!["yaml:1"]).toMatch(/^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$/);
    // Deadlines never reach the file Prometheus reads, nor a file it could glob.
    expect(await sd.fileOf("ttl", "prod")).toEqual([{ targets: ["form:1", "perm:1", "json:1", "yaml:1"], labels: { job: "ttl", env: "prod" } }]);
    expect((await filesIn(sd.directory)).filter((name) => name.endsWith(".json"))).toEqual(["ttl@prod.json"]);
  });

  it("short TTLs expire from the file, GET, / and /-/http_sd within 2 s of the deadline; labels stay; the last target takes the group", async () => {
    await sd.request("PUT", "/ttl/prod", { body: "targets=perm:1&team=core" });
    const sent = Date.now();
    expect((await sd.request("POST", "/ttl/prod?ttl=1s", { body: "targets=one:1" })).status).toBe(200);
    expect((await sd.request("POST", "/ttl/prod?ttl=2s", { body: "targets=two:1" })).status).toBe(200);
    expect((await sd.request("PUT", "/ttl/dev?ttl=2s", { body: "targets=only:1&team=core" })).status).toBe(200);
    const acknowledged = Date.now();
    expect(await targetsEverywhere(sd, "ttl", "prod")).toEqual([["perm:1", "one:1", "two:1"], ["perm:1", "one:1", "two:1"], ["?", "?", "?"], ["perm:1", "one:1", "two:1"]]);

    await eventually(async () => JSON.stringify(await targetsEverywhere(sd, "ttl", "prod")) === JSON.stringify([["perm:1", "two:1"], ["perm:1", "two:1"], ["?", "?"], ["perm:1", "two:1"]]), 3500 + graceMs, "one:1 to expire");
    const first = Date.now();
    // Never before the deadline, at most 2 s after it.
    expect(first - sent).toBeGreaterThanOrEqual(1000 + graceMs);
    expect(first - acknowledged).toBeLessThanOrEqual(1000 + graceMs + 2000);
    await eventually(async () => JSON.stringify(await targetsEverywhere(sd, "ttl", "prod")) === JSON.stringify([["perm:1"], ["perm:1"], ["?"], ["perm:1"]]), 3500, "two:1 to expire");
    expect(Date.now() - acknowledged).toBeLessThanOrEqual(2000 + graceMs + 2000);
    expect(((await sd.request("GET", "/ttl/prod")).body as Group[])[0]!.labels).toEqual({ job: "ttl", env: "prod", team: "core" });

    // The last target of ttl/dev went with its labels: the whole group and its file.
    await eventually(async () => (await sd.fileOf("ttl", "dev")) === undefined, 1500 + graceMs, "ttl/dev to go");
    expect((await sd.request("GET", "/ttl/dev")).body).toEqual([]);
    expect((await sd.request("DELETE", "/ttl/dev")).status).toBe(404);
    const metrics = await (await fetch(`${sd.url}/metrics`)).text();
    expect(Number(/^file_sd_targets_expired_total (\d+)/m.exec(metrics)?.[1])).toBeGreaterThanOrEqual(3);
    expect((await filesIn(sd.directory)).sort()).toEqual(["ttl@prod.json"]);
  });

  it("a heartbeat every second keeps a 3 s target alive for 15 s, and it expires once the heartbeats stop", async () => {
    const heartbeat = async (): Promise<void> => {
      const answer = await sd.request("POST", "/ttl/prod?ttl=3s", { body: "targets=host:9100&team=core" });
      expect(answer.status, JSON.stringify(answer.body)).toBe(200);
    };
    const started = Date.now();
    let checks = 0;
    let last = started;
    while (Date.now() - started < 15_000) {
      await heartbeat();
      last = Date.now();
      for (let i = 0; i < 5; i++) {
        await new Promise((resolve) => setTimeout(resolve, 200));
        expect(await sd.fileOf("ttl", "prod")).toEqual([{ targets: ["host:9100"], labels: { job: "ttl", env: "prod", team: "core" } }]);
        checks++;
      }
    }
    expect(checks).toBeGreaterThanOrEqual(60);
    await eventually(async () => (await sd.fileOf("ttl", "prod")) === undefined, 6000 + graceMs, "the target to expire after the last heartbeat");
    expect(Date.now() - last).toBeGreaterThanOrEqual(3000 + graceMs);
    expect(Date.now() - last).toBeLessThanOrEqual(3000 + graceMs + 2000);
  }, 30_000);
});

describe("deadlines survive restarts (docs/api.md)", () => {
  let directory: string;
  let env: Record<string, string>;
  const started: TestService[] = [];
  beforeAll(async () => {
    directory = await makeTempDir();
    // The same directory, and in etcd mode the same prefix, for every start.
    env = backendEnv();
  });
  afterAll(async () => {
    for (const sd of started) await sd.close();
    await removeDir(directory);
  });
  const start = async (): Promise<TestService> => {
    const sd = await startTestService({ directory, env });
    started.push(sd);
    return sd;
  };

  it("a restart in the middle keeps the deadlines; one that passed while stopped applies at start", async () => {
    const first = await start();
    await first.request("PUT", "/keep/prod", { body: "targets=perm:1" });
    await first.request("POST", "/keep/prod?ttl=4s", { body: "targets=mid:1" });
    await first.request("POST", "/keep/prod?ttl=1s", { body: "targets=down:1" });
    const acknowledged = Date.now();
    const index = ((await first.request("GET", "/")).body as { groups: IndexLine[] }).groups[0]!.expires;
    await first.close();

    // Stopped past down:1's deadline.
    await new Promise((resolve) => setTimeout(resolve, 1500));
    const second = await start();
    // The file is written before the change is swapped into memory: the index follows a moment later.
    const indexLine = async (): Promise<IndexLine> => ((await second.request("GET", "/")).body as { groups: IndexLine[] }).groups[0]!;
    await eventually(
      async () =>
        JSON.stringify((await second.fileOf("keep", "prod")) as Group[]) === JSON.stringify([{ targets: ["perm:1", "mid:1"], labels: { job: "keep", env: "prod" } }]) &&
        !Object.hasOwn((await indexLine()).expires ?? {}, "down:1"),
      2000 + graceMs,
      "down:1 to go at start",
    );
    // mid:1 kept its deadline across the restart (not a new one from the start time).
    const line = await indexLine();
    expect(line.expires).toEqual({ "mid:1": new Date(Date.parse(index!["mid:1"]!) + restoredLaterMs).toISOString() });
    await eventually(async () => JSON.stringify((await second.fileOf("keep", "prod")) as Group[]) === JSON.stringify([{ targets: ["perm:1"], labels: { job: "keep", env: "prod" } }]), 6000 + graceMs + restoredLaterMs, "mid:1 to expire");
    expect(Date.now() - acknowledged).toBeGreaterThanOrEqual(4000);
    expect(Date.now() - acknowledged).toBeLessThanOrEqual(4000 + graceMs + restoredLaterMs + 2000 + 500);
    await second.close();
  }, 30_000);
});
