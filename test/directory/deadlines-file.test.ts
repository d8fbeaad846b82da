import fc from "fast-check";
import { describe, expect, it } from "vitest";
import { DeadlinesTexts, parseDeadlines, serializeDeadlines } from "../../src/directory/deadlines-file.js";

const T0 = Date.UTC(2026, 0, 1);
// Names a plain object would mistake for its own: every one of Object.prototype's, and random ones (quotes, backslashes, digits).
const targetName = fc.oneof(fc.constantFrom(...Object.getOwnPropertyNames(Object.prototype)), fc.string({ minLength: 1, maxLength: 8 }), fc.nat().map(String));
const deadlines = fc.uniqueArray(fc.tuple(targetName, fc.integer({ min: 0, max: 10 ** 11 })), { selector: ([target]) => target, maxLength: 8 }).map((entries) => new Map(entries.map(([target, offset]) => [target, T0 + offset])));

/** The reference: what `JSON.stringify(…, null, 2)` of the mapping writes, read back. */
const byDefinition = (expires: ReadonlyMap<string, number>): unknown =>
  JSON.parse(JSON.stringify(Object.fromEntries([...expires].map(([target, ms]) => [target, new Date(ms).toISOString()])), null, 2));

describe("deadlines files", () => {
  it("hold every target's deadline as an ISO time, pretty-printed, and read back to the same map", () => {
    fc.assert(
      fc.property(deadlines, (expires) => {
        const text = serializeDeadlines(expires);
        expect(JSON.parse(text)).toEqual(byDefinition(expires));
        expect(parseDeadlines(text)).toEqual(expires);
        expect(text.endsWith("\n")).toBe(true);
        if (expires.size > 0) expect(text).toContain('\n  "');
      }),
      { numRuns: 500 },
    );
    expect(serializeDeadlines(new Map())).toBe("{}\n");
  });

  it("DeadlinesTexts writes, for any sequence of versions of any groups, what serializeDeadlines writes", () => {
    fc.assert(
      fc.property(fc.array(fc.tuple(fc.constantFrom("a@x", "b@y", "constructor@z"), deadlines, fc.boolean()), { maxLength: 30 }), (versions) => {
        const texts = new DeadlinesTexts();
        const last = new Map<string, Map<string, number>>();
        for (const [key, expires, renew] of versions) {
          // Half of the versions move a few deadlines of the group's last one, as a flush of renewals does.
          const previous = last.get(key);
          const next = renew && previous !== undefined ? new Map([...previous].map(([target, ms], i) => [target, i % 3 === 0 ? ms + 1000 : ms])) : expires;
          expect(texts.text(key, next)).toBe(serializeDeadlines(next));
          last.set(key, next);
          if (next.size === 0) texts.forget(key);
        }
      }),
      { numRuns: 300 },
    );
  });
});
