import { randomUUID } from "node:crypto";
import { Etcd3 } from "etcd3";
import { pino } from "pino";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { GROUPS_PER_TRANSACTION } from "../../src/etcdstore/commit.js";
import { EXPIRY_GRACE_MS, RENEWAL_FLUSH_MS } from "../../src/rules/registration.js";
import { eventually, request, startTestService, type TestService } from "../helpers.js";
import { startEtcdCluster, type EtcdCluster } from "../support/etcd.js";

type Group = { targets: string[]; labels: Record<string, string> };
const sleep = (ms: number): Promise<void> => new Promise((resolve) => setTimeout(resolve, ms));
const metric = (text: string, series: string): number => Number(new RegExp(`^${series.replace(/[{}"]/g, "\\$&")} (\\d+)`, "m").exec(text)?.[1] ?? NaN);

/**
 * etcd mode, renewals (docs/heartbeats.md), on a real three-member cluster: an
 * instance answers renewals from memory and commits each group's at most once
 * per RENEWAL_FLUSH_MS; every instance waits EXPIRY_GRACE_MS past a deadline
 * before it expires a target, so a renewal sent to one keeps the target on all.
 */
describe("renewals in etcd mode", () => {
  let cluster: EtcdCluster;
  let client: Etcd3;
  const started: TestService[] = [];
  const report: string[] = [];
  const start = async (prefix: string, env: Record<string, string> = {}): Promise<TestService> => {
    const sd = await startTestService({ env: { ETCD_ENDPOINTS: cluster.endpoints.join(","), ETCD_PREFIX: prefix, ...env } });
    started.push(sd);
    return sd;
  };
  /** How many times the key was written (etcd counts every put in the key's version). */
  const versionOf = async (key: string): Promise<number> => Number((await client.get(key).exec()).kvs[0]?.version ?? 0);
  const targetsOn = async (sd: TestService, path: string): Promise<string[]> => ((await request(sd.url, "GET", path)).body as Group[] | undefined)?.[0]?.targets ?? [];

  beforeAll(async () => {
    cluster = await startEtcdCluster();
    client = new Etcd3({ hosts: [...cluster.endpoints] });
  });
  afterAll(async () => {
    await Promise.all(started.map((sd) => sd.close()));
    client?.close();
    await cluster?.stop();
    console.log(`etcd renewals:\n  ${report.join("\n  ")}`);
  });

  it("renewals at 25/s on one instance commit the group's deadlines about once per interval", async () => {
    const prefix = `/renew-${randomUUID()}/`;
    const [a, b] = [await start(prefix), await start(prefix)];
    expect((await a.request("POST", "/fleet/prod?ttl=1h", { body: "targets=h:1,h:2" })).status).toBe(200);
    const key = `${prefix}expires/fleet@prod`;
    const before = await versionOf(key);
    expect(before).toBeGreaterThanOrEqual(1);
    const started = Date.now();
    let renewals = 0;
    while (Date.now() - started < 4000) {
      const answer = await a.request("POST", "/fleet/prod?ttl=1h", { body: `targets=h:${(renewals % 2) + 1}` });
      expect(answer.status).toBe(200);
      renewals++;
      await sleep(30);
    }
    const elapsed = Date.now() - started;
    await sleep(RENEWAL_FLUSH_MS + 1000);
    const txns = (await versionOf(key)) - before;
    const allowed = Math.ceil((elapsed + RENEWAL_FLUSH_MS + 1000) / RENEWAL_FLUSH_MS) + 1;
    report.push(`${renewals} renewals in ${elapsed} ms on one instance: ${txns} writes of the group's deadlines key (at most ${allowed} allowed)`);
    expect(renewals).toBeGreaterThan(80);
    expect(txns).toBeGreaterThanOrEqual(1);
    expect(txns).toBeLessThanOrEqual(allowed);
    const text = await (await fetch(`${a.url}/metrics`)).text();
    expect(metric(text, 'file_sd_renewals_total{mode="memory"}')).toBeGreaterThan(renewals / 2);
    // Once flushed, both instances serve what etcd holds.
    const expires = async (sd: TestService): Promise<unknown> =>
      ((await sd.request("GET", "/")).body as { groups: { application: string; expires?: Record<string, string> }[] }).groups.find((g) => g.application === "fleet")?.expires;
    const inEtcd: unknown = JSON.parse((await client.get(key).string())!);
    expect(await expires(a)).toEqual(inEtcd);
    await eventually(async () => JSON.stringify(await expires(b)) === JSON.stringify(inEtcd), 2000, "b to serve etcd's deadlines");
  }, 30_000);

  /** What etcd holds for a group's deadlines: target → ms since the epoch. */
  const deadlinesInEtcd = async (prefix: string, key: string): Promise<Map<string, number>> =>
    new Map(Object.entries(JSON.parse((await client.get(`${prefix}expires/${key}`).string()) ?? "{}") as Record<string, string>).map(([target, at]) => [target, Date.parse(at)]));
  const revisionOf = async (): Promise<number> => Number((await client.get("revision-probe").exec()).header.revision);

  it("renewals of 120 groups on one instance: their flushes share transactions, and etcd ends with every deadline served", async () => {
    const prefix = `/many-${randomUUID()}/`;
    // 120 requests at a time take most of a second here: a slack for hosts renewing that seldom (docs/heartbeats.md), whose interval is still 1 s.
    const env = { RENEWAL_SLACK: "4s" };
    const [a, b] = [await start(prefix, env), await start(prefix, env)];
    const groups = Array.from({ length: 120 }, (_, i) => `/many/g${i}`);
    for (const path of groups) expect((await a.request("POST", `${path}?ttl=1h`, { body: "targets=m:1,m:2" })).status).toBe(200);
    const before = await revisionOf();
    const started = Date.now();
    let renewals = 0;
    while (Date.now() - started < 3000) {
      const answers = await Promise.all(groups.map((path) => a.request("POST", `${path}?ttl=1h`, { body: "targets=m:1,m:2" })));
      for (const answer of answers) expect(answer.status).toBe(200);
      renewals += answers.length;
      await sleep(200);
    }
    const elapsed = Date.now() - started;
    await sleep(RENEWAL_FLUSH_MS + 1500);
    const transactions = (await revisionOf()) - before;
    // One transaction per group per interval would be groups × intervals; they go up to GROUPS_PER_TRANSACTION at a time.
    const intervals = Math.ceil((elapsed + RENEWAL_FLUSH_MS + 1500) / RENEWAL_FLUSH_MS);
    const alone = groups.length * (intervals - 2);
    const modes = await (await fetch(`${a.url}/metrics`)).text();
    report.push(
      `${renewals} renewals of ${groups.length} groups in ${elapsed} ms: ${transactions} etcd transactions (one per group per interval would be about ${alone}); ` +
        `from memory ${metric(modes, 'file_sd_renewals_total{mode="memory"}')}, written first ${metric(modes, 'file_sd_renewals_total{mode="durable"}')}, flushes ${metric(modes, "file_sd_renewal_flushes_total")}`,
    );
    expect(renewals).toBeGreaterThan(groups.length * 3);
    expect(transactions).toBeGreaterThanOrEqual(Math.ceil(groups.length / GROUPS_PER_TRANSACTION));
    expect(transactions).toBeLessThan(alone / 4);
    // Every group's deadlines in etcd are the ones a serves, and b serves them too.
    const served = async (sd: TestService): Promise<Map<string, unknown>> =>
      new Map(((await sd.request("GET", "/")).body as { groups: { environment: string; expires?: Record<string, string> }[] }).groups.map((g) => [g.environment, g.expires]));
    const onA = await served(a);
    for (const [i] of groups.entries()) {
      const inEtcd = Object.fromEntries([...(await deadlinesInEtcd(prefix, `many@g${i}`))].map(([target, at]) => [target, new Date(at).toISOString()]));
      expect(onA.get(`g${i}`), `g${i}`).toEqual(inEtcd);
    }
    await eventually(async () => JSON.stringify([...(await served(b))].sort()) === JSON.stringify([...onA].sort()), 3000, "b to serve etcd's deadlines");
  }, 60_000);

  it("two instances renewing the same 40 groups at once: every renewal either acknowledged ends up in etcd", async () => {
    const prefix = `/both-${randomUUID()}/`;
    const [a, b] = [await start(prefix), await start(prefix)];
    const ttlMs = 3_600_000;
    const groups = Array.from({ length: 40 }, (_, i) => i);
    for (const i of groups) expect((await a.request("POST", `/both/g${i}?ttl=1h`, { body: "targets=t:1,t:2,t:3" })).status).toBe(200);
    await eventually(async () => ((await b.request("GET", "/")).body as { groups: unknown[] }).groups.length === groups.length, 3000, "b to have every group");
    // Per group and target: the latest deadline an acknowledged renewal promised (sent + ttl at least).
    const promised = new Map<string, number>();
    const started = Date.now();
    let renewals = 0;
    await Promise.all(
      [a, b].map(async (sd, n) => {
        while (Date.now() - started < 3000) {
          await Promise.all(
            groups.map(async (i) => {
              const target = `t:${((i + renewals + n) % 3) + 1}`;
              const sent = Date.now();
              const answer = await sd.request("POST", `/both/g${i}?ttl=1h`, { body: `targets=${target}` });
              expect(answer.status).toBe(200);
              renewals++;
              const key = `${i} ${target}`;
              promised.set(key, Math.max(promised.get(key) ?? 0, sent + ttlMs));
            }),
          );
          await sleep(100 + n * 37);
        }
      }),
    );
    await sleep(RENEWAL_FLUSH_MS + 1500);
    let short = 0;
    for (const i of groups) {
      const inEtcd = await deadlinesInEtcd(prefix, `both@g${i}`);
      for (const target of ["t:1", "t:2", "t:3"]) {
        const wanted = promised.get(`${i} ${target}`);
        if (wanted !== undefined && !((inEtcd.get(target) ?? 0) >= wanted)) short++;
      }
    }
    const text = await (await fetch(`${a.url}/metrics`)).text();
    report.push(`two instances, ${renewals} renewals of ${groups.length} groups: ${short} deadlines in etcd short of an acknowledged renewal; conflicts on a: ${metric(text, "file_sd_etcd_txn_conflicts_total")}`);
    expect(renewals).toBeGreaterThan(groups.length * 10);
    expect(short).toBe(0);
  }, 60_000);

  it("an etcd that takes fewer operations in a transaction than its default: the flushes go in smaller transactions, and every one commits", async () => {
    const small = await startEtcdCluster({ size: 1, flags: ["--max-txn-ops=16"] });
    const prefix = `/small-${randomUUID()}/`;
    const sd = await startTestService({ env: { ETCD_ENDPOINTS: small.endpoints.join(","), ETCD_PREFIX: prefix } });
    const smallClient = new Etcd3({ hosts: [...small.endpoints] });
    try {
      const groups = Array.from({ length: 30 }, (_, i) => `/small/g${i}`);
      for (const path of groups) expect((await sd.request("POST", `${path}?ttl=1h`, { body: "targets=s:1" })).status).toBe(200);
      await sleep(100);
      const renewed = await Promise.all(groups.map((path) => sd.request("POST", `${path}?ttl=1h`, { body: "targets=s:1" })));
      for (const answer of renewed) expect(answer.status).toBe(200);
      const served = ((await sd.request("GET", "/")).body as { groups: { environment: string; expires: Record<string, string> }[] }).groups;
      const inEtcd = async (environment: string): Promise<unknown> => JSON.parse((await smallClient.get(`${prefix}expires/small@${environment}`).string()) ?? "{}");
      await eventually(async () => {
        for (const { environment, expires } of served) if (JSON.stringify(await inEtcd(environment)) !== JSON.stringify(expires)) return false;
        return true;
      }, 5000, "every group's renewal in etcd");
      const text = await (await fetch(`${sd.url}/metrics`)).text();
      expect(metric(text, 'file_sd_renewals_total{mode="memory"}')).toBe(groups.length);
      expect(metric(text, "file_sd_renewal_flushes_total")).toBe(groups.length);
    } finally {
      await sd.close();
      smallClient.close();
      await small.stop();
    }
  }, 60_000);

  it("a renewal sent to one instance keeps the target on the other past its first deadline; once renewals stop both drop it within ttl + grace + 2 s", async () => {
    const prefix = `/alive-${randomUUID()}/`;
    const [a, b] = [await start(prefix), await start(prefix)];
    const ttlMs = 3000;
    expect((await a.request("PUT", "/alive/prod", { body: "targets=perm:1" })).status).toBe(200);
    let last = { sent: Date.now(), answered: Date.now() };
    expect((await a.request("POST", "/alive/prod?ttl=3s", { body: "targets=x:1" })).status).toBe(200);
    last.answered = Date.now();
    await eventually(async () => (await targetsOn(b, "/alive/prod")).includes("x:1"), 2000, "b to have x:1");
    let stop = false;
    const renewing = (async () => {
      while (!stop) {
        await sleep(1000);
        if (stop) break;
        const sent = Date.now();
        const answer = await request(a.url, "POST", "/alive/prod?ttl=3s", { body: "targets=x:1" });
        expect(answer.status).toBe(200);
        last = { sent, answered: Date.now() };
      }
    })();
    const watchedFrom = Date.now();
    let looks = 0;
    try {
      while (Date.now() - watchedFrom < 8000) {
        expect(await targetsOn(b, "/alive/prod"), "b keeps x:1 while a renews it").toContain("x:1");
        looks++;
        await sleep(100);
      }
    } finally {
      stop = true;
      await renewing;
    }
    expect(looks).toBeGreaterThan(40);
    const gone = new Map<string, number>();
    const bound = ttlMs + EXPIRY_GRACE_MS + 2000 + 1000;
    while (gone.size < 2 && Date.now() - last.answered < bound + 1000) {
      for (const [name, sd] of [["a", a], ["b", b]] as const) if (!gone.has(name) && !(await targetsOn(sd, "/alive/prod")).includes("x:1")) gone.set(name, Date.now());
      await sleep(50);
    }
    for (const name of ["a", "b"]) {
      const at = gone.get(name);
      expect(at, `${name} to drop x:1`).toBeDefined();
      expect(at! - last.sent, `${name} kept x:1 for its ttl`).toBeGreaterThanOrEqual(ttlMs);
      expect(at! - last.answered, `${name} dropped x:1 within ttl + grace + 2 s`).toBeLessThanOrEqual(bound);
    }
    report.push(`x:1 (ttl 3 s) renewed on a for 8 s, seen on b ${looks} times; dropped ${gone.get("a")! - last.answered} ms (a) and ${gone.get("b")! - last.answered} ms (b) after the last renewal`);
    expect(await targetsOn(b, "/alive/prod")).toEqual(["perm:1"]);
  }, 40_000);

  it("a DELETE on another instance of a target with pending renewals wins: it does not come back", async () => {
    const prefix = `/del-${randomUUID()}/`;
    const [a, b] = [await start(prefix), await start(prefix)];
    for (let round = 0; round < 3; round++) {
      const path = `/del/r${round}`;
      expect((await a.request("POST", `${path}?ttl=1h`, { body: "targets=d:1,e:1" })).status).toBe(200);
      await eventually(async () => (await targetsOn(b, path)).includes("d:1"), 2000, "b to have the group");
      const memoryBefore = metric(await (await fetch(`${a.url}/metrics`)).text(), 'file_sd_renewals_total{mode="memory"}');
      for (let i = 0; i < 3; i++) expect((await a.request("POST", `${path}?ttl=1h`, { body: "targets=d:1" })).status).toBe(200);
      // The renewals wait in a's memory for their flush.
      expect(metric(await (await fetch(`${a.url}/metrics`)).text(), 'file_sd_renewals_total{mode="memory"}')).toBeGreaterThan(memoryBefore);
      await sleep(round * 300);
      expect((await b.request("DELETE", path, { body: "targets=d:1" })).status).toBe(200);
      // Past a's flush, and another interval.
      await sleep(2 * RENEWAL_FLUSH_MS + 500);
      for (const sd of [a, b]) expect(await targetsOn(sd, path)).toEqual(["e:1"]);
      const inEtcd = JSON.parse((await client.get(`${prefix}expires/del@r${round}`).string())!) as Record<string, string>;
      expect(Object.keys(inEtcd)).toEqual(["e:1"]);
      expect(JSON.parse((await client.get(`${prefix}groups/del@r${round}`).string())!)).toEqual([{ targets: ["e:1"], labels: { job: "del", env: `r${round}` } }]);
    }
  }, 40_000);

  it("a renewal answered from memory just before the quorum goes is committed as soon as the instance is in step again; without quorum renewals get the 503 every write gets", async () => {
    const prefix = `/quorum-${randomUUID()}/`;
    const lines: string[] = [];
    const a = await startTestService({
      env: { ETCD_ENDPOINTS: cluster.endpoints.join(","), ETCD_PREFIX: prefix },
      logger: pino({ level: "info" }, { write: (line: string) => void lines.push(line) }),
    });
    started.push(a);
    const key = `${prefix}expires/q@prod`;
    const servedDeadline = async (): Promise<string | undefined> =>
      ((await a.request("GET", "/")).body as { groups: { application: string; expires?: Record<string, string> }[] }).groups.find((g) => g.application === "q")?.expires?.["q:1"];
    const logged = (message: string): boolean => lines.some((line) => line.includes(message));
    expect((await a.request("POST", "/q/prod?ttl=1h", { body: "targets=q:1" })).status).toBe(200);
    await sleep(50);
    const memoryBefore = metric(await (await fetch(`${a.url}/metrics`)).text(), 'file_sd_renewals_total{mode="memory"}');
    expect((await a.request("POST", "/q/prod?ttl=1h", { body: "targets=q:1" })).status).toBe(200);
    expect(metric(await (await fetch(`${a.url}/metrics`)).text(), 'file_sd_renewals_total{mode="memory"}')).toBe(memoryBefore + 1);
    const served = await servedDeadline();
    // The renewal's flush is due a second after it: by then the quorum is gone, and it cannot commit.
    const [, second, third] = cluster.members;
    await Promise.all([second!.kill(), third!.kill()]);
    try {
      await eventually(async () => (await a.request("GET", "/-/ready")).status === 503, 10_000, "a to notice etcd without quorum");
      const answer = await a.request("POST", "/q/prod?ttl=1h", { body: "targets=q:1" });
      expect(answer.status).toBe(503);
      // What a serves did not move: the refused renewal changed nothing.
      expect(await servedDeadline()).toBe(served);
      await eventually(() => logged("could not commit renewals answered from memory"), 15_000, "the flush to fail without quorum");
    } finally {
      await Promise.all([second!.start(), third!.start()]);
    }
    await cluster.waitHealthy();
    await eventually(async () => (await a.request("GET", "/-/ready")).status === 200, 20_000, "a to be in step again");
    // Tried again as soon as a is in step, not at the end of its backoff (up to 10 s by then).
    // etcd may also come to hold the refused renewal's later deadline: a 503 is "not acknowledged", and
    // the proposal it sent can still be applied once the quorum is back. Either covers what was served.
    const inEtcd = async (): Promise<string> => (JSON.parse((await client.get(key).string()) ?? "{}") as Record<string, string>)["q:1"] ?? "";
    const committedIn = await eventually(async () => (await inEtcd()) >= served!, 3000, "the pending renewal to be committed once a is in step again");
    report.push(`without quorum: the renewal answered from memory just before was in etcd ${committedIn} ms after a was ready again`);
    // And the group's renewals are answered from memory again: after one committed (etcd's deadline is
    // seconds old, more than RENEWAL_SLACK), the next is.
    await eventually(() => logged("renewals committed to etcd again"), 3000, "a to say its renewals are committed again");
    expect((await a.request("POST", "/q/prod?ttl=1h", { body: "targets=q:1" })).status).toBe(200);
    await sleep(50);
    const memoryAfter = metric(await (await fetch(`${a.url}/metrics`)).text(), 'file_sd_renewals_total{mode="memory"}');
    expect((await a.request("POST", "/q/prod?ttl=1h", { body: "targets=q:1" })).status).toBe(200);
    expect(metric(await (await fetch(`${a.url}/metrics`)).text(), 'file_sd_renewals_total{mode="memory"}'), "a renewal after the outage is answered from memory").toBe(memoryAfter + 1);
  }, 90_000);
});
