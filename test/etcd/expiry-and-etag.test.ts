import { randomUUID } from "node:crypto";
import { readFile } from "node:fs/promises";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { EXPIRY_GRACE_MS } from "../../src/rules/registration.js";
import { eventually, request, startTestService, type TestService } from "../helpers.js";
import { startEtcdCluster, type EtcdCluster } from "../support/etcd.js";

/** docs/api.md across instances, with a real three-member etcd cluster. */
describe("ETag and expiry across instances", () => {
  let cluster: EtcdCluster;
  const started: TestService[] = [];
  const report: string[] = [];

  const start = async (prefix: string, options: { env?: Record<string, string>; clockOffsetMs?: number } = {}): Promise<TestService> => {
    const offset = options.clockOffsetMs ?? 0;
    const sd = await startTestService({ env: { ETCD_ENDPOINTS: cluster.endpoints.join(","), ETCD_PREFIX: prefix, ...options.env }, now: () => Date.now() + offset });
    started.push(sd);
    return sd;
  };

  beforeAll(async () => {
    cluster = await startEtcdCluster();
  });
  afterAll(async () => {
    await Promise.all(started.map((sd) => sd.close()));
    await cluster?.stop();
    console.log(`etcd ?ttl= and ETag:\n  ${report.join("\n  ")}`);
  });

  it("every instance gives the same ETag; a stale If-Match from another instance is a 412 that changes nothing", async () => {
    const prefix = `/etag-${randomUUID()}/`;
    const [a, b, c] = [await start(prefix), await start(prefix), await start(prefix)];
    const tag = (await a.request("PUT", "/shop/prod", { body: "targets=a:1&team=core" })).headers.get("etag")!;
    await eventually(async () => (await c.request("GET", "/shop/prod")).headers.get("etag") === tag, 1000, "c to have the group");
    expect((await b.request("GET", "/shop/prod")).headers.get("etag")).toBe(tag);

    const changed = await b.request("PUT", "/shop/prod", { body: "team=edge", headers: { "If-Match": tag } });
    expect(changed.status).toBe(200);
    // c may not have seen b's change yet: the check runs on etcd's value, not on c's memory.
    const stale = await c.request("PUT", "/shop/prod", { body: "team=web", headers: { "If-Match": tag } });
    expect(stale.status).toBe(412);
    expect(stale.headers.get("etag")).toBe(changed.headers.get("etag"));
    await eventually(async () => JSON.stringify((await a.request("GET", "/shop/prod")).body).includes("edge"), 1000, "a to see b's change");
    for (const sd of [a, b, c]) {
      expect((await sd.request("GET", "/shop/prod")).body).toEqual([{ targets: ["a:1"], labels: { job: "shop", env: "prod", team: "edge" } }]);
    }
  });

  it("read-modify-write loops with If-Match through three instances: every acknowledged change survives", async () => {
    const prefix = `/rmw-${randomUUID()}/`;
    const instances = [await start(prefix), await start(prefix), await start(prefix)];
    await instances[0]!.request("PUT", "/rmw/prod", { body: "targets=a:1" });
    const acknowledged: string[] = [];
    let conflicts = 0;
    const rounds = 10;
    await Promise.all(
      Array.from({ length: 6 }, async (_, client) => {
        const sd = instances[client % instances.length]!;
        for (let round = 0; round < rounds; round++) {
          for (let attempt = 0; ; attempt++) {
            expect(attempt).toBeLessThan(300);
            const read = await request(sd.url, "GET", "/rmw/prod");
            const [group] = read.body as [{ labels: Record<string, string> }];
            const name = `c${client}_${round}`;
            const answer = await request(sd.url, "PUT", "/rmw/prod", {
              body: { labels: { ...group.labels, [name]: "x" } },
              headers: { "If-Match": read.headers.get("etag")! },
            });
            if (answer.status === 200) {
              acknowledged.push(name);
              break;
            }
            expect(answer.status).toBe(412);
            conflicts++;
          }
        }
      }),
    );
    for (const sd of instances) {
      await eventually(
        async () => {
          const [group] = (await sd.fileOf("rmw", "prod")) as [{ labels: Record<string, string> }];
          return acknowledged.every((name) => group.labels[name] === "x");
        },
        2000,
        "every acknowledged label in every directory",
      );
    }
    report.push(`read-modify-write over 3 instances: ${acknowledged.length} acknowledged, ${conflicts} answered 412 and retried, none lost`);
  }, 60_000);

  it("three instances with clocks 3 s behind, right and 1 s ahead remove an expired target once and never bring it back", async () => {
    const prefix = `/clocks-${randomUUID()}/`;
    const behind = await start(prefix, { clockOffsetMs: -3000 });
    const right = await start(prefix);
    const ahead = await start(prefix, { clockOffsetMs: 1000 });
    const instances = [behind, right, ahead];
    const expiredCounts = async (): Promise<number[]> =>
      Promise.all(instances.map(async (sd) => Number(/^file_sd_targets_expired_total (\d+)/m.exec(await (await fetch(`${sd.url}/metrics`)).text())?.[1])));
    const targetsOf = async (sd: TestService): Promise<string> => JSON.stringify([((await sd.fileOf("clock", "prod")) as { targets: string[] }[] | undefined)?.[0]?.targets, ((await sd.request("GET", "/clock/prod")).body as { targets: string[] }[])[0]?.targets]);
    const keptOnly = JSON.stringify([["keep:1"], ["keep:1"]]);

    expect((await right.request("PUT", "/clock/prod", { body: "targets=keep:1" })).status).toBe(200);
    const sent = Date.now();
    expect((await right.request("POST", "/clock/prod?ttl=2s", { body: "targets=gone:1" })).status).toBe(200);
    expect(await cluster.etcdctl(["get", "--print-value-only", `${prefix}expires/clock@prod`])).toContain("gone:1");

    await eventually(async () => (await Promise.all(instances.map(targetsOf))).every((seen) => seen === keptOnly), 4000 + EXPIRY_GRACE_MS, "gone:1 to leave every instance");
    report.push(`clock offsets -3 s/0/+1 s: gone:1 (ttl 2 s) left every instance ${Date.now() - sent} ms after the request`);
    // Until the slowest clock is well past the deadline, the target never comes back, anywhere.
    const until = sent + 2000 + EXPIRY_GRACE_MS + 3000 + 1500;
    let looks = 0;
    while (Date.now() < until) {
      for (const sd of instances) expect(await targetsOf(sd)).toBe(keptOnly);
      looks++;
      await new Promise((resolve) => setTimeout(resolve, 100));
    }
    expect(looks).toBeGreaterThan(20);
    // One instance removed it; the others' attempts found nothing due (or lost the compare and re-applied on the newer value).
    const counts = await expiredCounts();
    expect(counts.reduce((sum, count) => sum + count, 0)).toBe(1);
    report.push(`expiries counted per instance (behind, right, ahead): ${counts.join(", ")}`);
    // The deadlines key stays, holding none (a key that exists is never deleted: see EtcdStore.runBatch).
    expect((await cluster.etcdctl(["get", "--print-value-only", `${prefix}expires/clock@prod`])).trim()).toBe("{}");
    expect((await cluster.etcdctl(["get", "--print-value-only", `${prefix}groups/clock@prod`])).trim()).toBe((await readFile(join(right.directory, "clock@prod.json"), "utf8")).trim());
  }, 30_000);

  it("a heartbeat racing an expiry on another instance (clock 0.5 s ahead) always ends with the target registered, the same everywhere, and kept", async () => {
    const prefix = `/race-${randomUUID()}/`;
    const a = await start(prefix, { clockOffsetMs: 500 });
    const b = await start(prefix);
    let renewed = 0;
    let outcomes = 0;
    for (let round = 0; round < 10; round++) {
      const path = `/race/r${round}`;
      await b.request("PUT", path, { body: "targets=keep:1" });
      await b.request("POST", `${path}?ttl=1s`, { body: "targets=hb:1" });
      // Renew around the moment a's clock reaches the deadline.
      await new Promise((resolve) => setTimeout(resolve, 400 + round * 25));
      const answer = await b.request("POST", `${path}?ttl=1h`, { body: "targets=hb:1" });
      expect(answer.status).toBe(200);
      // A heartbeat that arrived after the expiry adds the target again: the answer says which happened.
      const [group] = answer.body as { targets: string[] }[];
      expect(group!.targets).toContain("hb:1");
      renewed++;
      await eventually(async () => {
        const seen = await Promise.all([a, b].map(async (sd) => JSON.stringify(((await sd.request("GET", path)).body as { targets: string[] }[])[0]?.targets)));
        const files = await Promise.all([a, b].map(async (sd) => JSON.stringify(((await sd.fileOf("race", `r${round}`)) as { targets: string[] }[] | undefined)?.[0]?.targets)));
        return [...seen, ...files].every((value) => value === '["keep:1","hb:1"]');
      }, 2000, "both instances to hold the renewed target");
      outcomes++;
    }
    // Well past the old deadline on every clock: the renewed targets stay.
    await new Promise((resolve) => setTimeout(resolve, 1500));
    for (let round = 0; round < 10; round++) {
      expect(((await a.request("GET", `/race/r${round}`)).body as { targets: string[] }[])[0]!.targets).toEqual(["keep:1", "hb:1"]);
    }
    expect(renewed).toBe(10);
    expect(outcomes).toBe(10);
  }, 60_000);
});
