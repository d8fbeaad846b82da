import { readFile, writeFile } from "node:fs/promises";
import { join } from "node:path";
import { afterAll, describe, expect, it } from "vitest";
import { RENEWAL_SLACK_MS } from "../../src/rules/registration.js";
import { eventually, filesIn, makeTempDir, removeDir, request, startTestService } from "../helpers.js";
import { startChildService, type ChildService } from "../support/child-service.js";

type Group = { targets: string[]; labels: Record<string, string> };
const iso = (ms: number): string => new Date(ms).toISOString();

/**
 * File mode keeps deadlines in `<application>@<environment>.expires` beside the
 * group file (docs/api.md). These tests set up the directory states a crash can
 * leave and check what a start makes of them, then SIGKILL a real process
 * while it writes expiries.
 */
describe("deadlines in the directory", () => {
  const directories: string[] = [];
  afterAll(async () => {
    for (const directory of directories) await removeDir(directory);
  });
  const directory = async (): Promise<string> => {
    const made = await makeTempDir("file-sd-expiry-");
    directories.push(made);
    return made;
  };

  it("are written beside the group under a name that never ends in .json, and go with the group", async () => {
    const sd = await startTestService({ directory: await directory() });
    try {
      await sd.request("PUT", "/app/prod?ttl=1h", { body: "targets=a:1" });
      const line = ((await sd.request("GET", "/")).body as { groups: { expires: Record<string, string> }[] }).groups[0]!;
      expect((await filesIn(sd.directory)).sort()).toEqual(["app@prod.expires", "app@prod.json"]);
      expect(JSON.parse(await readFile(join(sd.directory, "app@prod.expires"), "utf8"))).toEqual(line.expires);
      // Permanent again: the deadlines file goes.
      await sd.request("PUT", "/app/prod", { body: "targets=a:1" });
      expect(await filesIn(sd.directory)).toEqual(["app@prod.json"]);
      await sd.request("POST", "/app/prod?ttl=1h", { body: "targets=b:1" });
      await sd.request("DELETE", "/app/prod");
      expect(await filesIn(sd.directory)).toEqual([]);
    } finally {
      await sd.close();
    }
  });

  it("at start: what a crash between the two writes can leave fits together", async () => {
    const dir = await directory();
    const past = Date.now() - 60_000;
    const future = Date.now() + 3_600_000;
    const group = (targets: string[]) => `${JSON.stringify([{ targets, labels: { job: "x", env: "y" } }])}\n`;
    // Crash after the deadlines, before the group: the old group, deadlines that also cover its leaving target.
    await writeFile(join(dir, "a@prod.json"), group(["stay:1", "leaving:1"]));
    await writeFile(join(dir, "a@prod.expires"), JSON.stringify({ "stay:1": iso(future), "leaving:1": iso(past), "new:1": iso(future) }));
    // Crash between removing a group and its deadlines: deadlines alone.
    await writeFile(join(dir, "b@prod.expires"), JSON.stringify({ "x:1": iso(future) }));
    // A group without a deadlines file: permanent targets.
    await writeFile(join(dir, "c@prod.json"), group(["perm:1"]));
    // Half-written temporary files of both kinds.
    await writeFile(join(dir, "a@prod.expires.123456"), "{");
    await writeFile(join(dir, "c@prod.json.987"), "[");
    const sd = await startTestService({ directory: dir });
    try {
      await eventually(async () => JSON.stringify(((await sd.fileOf("a", "prod")) as Group[])[0]!.targets) === '["stay:1"]', 2000, "the past deadline to apply at start");
      const lines = ((await sd.request("GET", "/")).body as { groups: { application: string; expires?: Record<string, string> }[] }).groups;
      // Restored RENEWAL_SLACK_MS later: renewals answered from memory before a crash may not be in the file (docs/heartbeats.md).
      expect(lines.find((line) => line.application === "a")!.expires).toEqual({ "stay:1": iso(future + RENEWAL_SLACK_MS) });
      expect(lines.find((line) => line.application === "c")!.expires).toBeUndefined();
      expect((await filesIn(dir)).sort()).toEqual(["a@prod.expires", "a@prod.json", "c@prod.json"]);
      // What is left on disk lists only the targets of the group.
      expect(JSON.parse(await readFile(join(dir, "a@prod.expires"), "utf8"))).toEqual({ "stay:1": iso(future + RENEWAL_SLACK_MS) });
    } finally {
      await sd.close();
    }
  });

  it("SIGKILL while expiries are being written loses nothing and leaves no broken file", async () => {
    const rounds = 4;
    // Two waves of expiries, each a batch of writes: the kill lands after the first wave began and, by
    // construction, before the second (its deadlines are 2 s later), so it always falls among the writes.
    const perWave = 40;
    const waves = [
      { ttl: "1s", first: 0 },
      { ttl: "3s", first: perWave },
    ] as const;
    const groups = perWave * waves.length;
    let killedDuringWrites = 0;
    for (let round = 0; round < rounds; round++) {
      const dir = await directory();
      let child: ChildService | undefined = await startChildService({ directory: dir, env: { LOGLEVEL: "info" } });
      try {
        for (const { ttl, first } of waves) {
          for (let i = first; i < first + perWave; i++) {
            const path = `/app/g${i}`;
            expect((await request(child.url, "PUT", path, { body: "targets=perm:1,perm:2&team=core" })).status).toBe(200);
            expect((await request(child.url, "POST", `${path}?ttl=${ttl}`, { body: "targets=short:1,short:2" })).status).toBe(200);
            expect((await request(child.url, "POST", `${path}?ttl=1h`, { body: "targets=long:1" })).status).toBe(200);
          }
        }
        // The first wave's expiries have begun (an event, not a guess); a few ms later in each round, kill.
        const running = child;
        await eventually(() => running.logs.some((line) => line.msg === "targets expired"), 5000, "the first expiry");
        await new Promise((resolve) => setTimeout(resolve, round * 15));
        child.signal("SIGKILL");
        await child.exited;
        const expiredBeforeKill = running.logs.filter((line) => line.msg === "targets expired").length;
        if (expiredBeforeKill > 0 && expiredBeforeKill < groups) killedDuringWrites++;

        // Every file Prometheus could read is valid, and holds at least what must survive.
        for (const name of await filesIn(dir)) {
          if (name.endsWith(".json")) {
            const [group] = JSON.parse(await readFile(join(dir, name), "utf8")) as Group[];
            expect(group!.targets.slice(0, 2)).toEqual(["perm:1", "perm:2"]);
            expect(group!.targets).toContain("long:1");
          }
        }
        child = await startChildService({ directory: dir });
        const restarted = child;
        await eventually(
          async () => {
            for (let i = 0; i < groups; i++) {
              const [group] = (await request(restarted.url, "GET", `/app/g${i}`)).body as Group[];
              if (JSON.stringify(group?.targets) !== '["perm:1","perm:2","long:1"]') return false;
            }
            return true;
          },
          6000,
          "every group to hold its permanent and unexpired targets, and none of the expired ones",
        );
        for (let i = 0; i < groups; i++) {
          const [group] = JSON.parse(await readFile(join(dir, `app@g${i}.json`), "utf8")) as Group[];
          expect(group).toEqual({ targets: ["perm:1", "perm:2", "long:1"], labels: { job: "app", env: `g${i}`, team: "core" } });
        }
        expect((await filesIn(dir)).filter((name) => !name.endsWith(".json") && !name.endsWith(".expires"))).toEqual([]);
      } finally {
        await child?.stop();
      }
    }
    expect(killedDuringWrites).toBe(rounds);
  }, 90_000);
});
