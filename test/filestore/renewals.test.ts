import { watch } from "node:fs";
import { readFile } from "node:fs/promises";
import { join } from "node:path";
import { afterAll, describe, expect, it } from "vitest";
import { RENEWAL_FLUSH_MS, RENEWAL_SLACK_MS } from "../../src/rules/registration.js";
import { eventually, makeTempDir, removeDir, request, startTestService } from "../helpers.js";
import { startChildService, type ChildService } from "../support/child-service.js";

type Group = { targets: string[]; labels: Record<string, string> };
type IndexLine = { application: string; environment: string; expires?: Record<string, string> };
const sleep = (ms: number): Promise<void> => new Promise((resolve) => setTimeout(resolve, ms));

/** Every rename onto `name` in `directory` (the atomic writer's last step): one per write of that file. */
function countRenamesOnto(directory: string, name: string): { count(): number; close(): void } {
  let count = 0;
  const watcher = watch(directory, (event, file) => {
    if (event === "rename" && file === name) count++;
  });
  return { count: () => count, close: () => watcher.close() };
}

const metric = (text: string, series: string): number => Number(new RegExp(`^${series.replace(/[{}"]/g, "\\$&")} (\\d+)`, "m").exec(text)?.[1] ?? NaN);

/**
 * File mode, renewals (docs/heartbeats.md): a POST ?ttl= that only moves
 * deadlines later is answered from memory and the deadlines file is written
 * at most once per RENEWAL_FLUSH_MS for every renewal of the interval; any
 * other change is on disk before its answer; a SIGKILL loses no renewal a
 * restart does not make up for.
 */
