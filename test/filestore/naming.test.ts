import fc from "fast-check";
import { describe, expect, it } from "vitest";
import { appEnvOfDeadlinesFileName, appEnvOfFileName, deadlinesFileNameOf, fileNameOf, isLeftoverTempFile } from "../../src/filestore/naming.js";

describe("file names", () => {
  it("are <application>@<environment>.json and read back the same", () => {
    const name = fc.stringMatching(/^[A-Za-z0-9_][A-Za-z0-9_.-]{0,20}$/);
    fc.assert(
      fc.property(name, name, (application, environment) => {
        const fileName = fileNameOf({ application, environment });
        expect(fileName).toBe(`${application}@${environment}.json`);
        expect(appEnvOfFileName(fileName)).toEqual({ application, environment });
        expect(isLeftoverTempFile(fileName)).toBe(false);
        expect(isLeftoverTempFile(`${fileName}.1234567`)).toBe(true);
        // The deadlines beside it: never a .json name, never taken for a group or a leftover.
        const deadlines = deadlinesFileNameOf({ application, environment });
        expect(deadlines).toBe(`${application}@${environment}.expires`);
        expect(appEnvOfDeadlinesFileName(deadlines)).toEqual({ application, environment });
        expect(appEnvOfFileName(deadlines)).toBeUndefined();
        expect(isLeftoverTempFile(deadlines)).toBe(false);
        expect(isLeftoverTempFile(`${deadlines}.42`)).toBe(true);
        expect(appEnvOfDeadlinesFileName(fileName)).toBeUndefined();
      }),
    );
  });

  it.each(["handwritten.json", "a@b.yaml", "a@b@c.json", ".a@b.json", "a@.json", "a@b.json.tmp", "a@b.json~"])(
    "%s is not ours",
    (fileName) => {
      expect(appEnvOfFileName(fileName)).toBeUndefined();
      expect(isLeftoverTempFile(fileName)).toBe(false);
    },
  );
});
