import { randomUUID } from "node:crypto";
import { Etcd3 } from "etcd3";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { serializeGroup } from "../../src/directory/group-file.js";
import { eventually, request, startTestService, type TestService } from "../helpers.js";
import { leaderOf, startEtcdCluster, type EtcdCluster } from "../support/etcd.js";

/**
 * etcd holds what is registered, not everything that ever was: what a deleted
 * group leaves (its `[]`, its `{}`, its commit markers) is removed once no
 * change computed before the deletion can still arrive, so CI's per-branch
 * environments grow neither etcd, nor any instance's memory, nor a resync.
 */
describe("deleted groups are collected", () => {
  let cluster: EtcdCluster;
  let client: Etcd3;
  const report: string[] = [];

  beforeAll(async () => {
    cluster = await startEtcdCluster();
    client = new Etcd3({ hosts: [...cluster.endpoints] });
  });
  afterAll(async () => {
    client?.close();
    await cluster?.stop();
    console.log(`tombstones:\n  ${report.join("\n  ")}`);
  });

  const keysUnder = (prefix: string): Promise<number> => client.getAll().prefix(prefix).count();
  const gauge = async (sd: TestService, name: string): Promise<number> =>
    Number(new RegExp(`^${name} (\\d+)`, "m").exec(await (await fetch(`${sd.url}/metrics`)).text())?.[1]);

  /** In parallel, `concurrency` at a time. */
  async function inParallel(count: number, concurrency: number, work: (i: number) => Promise<void>): Promise<void> {
    let next = 0;
    await Promise.all(Array.from({ length: concurrency }, async () => {
      while (next < count) await work(next++);
    }));
  }

  it("10,000 groups created and deleted: etcd's keys and both instances' memory go back to where they were", async () => {
    const prefix = `/growth-${randomUUID()}/`;
    // A deleted group stays 6 s here (5 min by default): longer than this test's ETCD_TIMEOUT, the longest a change may retry.
    const service = { tombstoneAgeMs: 6000, collectIntervalMs: 500 };
    const env = { ETCD_ENDPOINTS: cluster.endpoints.join(","), ETCD_PREFIX: prefix, ETCD_TIMEOUT: "5s" };
    const [a, b] = [await startTestService({ env, service }), await startTestService({ env, service })] as const;
    try {
      expect((await a.request("PUT", "/stays/prod", { body: "targets=s:1" })).status).toBe(200);
      const baseline = { keys: await keysUnder(prefix), heap: process.memoryUsage().heapUsed };
      const groups = 10_000;
      const started = Date.now();
      await inParallel(groups, 64, async (i) => {
        const put = await a.request("PUT", `/ci/branch-${i}`, { body: `targets=runner-${i}:9100` });
        expect(put.status).toBe(200);
      });
      const created = { keys: await keysUnder(prefix), seconds: (Date.now() - started) / 1000 };
      expect(created.keys).toBeGreaterThanOrEqual(baseline.keys + groups);
      await eventually(async () => (await gauge(b, "file_sd_etcd_known_groups")) >= groups + 1, 10_000, "the other instance to see them");
      const peak = { knownA: await gauge(a, "file_sd_etcd_known_groups"), knownB: await gauge(b, "file_sd_etcd_known_groups"), heap: process.memoryUsage().heapUsed };
      await inParallel(groups, 64, async (i) => {
        const del = await b.request("DELETE", `/ci/branch-${i}`);
        expect(del.status).toBe(200);
      });
      // The collectors have been removing the older tombstones while the later deletions went on.
      const deleted = { keys: await keysUnder(prefix) };
      await eventually(async () => (await keysUnder(prefix)) <= baseline.keys + 1, 30_000, "the collectors to remove the deleted groups");
      await eventually(
        async () => (await gauge(a, "file_sd_etcd_known_groups")) === 1 && (await gauge(b, "file_sd_etcd_known_groups")) === 1,
        10_000,
        "both instances to forget them",
      );
      global.gc?.();
      const after = { keys: await keysUnder(prefix), heap: process.memoryUsage().heapUsed };
      // What is left: the group that stays (its key and its marker) and the collector's `gc` key.
      expect(after.keys).toBe(baseline.keys + 1);
      expect((await a.request("GET", "/stays/prod")).body).toEqual([{ targets: ["s:1"], labels: { job: "stays", env: "prod" } }]);
      expect(await b.fileOf("stays", "prod")).toEqual([{ targets: ["s:1"], labels: { job: "stays", env: "prod" } }]);
      const removed = (await gauge(a, "file_sd_etcd_tombstones_removed_total")) + (await gauge(b, "file_sd_etcd_tombstones_removed_total"));
      expect(removed).toBe(groups);
      report.push(
        `10,000 groups: keys ${baseline.keys} → ${created.keys} created (${created.seconds.toFixed(1)} s) → ${deleted.keys} deleted → ${after.keys} collected; ` +
          `known groups per instance ${peak.knownA}/${peak.knownB} → 1/1; test-process heap ${mb(baseline.heap)} → ${mb(peak.heap)} → ${mb(after.heap)} MB`,
      );

      // A registration after the collection is a new group like any other.
      expect((await a.request("POST", "/ci/branch-7", { body: "targets=again:1" })).status).toBe(200);
      await eventually(async () => (await b.fileOf("ci", "branch-7")) !== undefined, 2000, "the new group on b");
    } finally {
      await a.close();
      await b.close();
    }
  }, 180_000);

  it("a transaction computed while the group was absent, delayed past a deletion and a collection, cannot bring it back", async () => {
    const prefix = `/aba-${randomUUID()}/`;
    const env = { ETCD_ENDPOINTS: cluster.endpoints.join(","), ETCD_PREFIX: prefix, ETCD_TIMEOUT: "1s" };
    const sd = await startTestService({ env, service: { tombstoneAgeMs: 300, collectIntervalMs: 200 } });
    try {
      const key = `${prefix}groups/aba@prod`;
      const gcKey = `${prefix}gc`;
      // What an instance computing the creation of aba/prod, before it existed, compares: the key absent, `gc` as it was.
      const gcBefore = Number((await client.get(gcKey).exec()).kvs[0]?.mod_revision ?? 0);
      expect((await sd.request("PUT", "/aba/prod", { body: "targets=old:1" })).status).toBe(200);
      expect((await sd.request("DELETE", "/aba/prod")).status).toBe(200);
      await eventually(async () => (await client.get(key).exec()).kvs.length === 0, 10_000, "the collector to remove the deleted group");
      const stale = await client
        .if(key, "Mod", "==", 0)
        .and(`${prefix}expires/aba@prod`, "Mod", "==", 0)
        .and(`${prefix}commits/aba@prod`, "Mod", "==", 0)
        .and(gcKey, "Mod", "==", gcBefore)
        .then(client.put(key).value(serializeGroup({ targets: ["old:1"], labels: { job: "aba", env: "prod" } })))
        .commit();
      expect(stale.succeeded).toBe(false);
      expect((await client.get(key).exec()).kvs).toEqual([]);
      expect((await sd.request("GET", "/aba/prod")).body).toEqual([]);
      // The same delayed transaction without the `gc` comparison would have applied: that comparison is what protects.
      expect(Number((await client.get(gcKey).exec()).kvs[0]?.mod_revision)).toBeGreaterThan(gcBefore);
    } finally {
      await sd.close();
    }
  });

  it("churn of groups with the collector running and the etcd leader SIGKILLed: no deleted group comes back", async () => {
    const prefix = `/churn-${randomUUID()}/`;
    // Deleted groups stay 4 s: twice this test's ETCD_TIMEOUT, the longest a change may retry.
    const service = { tombstoneAgeMs: 4000, collectIntervalMs: 300 };
    const env = { ETCD_ENDPOINTS: cluster.endpoints.join(","), ETCD_PREFIX: prefix, ETCD_TIMEOUT: "2s" };
    const [a, b] = [await startTestService({ env, service }), await startTestService({ env, service })] as const;
    const gone = new Set<string>();
    /** Created, but whose DELETE got no 200 (etcd without a leader for a moment): still registered, or not. */
    const unsure = new Set<string>();
    let stop = false;
    let cycles = 0;
    try {
      const churn = Promise.all(
        Array.from({ length: 8 }, async (_, worker) => {
          for (let round = 0; !stop; round++) {
            const group = `/churn/w${worker}-r${round}`;
            const [first, second] = round % 2 === 0 ? [a, b] : [b, a];
            const put = await first.request("PUT", group, { body: `targets=h${worker}:1` });
            if (put.status !== 200) {
              unsure.add(group);
              continue;
            }
            const del = await second.request("DELETE", group);
            if (del.status === 200) {
              gone.add(group);
              cycles++;
            } else {
              unsure.add(group);
            }
          }
        }),
      );
      await new Promise((resolve) => setTimeout(resolve, 1500));
      const leader = await leaderOf(cluster);
      await leader.kill("SIGKILL");
      await new Promise((resolve) => setTimeout(resolve, 6000));
      await leader.start();
      await new Promise((resolve) => setTimeout(resolve, 3000));
      stop = true;
      await churn;
      // No group whose DELETE was acknowledged is registered, on either instance or in etcd.
      for (const sd of [a, b]) {
        const index = (await request(sd.url, "GET", "/")).body as { groups: { application: string; environment: string }[] };
        const back = index.groups.map(({ application, environment }) => `/${application}/${environment}`).filter((group) => gone.has(group));
        expect(back).toEqual([]);
      }
      // The rest go too; then, past the tombstone age, every deleted group is collected.
      for (const group of unsure) expect((await a.request("DELETE", group)).status).toBeOneOf([200, 404]);
      await eventually(async () => (await keysUnder(`${prefix}groups/`)) === 0, 30_000, "every deleted group to be collected");
      for (const group of gone) expect((await b.request("GET", group)).body).toEqual([]);
      report.push(`churn under a leader kill: ${cycles} groups created and deleted across two instances (${unsure.size} unsure, deleted after), none came back`);
      expect(cycles).toBeGreaterThan(50);
    } finally {
      stop = true;
      await a.close();
      await b.close();
    }
  }, 90_000);
});

function mb(bytes: number): string {
  return (bytes / 1024 / 1024).toFixed(0);
}