describe("renewals in file mode", () => {
  const directories: string[] = [];
  afterAll(async () => {
    for (const directory of directories) await removeDir(directory);
  });
  const directory = async (): Promise<string> => {
    const made = await makeTempDir("file-sd-renewals-");
    directories.push(made);
    return made;
  };

  it("renewals at 25/s write a group's deadlines at most once per interval, and memory serves each renewal at once", async () => {
    const sd = await startTestService({ directory: await directory() });
    const renames = countRenamesOnto(sd.directory, "app@prod.expires");
    try {
      expect((await sd.request("POST", "/app/prod?ttl=1h", { body: "targets=a:1,b:1" })).status).toBe(200);
      expect((await sd.request("POST", "/other/prod?ttl=1h", { body: "targets=c:1" })).status).toBe(200);
      // The first write's rename has been seen (the watch is asynchronous), then only renewals follow.
      await eventually(() => renames.count() >= 1, 2000, "the first deadlines write to be seen");
      const before = renames.count();
      const started = Date.now();
      let renewals = 0;
      let last = "";
      while (Date.now() - started < 3000) {
        const target = renewals % 2 === 0 ? "a:1" : "b:1";
        const answer = await sd.request("POST", "/app/prod?ttl=1h", { body: `targets=${target}` });
        expect(answer.status).toBe(200);
        renewals++;
        // What memory serves is the renewal, at once: the index shows the new deadline right after the 200.
        const line = ((await sd.request("GET", "/")).body as { groups: IndexLine[] }).groups.find((l) => l.application === "app")!;
        expect(line.expires![target]! > last || renewals <= 2).toBe(true);
        last = line.expires![target]!;
        await sleep(40);
      }
      const elapsed = Date.now() - started;
      // The last interval's flush lands (and is seen) within an interval and a bit.
      await sleep(RENEWAL_FLUSH_MS + 500);
      const writes = renames.count() - before;
      // One write per interval that had renewals, plus one for the interval cut at each end.
      const allowed = Math.ceil((elapsed + RENEWAL_FLUSH_MS + 500) / RENEWAL_FLUSH_MS) + 1;
      console.log(`file mode: ${renewals} renewals of one group in ${elapsed} ms, ${writes} writes of its deadlines file (at most ${allowed} allowed)`);
      expect(renewals).toBeGreaterThan(50);
      expect(writes).toBeGreaterThanOrEqual(1);
      expect(writes).toBeLessThanOrEqual(allowed);
      // After the last flush, the file holds what memory serves.
      const index = ((await sd.request("GET", "/")).body as { groups: IndexLine[] }).groups.find((l) => l.application === "app")!;
      expect(JSON.parse(await readFile(join(sd.directory, "app@prod.expires"), "utf8"))).toEqual(index.expires);
      const text = await (await fetch(`${sd.url}/metrics`)).text();
      expect(metric(text, 'file_sd_renewals_total{mode="memory"}')).toBe(renewals);
      expect(metric(text, "file_sd_renewal_flushes_total")).toBeGreaterThanOrEqual(1);
      expect(metric(text, "file_sd_renewal_flushes_total")).toBeLessThanOrEqual(allowed);
    } finally {
      renames.close();
      await sd.close();
    }
  }, 20_000);

  it("a renewal that adds a target, or changes a label, is on disk before its 200; a stop writes what renewals left in memory", async () => {
    const dir = await directory();
    const sd = await startTestService({ directory: dir });
    try {
      await sd.request("POST", "/app/prod?ttl=1h", { body: "targets=a:1" });
      expect((await sd.request("POST", "/app/prod?ttl=1h", { body: "targets=a:1,c:1" })).status).toBe(200);
      const [group] = JSON.parse(await readFile(join(dir, "app@prod.json"), "utf8")) as Group[];
      expect(group!.targets).toEqual(["a:1", "c:1"]);
      expect(Object.keys(JSON.parse(await readFile(join(dir, "app@prod.expires"), "utf8")) as object).sort()).toEqual(["a:1", "c:1"]);
      expect((await sd.request("POST", "/app/prod?ttl=1h", { body: "targets=a:1&team=core" })).status).toBe(200);
      expect((JSON.parse(await readFile(join(dir, "app@prod.json"), "utf8")) as Group[])[0]!.labels.team).toBe("core");
      // A renewal alone: answered from memory; the stop right after it still writes it.
      await sleep(5);
      expect((await sd.request("POST", "/app/prod?ttl=2h", { body: "targets=c:1" })).status).toBe(200);
      const served = ((await sd.request("GET", "/")).body as { groups: IndexLine[] }).groups[0]!.expires!;
      await sd.close();
      expect(JSON.parse(await readFile(join(dir, "app@prod.expires"), "utf8"))).toEqual(served);
    } finally {
      await sd.close();
    }
  });

  /**
   * Renewers every 100 ms (ttl 3 s) and every 2.5 s (ttl 6 s) until a SIGKILL `killDelayMs` after
   * the slow ones' second renewal was answered, before the flush that would carry it; then a restart.
   * Returns how the renewals before the kill were answered.
   */
  const crashUnderRenewals = async (slackMs: number, killDelayMs: number): Promise<{ memory: number; durable: number }> => {
    const scanMs = 2000;
    const allowanceMs = 1500;
    const renewers = [
      ...Array.from({ length: 6 }, (_, i) => ({ path: `/fast/g${i % 3}`, target: `fast-${i}:1`, everyMs: 100, ttlMs: 3000 })),
      ...Array.from({ length: 3 }, (_, i) => ({ path: `/slow/g${i}`, target: `slow-${i}:1`, everyMs: 2500, ttlMs: 6000 })),
    ];
    const env = { LOGLEVEL: "info", RENEWAL_SLACK: `${slackMs}ms` };
    const dir = await directory();
    let child: ChildService | undefined = await startChildService({ directory: dir, env });
    try {
      const url = child.url;
      const acknowledged = new Map<string, { sent: number; answered: number }>();
      const answers = new Map<string, number>();
      let stop = false;
      const loops = renewers.map(async ({ path, target, everyMs, ttlMs }) => {
        while (!stop) {
          const sent = Date.now();
          const answer = await request(url, "POST", `${path}?ttl=${ttlMs / 1000}s`, { body: `targets=${target}` }).catch(() => undefined);
          if (answer?.status === 200) {
            acknowledged.set(target, { sent, answered: Date.now() });
            answers.set(target, (answers.get(target) ?? 0) + 1);
          }
          else if (answer !== undefined) throw new Error(`renewal of ${target} answered ${answer.status}`);
          await sleep(everyMs);
        }
      });
      await eventually(() => renewers.every(({ target }) => (answers.get(target) ?? 0) >= 2), 10_000, "every renewer's second renewal");
      await sleep(killDelayMs);
      const metrics = await (await fetch(`${url}/metrics`)).text();
      child.signal("SIGKILL");
      await child.exited;
      stop = true;
      await Promise.all(loops);
      expect(acknowledged.size).toBe(renewers.length);

      child = await startChildService({ directory: dir, env });
      const restarted = child;
      const goneAt = new Map<string, number>();
      const deadline = Math.max(...[...acknowledged.values()].map(({ answered }) => answered)) + 6000 + slackMs + scanMs + allowanceMs;
      while (goneAt.size < renewers.length && Date.now() < deadline + 1000) {
        const polled = Date.now();
        for (const { path, target } of renewers) {
          if (goneAt.has(target)) continue;
          const answer = await request(restarted.url, "GET", path);
          const targets = answer.status === 200 ? ((answer.body as Group[] | undefined)?.[0]?.targets ?? []) : [];
          if (!targets.includes(target)) goneAt.set(target, polled);
        }
        await sleep(50);
      }
      for (const { target, ttlMs } of renewers) {
        const { sent, answered } = acknowledged.get(target)!;
        const gone = goneAt.get(target);
        expect(gone, `${target} to go`).toBeDefined();
        // The lower bound: the last acknowledged renewal was applied after it was sent.
        expect(gone! - sent, `${target} kept for its ttl`).toBeGreaterThanOrEqual(ttlMs);
        expect(gone! - answered, `${target} gone within ttl + slack + scan`).toBeLessThanOrEqual(ttlMs + slackMs + scanMs + allowanceMs);
      }
      return { memory: metric(metrics, 'file_sd_renewals_total{mode="memory"}'), durable: metric(metrics, 'file_sd_renewals_total{mode="durable"}') };
    } finally {
      await child?.stop();
    }
  };

  it("SIGKILL under renewals: no renewed target goes before ttl after its last acknowledged renewal, and one no longer renewed goes within ttl + slack + 2 s", async () => {
    // The slow renewers move their deadline 2.5 s at a time, more than the 2 s slack: written before their answer.
    for (const killDelayMs of [100, 450]) {
      const { memory, durable } = await crashUnderRenewals(RENEWAL_SLACK_MS, killDelayMs);
      expect(memory).toBeGreaterThan(50);
      expect(durable).toBeGreaterThanOrEqual(3);
    }
  }, 60_000);

  it("with RENEWAL_SLACK=8s renewals every 2.5 s are answered from memory too, and a SIGKILL still keeps every ttl", async () => {
    const { memory, durable } = await crashUnderRenewals(8000, 100);
    expect(memory).toBeGreaterThan(50);
    expect(durable).toBe(0);
  }, 60_000);
});
