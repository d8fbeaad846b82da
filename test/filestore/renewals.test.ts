import { watch } from "node:fs";
import { mkdir, readFile, rmdir } from "node:fs/promises";
import { join } from "node:path";
import { afterAll, describe, expect, it } from "vitest";
import { JOURNAL_FILE } from "../../src/filestore/journal.js";
import { RENEWAL_FLUSH_MS, RENEWAL_SLACK_MS } from "../../src/rules/registration.js";
import { eventually, makeTempDir, removeDir, request, startTestService } from "../helpers.js";
import { capturingLogger } from "../operability/support.js";
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

  it("renewals at 25/s: one journal append per interval at most, no deadlines file written, and memory serves each renewal at once", async () => {
    const sd = await startTestService({ directory: await directory() });
    const renames = countRenamesOnto(sd.directory, "app@prod.expires");
    const journalLines = async (): Promise<string[]> =>
      (await readFile(join(sd.directory, JOURNAL_FILE), "utf8").catch(() => "")).split("\n").filter((line) => line !== "");
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
      // The last interval's flush lands within an interval and a bit.
      await sleep(RENEWAL_FLUSH_MS + 500);
      // One line per group and append: one per interval that had renewals, plus one for the interval cut at each end.
      const appends = await journalLines();
      const allowed = Math.ceil((elapsed + RENEWAL_FLUSH_MS + 500) / RENEWAL_FLUSH_MS) + 1;
      console.log(`file mode: ${renewals} renewals of one group in ${elapsed} ms, ${appends.length} journal appends (at most ${allowed} allowed), ${renames.count() - before} deadlines file writes`);
      expect(renewals).toBeGreaterThan(50);
      expect(appends.length).toBeGreaterThanOrEqual(1);
      expect(appends.length).toBeLessThanOrEqual(allowed);
      expect(renames.count() - before).toBe(0);
      // The journal's last record of each target is the deadline memory serves.
      const index = ((await sd.request("GET", "/")).body as { groups: IndexLine[] }).groups.find((l) => l.application === "app")!;
      const journaled = new Map<string, string>();
      for (const line of appends) {
        const [key, flat] = JSON.parse(line) as [string, (string | number)[]];
        expect(key).toBe("app@prod");
        for (let i = 0; i < flat.length; i += 3) journaled.set(flat[i] as string, new Date(flat[i + 2] as number).toISOString());
      }
      expect(Object.fromEntries(journaled)).toEqual(index.expires);
      const text = await (await fetch(`${sd.url}/metrics`)).text();
      expect(metric(text, 'file_sd_renewals_total{mode="memory"}')).toBe(renewals);
      expect(metric(text, "file_sd_renewal_flushes_total")).toBeGreaterThanOrEqual(1);
      expect(metric(text, "file_sd_renewal_flushes_total")).toBeLessThanOrEqual(allowed);
      // A clean stop folds the journal into the deadlines file, and the journal goes.
      await sd.close();
      expect(JSON.parse(await readFile(join(sd.directory, "app@prod.expires"), "utf8"))).toEqual(index.expires);
      expect(await journalLines()).toEqual([]);
    } finally {
      renames.close();
      await sd.close();
    }
  }, 20_000);

  it("a renewal that moves a deadline past the slack is journaled before its 200, not written as a deadlines file", async () => {
    const sd = await startTestService({ directory: await directory() });
    const renames = countRenamesOnto(sd.directory, "app@prod.expires");
    try {
      expect((await sd.request("POST", "/app/prod?ttl=1h", { body: "targets=a:1,b:1" })).status).toBe(200);
      await eventually(() => renames.count() >= 1, 2000, "the first deadlines write to be seen");
      // The slack is 2 s: a renewal 2.5 s later moves a:1's deadline further than memory may answer for.
      await sleep(RENEWAL_SLACK_MS + 500);
      const before = renames.count();
      expect((await sd.request("POST", "/app/prod?ttl=1h", { body: "targets=a:1" })).status).toBe(200);
      const served = ((await sd.request("GET", "/")).body as { groups: IndexLine[] }).groups[0]!.expires!["a:1"]!;
      // Right after the answer, before any flush: the journal already holds it.
      const [line] = (await readFile(join(sd.directory, JOURNAL_FILE), "utf8")).split("\n");
      const [key, flat] = JSON.parse(line!) as [string, (string | number)[]];
      expect([key, flat[0], new Date(flat[2] as number).toISOString()]).toEqual(["app@prod", "a:1", served]);
      const text = await (await fetch(`${sd.url}/metrics`)).text();
      expect(metric(text, 'file_sd_renewals_total{mode="durable"}')).toBe(1);
      await sleep(200);
      expect(renames.count() - before).toBe(0);
    } finally {
      renames.close();
      await sd.close();
    }
  });

  it("when the journal cannot be written, renewals go to the deadlines file before their answer, and back to the journal once it can", async () => {
    const dir = await directory();
    const log = capturingLogger("info");
    const sd = await startTestService({ directory: dir, logger: log.logger });
    try {
      expect((await sd.request("POST", "/app/prod?ttl=1h", { body: "targets=a:1,b:1" })).status).toBe(200);
      // A directory where the journal would be: every append fails.
      await mkdir(join(dir, JOURNAL_FILE));
      expect((await sd.request("POST", "/app/prod?ttl=1h", { body: "targets=a:1" })).status).toBe(200);
      await eventually(() => log.lines().some((line) => String(line.msg).startsWith("could not append renewals to the journal")), 3000, "the failed append to be logged");
      // From then on each renewal of the group is in its deadlines file before the answer.
      expect((await sd.request("POST", "/app/prod?ttl=1h", { body: "targets=b:1" })).status).toBe(200);
      const served = ((await sd.request("GET", "/")).body as { groups: IndexLine[] }).groups[0]!.expires!;
      expect(JSON.parse(await readFile(join(dir, "app@prod.expires"), "utf8"))).toEqual(served);
      await rmdir(join(dir, JOURNAL_FILE));
      // Past the slack, so that the renewal is written first: it goes to the journal again, before its answer.
      await sleep(RENEWAL_SLACK_MS + 500);
      expect((await sd.request("POST", "/app/prod?ttl=1h", { body: "targets=a:1" })).status).toBe(200);
      expect(await readFile(join(dir, JOURNAL_FILE), "utf8")).toContain('"app@prod"');
      expect(log.lines().filter((line) => String(line.msg).startsWith("could not append renewals to the journal"))).toHaveLength(1);
    } finally {
      await sd.close();
    }
  });

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

  it("after a SIGKILL the journal's renewals never outlive a later change: a target made permanent stays so, one registered again keeps its new ttl", async () => {
    const dir = await directory();
    let child: ChildService | undefined = await startChildService({ directory: dir, env: { LOGLEVEL: "info" } });
    try {
      const url = child.url;
      const ok = async (method: string, path: string, body: string): Promise<void> => {
        const answer = await request(url, method, path, { body });
        expect(answer.status, `${method} ${path} ${body}`).toBe(200);
      };
      await ok("POST", "/app/prod?ttl=1h", "targets=a:1,b:1");
      await ok("POST", "/app/short?ttl=1h", "targets=x:1,y:1");
      for (let i = 0; i < 5; i++) {
        await sleep(20);
        await ok("POST", "/app/prod?ttl=1h", "targets=a:1");
        await ok("POST", "/app/short?ttl=1h", "targets=x:1");
      }
      // The renewals are journaled, not in the deadlines files.
      await eventually(async () => (await readFile(join(dir, JOURNAL_FILE), "utf8").catch(() => "")).includes('"app@short"'), 3000, "the renewals in the journal");
      // Then changes the journal's records must not undo: both targets of app/prod permanent; x:1 gone and back with 5 s.
      await ok("PUT", "/app/prod", "targets=a:1,b:1");
      await ok("DELETE", "/app/short", "targets=x:1");
      await ok("POST", "/app/short?ttl=5s", "targets=x:1");
      const registeredAgain = Date.now();
      child.signal("SIGKILL");
      await child.exited;
      child = await startChildService({ directory: dir, env: { LOGLEVEL: "info" } });
      const groups = ((await request(child.url, "GET", "/")).body as { groups: IndexLine[] }).groups;
      expect(groups.find((line) => line.environment === "prod")?.expires).toBeUndefined();
      const x = Date.parse(groups.find((line) => line.environment === "short")!.expires!["x:1"]!);
      expect(x).toBeGreaterThanOrEqual(registeredAgain + 5000 - 1000);
      expect(x).toBeLessThanOrEqual(registeredAgain + 5000 + RENEWAL_SLACK_MS + 1000);
      // The journal was folded into the deadlines files at start, and went.
      expect(await readFile(join(dir, JOURNAL_FILE), "utf8").catch((error: NodeJS.ErrnoException) => error.code)).toBe("ENOENT");
    } finally {
      await child?.stop();
    }
  }, 30_000);

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
