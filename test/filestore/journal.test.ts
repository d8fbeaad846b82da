import { execFile } from "node:child_process";
import { appendFile, readdir } from "node:fs/promises";
import { promisify } from "node:util";
import { join } from "node:path";
import fc from "fast-check";
import { afterAll, describe, expect, it } from "vitest";
import { JOURNAL_FILE, OLD_JOURNAL_FILE, RenewalJournal, replay, type JournalRecord } from "../../src/filestore/journal.js";
import { makeTempDir, removeDir } from "../helpers.js";

const execFileAsync = promisify(execFile);

// Names a plain object would mistake for its own, and random ones (quotes, backslashes, newlines).
const name = fc.oneof(fc.constantFrom(...Object.getOwnPropertyNames(Object.prototype)), fc.string({ minLength: 1, maxLength: 8 }), fc.constant('a"\\\nb'));
// A record only moves a deadline later.
const record = fc
  .record({ key: name, target: name, from: fc.integer({ min: 0, max: 2 ** 40 }), later: fc.integer({ min: 0, max: 2 ** 30 }) })
  .map(({ key, target, from, later }): JournalRecord => ({ key, target, from, to: from + later }));

describe("the renewals journal", () => {
  const directories: string[] = [];
  afterAll(async () => {
    for (const directory of directories) await removeDir(directory);
  });
  const directory = async (): Promise<string> => {
    const made = await makeTempDir("file-sd-journal-");
    directories.push(made);
    return made;
  };

  it("reads back every record appended, in order, across a rotation, whatever the names", async () => {
    await fc.assert(
      fc.asyncProperty(fc.array(fc.array(record, { minLength: 1, maxLength: 6 }), { minLength: 1, maxLength: 6 }), fc.nat(), async (appends, rotateAt) => {
        const dir = await directory();
        const { journal } = await RenewalJournal.open(dir);
        const cut = rotateAt % appends.length;
        let touchedBeforeCut = new Set<string>();
        for (const [index, records] of appends.entries()) {
          if (index === cut && index > 0) touchedBeforeCut = new Set(await journal.rotate());
          await journal.append(records);
        }
        await journal.close();
        // One append writes a line per group: records of a group come together, in the order appended.
        const expected = appends.flatMap((records) => [...new Set(records.map(({ key }) => key))].flatMap((key) => records.filter((r) => r.key === key)));
        const { records, unreadable } = await RenewalJournal.open(dir);
        expect(unreadable).toBe(0);
        expect(records).toEqual(expected);
        if (cut > 0) expect([...touchedBeforeCut].sort()).toEqual([...new Set(appends.slice(0, cut).flat().map(({ key }) => key))].sort());
        await removeDir(dir);
      }),
      { numRuns: 40 },
    );
  });

  it("refuses a record that would move a deadline earlier, and a journal that is not a regular file", async () => {
    const dir = await directory();
    await appendFile(join(dir, JOURNAL_FILE), `${JSON.stringify(["app@prod", ["a:1", 5, 4]])}\n${JSON.stringify(["app@prod", ["a:1", 5, 6]])}\n`);
    const { records, unreadable } = await RenewalJournal.open(dir);
    expect(records).toEqual([{ key: "app@prod", target: "a:1", from: 5, to: 6 }]);
    expect(unreadable).toBe(1);
    const fifoDir = await directory();
    await execFileAsync("mkfifo", [join(fifoDir, JOURNAL_FILE)]);
    await expect(RenewalJournal.open(fifoDir)).rejects.toThrow(/is not a regular file/);
  });

  it("after a failed write starts a new line, so the next records are not glued to a torn one", async () => {
    const dir = await directory();
    // A torn last line left by a crash: the first append after the start begins a new line.
    await appendFile(join(dir, JOURNAL_FILE), '["app@prod",["a:1",1,');
    const { journal } = await RenewalJournal.open(dir);
    await journal.append([{ key: "app@prod", target: "b:1", from: 1, to: 2 }]);
    await journal.close();
    const { records, unreadable } = await RenewalJournal.open(dir);
    expect(records).toEqual([{ key: "app@prod", target: "b:1", from: 1, to: 2 }]);
    expect(unreadable).toBe(1);
  });

  it("skips a torn last line (a crash in the middle of an append) and keeps the rest", async () => {
    const dir = await directory();
    const { journal } = await RenewalJournal.open(dir);
    await journal.append([{ key: "app@prod", target: "a:1", from: 1, to: 2 }]);
    await journal.close();
    await appendFile(join(dir, JOURNAL_FILE), '["app@prod",["a:1",2,');
    const { records, unreadable } = await RenewalJournal.open(dir);
    expect(records).toEqual([{ key: "app@prod", target: "a:1", from: 1, to: 2 }]);
    expect(unreadable).toBe(1);
  });

  it("rotates into the old file, drops it once folded, and clears both", async () => {
    const dir = await directory();
    const { journal } = await RenewalJournal.open(dir);
    await journal.append([{ key: "a@prod", target: "t:1", from: 1, to: 2 }]);
    expect([...(await journal.rotate())]).toEqual(["a@prod"]);
    await journal.append([{ key: "b@prod", target: "t:1", from: 1, to: 2 }]);
    expect((await readdir(dir)).sort()).toEqual([JOURNAL_FILE, OLD_JOURNAL_FILE]);
    // A fold that did not finish: the next rotation hands the old file's groups again and rotates nothing.
    expect([...(await journal.rotate())]).toEqual(["a@prod"]);
    expect([...journal.groups()].sort()).toEqual(["a@prod", "b@prod"]);
    await journal.dropOld();
    expect(await readdir(dir)).toEqual([JOURNAL_FILE]);
    await journal.clear();
    expect(await readdir(dir)).toEqual([]);
  });

  /**
   * The replay's rule (journal.ts): a record applies only where the persisted deadline is still
   * its `from`. A history of one target: journal records that move the persisted deadline later,
   * and writes of its deadlines file with a fresh value (a change of the group: a new ttl) or
   * none (made permanent, or removed). Replayed over the last file, every record in order gives
   * the last persisted deadline, whatever the order.
   */
  it("replays to the last persisted deadline whatever the history of records and writes", () => {
    const step = fc.oneof(fc.record({ journal: fc.integer({ min: 1, max: 1000 }) }), fc.record({ write: fc.option(fc.integer({ min: 1, max: 1000 }), { nil: undefined }) }));
    fc.assert(
      fc.property(fc.array(step, { maxLength: 30 }), (steps) => {
        let fresh = 10 ** 9;
        let file: number | undefined = 0;
        let persisted: number | undefined = 0;
        const records: JournalRecord[] = [];
        for (const one of steps) {
          if ("journal" in one) {
            // Only a target with a persisted deadline is answered from memory, and journaled.
            if (persisted === undefined) continue;
            records.push({ key: "k", target: "t", from: persisted, to: persisted + one.journal });
            persisted += one.journal;
          } else {
            // A write persists a value no record started from (a deadline is ms since the epoch, computed anew).
            fresh += 10 ** 6 + (one.write ?? 0);
            file = one.write === undefined ? undefined : fresh;
            persisted = file;
          }
        }
        const state = new Map([["k", new Map(file === undefined ? [] : [["t", file]])]]);
        replay(records, state);
        expect(state.get("k")!.get("t")).toBe(persisted);
      }),
      { numRuns: 2000 },
    );
  });
});
