import { randomUUID } from "node:crypto";
import { readFile, writeFile } from "node:fs/promises";
import { join } from "node:path";
import { afterAll, afterEach, beforeAll, describe, expect, it } from "vitest";
import { eventually, filesIn, makeTempDir, removeDir, request, startTestService, type TestService, waitUntilReady } from "../helpers.js";
import { AckLedger, readDirectoryState, readServedState, runWriters, seededRandom, type DirectoryState } from "../reliability/write-load.js";
import { startChildService, type ChildService } from "../support/child-service.js";
import { leaderOf, startEtcdCluster, type EtcdCluster } from "../support/etcd.js";

const ETCD_TIMEOUT_MS = 2000;
/** A file that is not ours: never touched. */
const FOREIGN_FILE = "notes.txt";

/**
 * docs/etcd.md under faults, with a real three-member cluster and write load:
 * a member lost, quorum lost and back, an instance SIGKILLed, a compaction
 * past an instance's watch. Each scenario reports sent / acknowledged / lost.
 */
describe("etcd mode under faults", () => {
  let cluster: EtcdCluster;
  const report: string[] = [];
  const started: { close(): Promise<void> }[] = [];

  const env = (prefix: string): Record<string, string> => ({
    ETCD_ENDPOINTS: cluster.endpoints.join(","),
    ETCD_PREFIX: prefix,
    ETCD_TIMEOUT: `${ETCD_TIMEOUT_MS}ms`,
  });
  const instance = async (prefix: string): Promise<TestService> => {
    const sd = await startTestService({ env: env(prefix) });
    started.push(sd);
    return sd;
  };

  beforeAll(async () => {
    cluster = await startEtcdCluster();
  });
  afterEach(async () => {
    await Promise.all(started.splice(0).map((sd) => sd.close()));
    await Promise.all(cluster.members.filter((member) => !member.isRunning()).map((member) => member.start()));
  });
  afterAll(async () => {
    await cluster?.stop();
    console.log(`etcd faults:\n  ${report.join("\n  ")}`);
  });

  /** Every instance's directory and GET hold every acknowledged change; returns the problems. */
  async function contradictions(ledger: AckLedger, instances: readonly { url: string; directory: string }[]): Promise<string[]> {
    const problems: string[] = [];
    for (const [i, sd] of instances.entries()) {
      const directory = await readDirectoryState(sd.directory);
      problems.push(...directory.problems.filter((problem) => problem !== `unexpected file ${FOREIGN_FILE}`), ...ledger.contradictions(directory.groups, `instance ${i} directory`));
      problems.push(...ledger.contradictions(await readServedState(sd.url, ledger.groupKeys()), `instance ${i} GET`));
    }
    return problems;
  }

  async function expectConverged(ledger: AckLedger, instances: readonly { url: string; directory: string }[]): Promise<void> {
    let problems: string[] = [];
    await eventually(async () => (problems = await contradictions(ledger, instances)).length === 0, 5000).catch(() => undefined);
    expect(problems).toEqual([]);
  }

  const groups = Array.from({ length: 10 }, (_, i) => ({ application: "fault", environment: `g${i}` }));

  it("one member SIGKILLed under write load: writes go on and nothing acknowledged is lost", async () => {
    const prefix = `/faults-${randomUUID()}/`;
    const instances = [await instance(prefix), await instance(prefix)];
    const ledger = new AckLedger();
    let stop = false;
    let ackedAfterKill = 0;
    let killedAt = Infinity;
    const load = Promise.all(
      instances.map((sd, i) =>
        runWriters({
          url: sd.url, groups, writers: 8, prefix: `member-${i}`, ledger, random: seededRandom(7 + i),
          shouldStop: () => stop, unavailableMayApply: true,
          onAck: (at) => {
            if (at > killedAt) ackedAfterKill++;
          },
        }),
      ),
    );
    await sleep(800);
    // The leader, to make it an election too.
    const leader = await leaderOf(cluster);
    killedAt = Date.now();
    await leader.kill("SIGKILL");
    await sleep(4000);
    stop = true;
    await load;
    await expectConverged(ledger, instances);
    expect(ackedAfterKill).toBeGreaterThan(0);
    expect(ledger.unexpected).toEqual([]);
    report.push(
      `leader ${leader.name} SIGKILLed: sent ${ledger.sent}, acknowledged ${ledger.acknowledged} (${ackedAfterKill} after the kill), ` +
        `503 ${ledger.unavailable}, lost 0${ledger.unavailable > 0 ? `; a 503 said: ${ledger.unavailableMessages[0]}` : ""}`,
    );
  }, 60_000);

  it("two of three down: writes answer 503 within ETCD_TIMEOUT and change nothing; back up, writes resume and instances converge", async () => {
    const prefix = `/quorum-${randomUUID()}/`;
    const instances = [await instance(prefix), await instance(prefix)];
    const [a, b] = instances as [TestService, TestService];
    const ledger = new AckLedger();
    let stop = false;
    const slowest = { ok: 0, unavailable: 0 };
    const load = Promise.all(
      instances.map((sd, i) =>
        runWriters({
          url: sd.url, groups, writers: 4, prefix: `quorum-${i}`, ledger, random: seededRandom(70 + i),
          shouldStop: () => stop, unavailableMayApply: true,
          onAnswer: (status, ms) => {
            if (status === 503) slowest.unavailable = Math.max(slowest.unavailable, ms);
          },
        }),
      ),
    );
    await sleep(500);
    const [first, second] = cluster.members.slice(1) as [EtcdCluster["members"][number], EtcdCluster["members"][number]];
    await Promise.all([first.kill("SIGKILL"), second.kill("SIGKILL")]);
    const acknowledgedAtLoss = ledger.acknowledged;

    // Reads go on from memory; readiness says why not; writes answer 503 within the bound.
    await eventually(async () => (await request(a.url, "GET", "/-/ready")).status === 503, 5000, "/-/ready to turn 503");
    const ready = await request(a.url, "GET", "/-/ready");
    expect((ready.body as { message: string }).message).toMatch(/etcd \(.*\) (is unreachable or without quorum|after a lost watch)|cannot sync with etcd/);
    expect((await a.request("GET", `/${groups[0]!.application}/${groups[0]!.environment}`)).status).toBe(200);
    // A 503 is not an acknowledgement, and the write may still commit once quorum is back: the
    // surviving member, when it was the leader, keeps the entry in its log.
    ledger.expect({ application: "quorum", environment: "check" }, "x:1", "unknown");
    const refused = await a.request("PUT", "/quorum/check", { body: "targets=x:1" });
    expect(refused.status).toBe(503);
    expect((refused.body as { message: string }).message).toMatch(/etcd \(.*\) could not commit/);

    // Files stay as they are while etcd has no quorum.
    await sleep(ETCD_TIMEOUT_MS + 500);
    const during: DirectoryState[] = await Promise.all(instances.map((sd) => readDirectoryState(sd.directory)));
    const acknowledgedDuring = ledger.acknowledged;
    await sleep(1500);
    const later = await Promise.all(instances.map((sd) => readDirectoryState(sd.directory)));
    expect(later.map((state) => [...state.groups])).toEqual(during.map((state) => [...state.groups]));
    expect(ledger.acknowledged).toBe(acknowledgedDuring);

    await Promise.all([first.start(), second.start()]);
    const resumed = Date.now();
    await waitUntilReady(a.url, 15_000);
    await waitUntilReady(b.url, 15_000);
    const readyMs = Date.now() - resumed;
    const before = ledger.acknowledged;
    await eventually(() => ledger.acknowledged > before + 20, 10_000, "writes to resume");
    stop = true;
    await load;
    await expectConverged(ledger, instances);
    expect(ledger.unexpected).toEqual([]);
    expect(slowest.unavailable).toBeLessThanOrEqual(ETCD_TIMEOUT_MS + 500);
    report.push(
      `quorum lost: sent ${ledger.sent}, acknowledged ${ledger.acknowledged} (${acknowledgedAtLoss} before the loss), 503 ${ledger.unavailable} ` +
        `(slowest 503 after ${slowest.unavailable} ms, ETCD_TIMEOUT ${ETCD_TIMEOUT_MS} ms), lost 0; ready again ${readyMs} ms after the members restarted`,
    );
  }, 90_000);

  it("an instance SIGKILLed and restarted converges: groups it missed, stale and leftover files gone, foreign files kept", async () => {
    const prefix = `/restart-${randomUUID()}/`;
    const directory = await makeTempDir();
    const writer = await instance(prefix);
    let child: ChildService | undefined = await startChildService({ directory, env: env(prefix) });
    try {
      await waitUntilReady(child.url);
      const ledger = new AckLedger();
      let stop = false;
      const load = runWriters({
        url: writer.url, groups, writers: 6, prefix: "restart", ledger, random: seededRandom(700),
        shouldStop: () => stop, unavailableMayApply: true,
      });
      await sleep(500);
      child.signal("SIGKILL");
      await child.exited;
      // While it is down: a file etcd never had, a crash leftover, a foreign file.
      await writeFile(join(directory, "stale@prod.json"), '[{"targets":["old:1"],"labels":{"job":"stale","env":"prod"}}]\n');
      await writeFile(join(directory, "fault@g1.json.12345"), "half");
      await writeFile(join(directory, FOREIGN_FILE), "mine");
      await sleep(500);
      child = await startChildService({ directory, env: env(prefix) });
      await waitUntilReady(child.url);
      stop = true;
      await load;
      await expectConverged(ledger, [writer, { url: child.url, directory }]);
      const names = await filesIn(directory);
      expect(names).toContain(FOREIGN_FILE);
      expect(names).not.toContain("stale@prod.json");
      expect(names).not.toContain("fault@g1.json.12345");
      expect(await readFile(join(directory, FOREIGN_FILE), "utf8")).toBe("mine");
      report.push(`instance SIGKILLed and restarted: sent ${ledger.sent}, acknowledged ${ledger.acknowledged}, lost 0; restart to ready ${child.startMs} ms + sync`);
    } finally {
      await child?.stop();
      await removeDir(directory);
    }
  }, 60_000);

  it("a compaction past an instance's watch revision makes it resync", async () => {
    const prefix = `/compact-${randomUUID()}/`;
    const directory = await makeTempDir();
    const writer = await instance(prefix);
    const child = await startChildService({ directory, env: env(prefix) });
    try {
      await waitUntilReady(child.url);
      // Frozen, its watch falls behind: etcd cannot send it events, and then compacts them away.
      child.signal("SIGSTOP");
      // 16 MB of events: more than etcd can hand a stopped client however the writes share transactions.
      const label = "x".repeat(8000);
      for (let round = 0; round < 40; round++) {
        await Promise.all(
          Array.from({ length: 50 }, (_, i) =>
            writer.request("PUT", `/compact/g${i}`, { body: { targets: [`r${round}:1`], labels: { filler: label } } }),
          ),
        );
      }
      await writer.request("PUT", "/compact/final", { body: "targets=last:1" });
      await cluster.compact();
      child.signal("SIGCONT");
      await eventually(
        async () => {
          const state = await readDirectoryState(directory);
          return state.groups.get("compact/final")?.[0] === "last:1" && Array.from({ length: 50 }, (_, i) => state.groups.get(`compact/g${i}`)?.[0]).every((target) => target === "r39:1");
        },
        10_000,
        "the frozen instance to catch up",
      );
      await waitUntilReady(child.url);
      expect(await (await fetch(`${child.url}/metrics`)).text()).toMatch(/^file_sd_etcd_watch_restarts_total [1-9]/m);
      expect(child.logs.some((line) => /canceled|compact/i.test(line.msg))).toBe(true);
      report.push("compaction past a frozen instance's watch: it resynced and converged");
    } finally {
      child.signal("SIGCONT");
      await child.stop();
      await removeDir(directory);
    }
  }, 90_000);
});

function sleep(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms));
}
