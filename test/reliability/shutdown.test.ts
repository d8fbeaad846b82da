import { setTimeout as sleep } from "node:timers/promises";
import { afterAll, describe, expect, it } from "vitest";
import { eventually, makeTempDir, removeDir } from "../helpers.js";
import { startChildService, type ChildService } from "../support/child-service.js";
import { AckLedger, readDirectoryState, runWriters, seededRandom } from "./write-load.js";

/** SIGTERM in the middle of a write burst: finish what was accepted, write it, exit 0. */

const WRITERS = 16;
const GROUPS = [
  { application: "billing", environment: "prod" },
  { application: "search", environment: "prod" },
  { application: "mail", environment: "prod" },
];

describe("shutdown: SIGTERM during a write burst", () => {
  const directories: string[] = [];
  afterAll(async () => {
    for (const directory of directories) await removeDir(directory);
  });

  it("every acknowledged write is on disk and the exit code is 0", async () => {
    const directory = await makeTempDir("file-sd-shutdown-");
    directories.push(directory);
    const seed = Math.floor(Math.random() * 2 ** 31);
    const ledger = new AckLedger();
    let child: ChildService | undefined;
    try {
      child = await startChildService({ directory });
      const service = child;
      let sigtermAt: number | undefined = undefined;
      let ackedAfterSigterm = 0;
      const load = runWriters({
        url: service.url,
        groups: GROUPS,
        writers: WRITERS,
        prefix: "s",
        ledger,
        random: seededRandom(seed),
        // Keep the burst going through the signal, until the server stops answering.
        shouldStop: () => sigtermAt !== undefined && Date.now() - sigtermAt > 2_000,
        onAck: (at) => {
          if (sigtermAt !== undefined && at >= sigtermAt) ackedAfterSigterm++;
        },
      });

      await eventually(() => ledger.acknowledged >= 100, 20_000, "100 acknowledged writes");
      await sleep(Math.floor(Math.random() * 50));
      sigtermAt = Date.now();
      service.signal("SIGTERM");
      const exit = await Promise.race([
        service.exited,
        sleep(30_000).then(() => {
          throw new Error("the service did not exit within 30 s of SIGTERM");
        }),
      ]);
      await load;

      const onDisk = await readDirectoryState(directory);
      console.log(
        `shutdown: ${ledger.sent} mutations sent, ${ledger.acknowledged} acknowledged ` +
          `(${ackedAfterSigterm} answered after SIGTERM), ${ledger.unanswered} unanswered, ` +
          `${ledger.lost(onDisk.groups)} lost; exit code ${exit.code}`,
      );
      expect(exit).toEqual({ code: 0, signal: null });
      expect(service.logs.map((line) => line.msg)).toContain("stopped");
      expect(ledger.unexpected).toEqual([]);
      expect(onDisk.problems).toEqual([]);
      expect(onDisk.leftovers).toEqual([]);
      expect(ledger.contradictions(onDisk.groups, "on disk after SIGTERM")).toEqual([]);
    } finally {
      if (child?.isRunning()) {
        child.signal("SIGKILL");
        await child.exited;
      }
    }
  }, 60_000);
});
