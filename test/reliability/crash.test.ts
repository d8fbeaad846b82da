import { setTimeout as sleep } from "node:timers/promises";
import { afterAll, describe, expect, it } from "vitest";
import { eventually, makeTempDir, removeDir } from "../helpers.js";
import { startChildService, type ChildService } from "../support/child-service.js";
import { AckLedger, readDirectoryState, readServedState, runWriters, seededRandom } from "./write-load.js";

/**
 * SIGKILL the built server at random moments while eight clients write, and
 * check after every kill that Prometheus could read every file and that every
 * acknowledged change survived. `make soak` runs many more rounds
 * (CRASH_ROUNDS); CRASH_SEED replays a run.
 */

const ROUNDS = Number(process.env.CRASH_ROUNDS ?? 12);
const SEED = Number(process.env.CRASH_SEED ?? Math.floor(Math.random() * 2 ** 31));
const WRITERS = 8;
const GROUPS = [
  { application: "billing", environment: "prod" },
  { application: "billing", environment: "staging" },
  { application: "search", environment: "prod" },
  { application: "search", environment: "dev-1" },
  { application: "mail", environment: "prod" },
];

describe("crash: SIGKILL under write load", () => {
  const directories: string[] = [];
  afterAll(async () => {
    for (const directory of directories) await removeDir(directory);
  });

  it(
    `after each of ${ROUNDS} kills every file is a valid group list and every acknowledged change is on disk and served after a restart`,
    async () => {
      const directory = await makeTempDir("file-sd-crash-");
      directories.push(directory);
      const random = seededRandom(SEED);
      const ledger = new AckLedger();
      const problems: string[] = [];
      let kills = 0;
      let leftoversSeen = 0;
      let inFlightAtKill = 0;
      let child: ChildService | undefined;

      try {
        for (let round = 0; round < ROUNDS; round++) {
          child = await startChildService({ directory });
          const service = child;

          // The restart removed what the last kill left and serves every acknowledged change.
          const afterRestart = await readDirectoryState(directory);
          problems.push(...afterRestart.problems.map((problem) => `round ${round} after restart: ${problem}`));
          problems.push(...afterRestart.leftovers.map((name) => `round ${round}: leftover ${name} survived the restart`));
          problems.push(...ledger.contradictions(afterRestart.groups, `round ${round} on disk after restart`));
          const served = await readServedState(service.url, ledger.groupKeys());
          problems.push(...ledger.contradictions(served, `round ${round} served after restart`));

          const ackedBefore = ledger.acknowledged;
          const unansweredBefore = ledger.unanswered;
          const load = runWriters({
            url: service.url,
            groups: GROUPS,
            writers: WRITERS,
            prefix: `r${round}`,
            ledger,
            random,
            shouldStop: () => !service.isRunning(),
          });
          // Kill at a random moment once writes are flowing.
          await eventually(() => ledger.acknowledged - ackedBefore >= 5, 15_000, "the first acknowledged writes");
          await sleep(Math.floor(random() * 250));
          service.signal("SIGKILL");
          const exit = await service.exited;
          expect(exit.signal).toBe("SIGKILL");
          kills++;
          await load;
          inFlightAtKill += ledger.unanswered - unansweredBefore;

          const afterKill = await readDirectoryState(directory);
          leftoversSeen += afterKill.leftovers.length;
          problems.push(...afterKill.problems.map((problem) => `round ${round} after kill: ${problem}`));
          problems.push(...ledger.contradictions(afterKill.groups, `round ${round} on disk after kill`));
        }

        // One last restart: leftovers removed, everything acknowledged served, clean exit.
        child = await startChildService({ directory });
        const final = await readDirectoryState(directory);
        problems.push(...final.problems, ...final.leftovers.map((name) => `leftover ${name} survived the final restart`));
        const served = await readServedState(child.url, ledger.groupKeys());
        problems.push(...ledger.contradictions(served, "served after the final restart"));
        expect((await child.stop()).code).toBe(0);

        console.log(
          `crash: seed ${SEED}, ${ROUNDS} rounds, ${kills} SIGKILLs; ${ledger.sent} mutations sent, ` +
            `${ledger.acknowledged} acknowledged, ${ledger.lost(final.groups)} lost on disk, ` +
            `${ledger.lost(served)} lost in GET; ${inFlightAtKill} in flight at a kill; ` +
            `${leftoversSeen} temporary files left by kills, all removed at restart`,
        );
        expect(ledger.unexpected).toEqual([]);
        expect(problems).toEqual([]);
        expect(kills).toBe(ROUNDS);
      } finally {
        if (child?.isRunning()) {
          child.signal("SIGKILL");
          await child.exited;
        }
      }
    },
    ROUNDS * 8_000 + 30_000,
  );
});
