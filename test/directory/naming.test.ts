import fc from "fast-check";
import { describe, expect, it } from "vitest";
import { deadlinesFileNameOf, fileNameOf, idOfDeadlinesFileName, idOfFileName, isLeftoverTempFile } from "../../src/directory/naming.js";
import { idOfKey, keyOf, type Kind } from "../../src/model.js";
import { MAX_COMBINED_NAME_LENGTH, TEMPORARY_SUFFIX_MAX_LENGTH } from "../../src/parse/values.js";

describe("file names", () => {
  const name = fc.stringMatching(/^[A-Za-z0-9_][A-Za-z0-9_.-]{0,20}$/);
  const kind = fc.constantFrom<Kind>("targets", "probes");

  it("are <application>@<environment>.json (in probes/ for probes) and read back the same", () => {
    fc.assert(
      fc.property(kind, name, name, (groupKind, application, environment) => {
        const id = { kind: groupKind, application, environment };
        const folder = groupKind === "probes" ? "probes/" : "";
        const fileName = fileNameOf(id);
        expect(fileName).toBe(`${folder}${application}@${environment}.json`);
        const inFolder = fileName.slice(folder.length);
        expect(idOfFileName(groupKind, inFolder)).toEqual(id);
        expect(idOfKey(keyOf(id))).toEqual(id);
        expect(isLeftoverTempFile(groupKind, inFolder)).toBe(false);
        expect(isLeftoverTempFile(groupKind, `${inFolder}.1234567`)).toBe(true);
        // The deadlines beside it: never a .json name, never taken for a group or a leftover.
        const deadlines = deadlinesFileNameOf(id).slice(folder.length);
        expect(deadlines).toBe(`${application}@${environment}.expires`);
        expect(idOfDeadlinesFileName(groupKind, deadlines)).toEqual(id);
        expect(idOfFileName(groupKind, deadlines)).toBeUndefined();
        expect(isLeftoverTempFile(groupKind, deadlines)).toBe(false);
        expect(isLeftoverTempFile(groupKind, `${deadlines}.42`)).toBe(true);
        expect(idOfDeadlinesFileName(groupKind, inFolder)).toBeUndefined();
      }),
    );
  });

  it("of the longest pair fit in the 255 bytes a file name may have, temporary twins included", () => {
    for (const application of ["a".repeat(128), "a".repeat(MAX_COMBINED_NAME_LENGTH - 128), "a"]) {
      const environment = "e".repeat(MAX_COMBINED_NAME_LENGTH - application.length);
      for (const groupKind of ["targets", "probes"] as const) {
        const id = { kind: groupKind, application, environment };
        for (const path of [fileNameOf(id), deadlinesFileNameOf(id)]) {
          const own = path.split("/").at(-1)!;
          expect(Buffer.byteLength(own) + TEMPORARY_SUFFIX_MAX_LENGTH).toBeLessThanOrEqual(255);
        }
      }
      // One more character and the deadlines' twin would not fit.
      expect(Buffer.byteLength(`${application}@${environment}e.expires`) + TEMPORARY_SUFFIX_MAX_LENGTH).toBeGreaterThan(255);
    }
  });

  it.each(["handwritten.json", "a@b.yaml", "a@b@c.json", ".a@b.json", "a@.json", "a@b.json.tmp", "a@b.json~"])(
    "%s is not ours",
    (fileName) => {
      expect(idOfFileName("targets", fileName)).toBeUndefined();
      expect(isLeftoverTempFile("targets", fileName)).toBe(false);
    },
  );
});
