import fc from "fast-check";
import { describe, expect, it } from "vitest";
import type { Deadlines, Registration } from "../../src/model.js";
import { coveredBy, isRenewal, postRegistration, RENEWAL_FLUSH_MS } from "../../src/rules/registration.js";

const appEnv = { application: "billing", environment: "prod-hou" };
const T0 = Date.UTC(2026, 0, 1);

// Names a plain object would mistake for its own: every one of Object.prototype's, and random ones.
const targetName = fc.oneof(fc.constantFrom(...Object.getOwnPropertyNames(Object.prototype)), fc.string({ minLength: 1, maxLength: 8 }));
const registration: fc.Arbitrary<Registration> = fc
  .record({
    targets: fc.uniqueArray(targetName, { minLength: 1, maxLength: 6 }),
    labels: fc.dictionary(targetName, fc.string({ maxLength: 4 }), { maxKeys: 3 }),
    deadlines: fc.array(fc.option(fc.integer({ min: 0, max: 100_000 }), { nil: undefined }), { minLength: 6, maxLength: 6 }),
  })
  .map(({ targets, labels, deadlines }) => ({
    group: { targets, labels: Object.fromEntries(Object.entries(labels)) },
    expires: new Map(targets.flatMap((target, index) => (deadlines[index] === undefined ? [] : [[target, T0 + deadlines[index]!] as const]))),
  }));

/** The reference: the definition read word by word. */
function renewalByDefinition(before: Registration, after: Registration): boolean {
  const sameTargets = JSON.stringify(before.group.targets) === JSON.stringify(after.group.targets);
  const labels = (r: Registration) => JSON.stringify(Object.entries(r.group.labels).sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0)));
  const keys = (d: Deadlines) => JSON.stringify([...d.keys()].sort());
  const noneEarlier = [...after.expires].every(([target, deadline]) => deadline >= (before.expires.get(target) ?? Infinity));
  const oneLater = [...after.expires].some(([target, deadline]) => deadline > (before.expires.get(target) ?? Infinity));
  return sameTargets && labels(before) === labels(after) && keys(before.expires) === keys(after.expires) && noneEarlier && oneLater;
}

describe("renewals (docs/heartbeats.md)", () => {
  it("isRenewal is the definition, on any pair of registrations", () => {
    fc.assert(fc.property(registration, registration, (before, after) => {
          expect(isRenewal(before, after)).toBe(renewalByDefinition(before, after));
        }), { numRuns: 2000 });
  });

  it("moving deadlines later, and only that, is a renewal; a target added, a label, an earlier deadline are not", () => {
    fc.assert(
      fc.property(registration, fc.integer({ min: 1, max: 10_000 }), targetName, (before, by, extra) => {
        fc.pre(before.expires.size > 0);
        const later = new Map([...before.expires].map(([target, deadline]) => [target, deadline + by]));
        expect(isRenewal(before, { group: before.group, expires: later })).toBe(true);
        // The same group as a copy (as etcd mode parses it again) is still the same group.
        expect(isRenewal(before, { group: { targets: [...before.group.targets], labels: { ...before.group.labels } }, expires: later })).toBe(true);
        expect(isRenewal(before, { group: before.group, expires: before.expires })).toBe(false);
        expect(isRenewal(before, { group: before.group, expires: new Map([...before.expires].map(([t, d]) => [t, d - by])) })).toBe(false);
        if (!before.group.targets.includes(extra)) {
          expect(isRenewal(before, { group: { ...before.group, targets: [...before.group.targets, extra] }, expires: new Map([...later, [extra, T0]]) })).toBe(false);
        }
        expect(isRenewal(before, { group: { ...before.group, labels: { ...before.group.labels, [extra]: "\u0000changed" } }, expires: later })).toBe(false);
        expect(isRenewal(before, null)).toBe(false);
        expect(isRenewal(undefined, before)).toBe(false);
      }),
      { numRuns: 500 },
    );
  });

  it("a heartbeat POST of registered targets is a renewal; one naming a new target is not", () => {
    fc.assert(
      fc.property(fc.uniqueArray(targetName, { minLength: 2, maxLength: 5 }), fc.integer({ min: 1, max: 5000 }), (targets, after) => {
        const first = postRegistration(undefined, { targets }, appEnv, { now: T0, ttlMs: 60_000 });
        const again = postRegistration(first, { targets: [targets[0]!] }, appEnv, { now: T0 + after, ttlMs: 60_000 });
        expect(isRenewal(first, again)).toBe(true);
        const partial = postRegistration(undefined, { targets: targets.slice(1) }, appEnv, { now: T0, ttlMs: 60_000 });
        expect(isRenewal(partial, postRegistration(partial, { targets }, appEnv, { now: T0 + after, ttlMs: 60_000 }))).toBe(false);
      }),
    );
  });

  it("a POST with ?ttl= of any registration is the definition: the named targets get now + ttl, the rest keep theirs, in the group's order; a heartbeat leaves the group object as it was", () => {
    fc.assert(
      fc.property(registration, fc.array(targetName, { minLength: 1, maxLength: 12 }), fc.boolean(), fc.integer({ min: 1, max: 5000 }), (current, named, sameLabels, ttlMs) => {
        const targets = [...new Set(named)];
        const change = { targets, ...(sameLabels && Object.keys(current.group.labels).length > 0 ? { labels: { ...current.group.labels } } : {}) };
        let result: Registration;
        try {
          result = postRegistration(current, change, appEnv, { now: T0, ttlMs });
        } catch {
          return; // refused by the group rules (too many targets, a name they do not take): not what this is about
        }
        const given = new Set(targets);
        const expected = result.group.targets.flatMap((target) => (given.has(target) ? [[target, T0 + ttlMs] as const] : current.expires.has(target) ? [[target, current.expires.get(target)!] as const] : []));
        expect([...result.expires]).toEqual(expected);
        expect(result.group.targets).toEqual([...current.group.targets, ...targets.filter((target) => !current.group.targets.includes(target))]);
        if (targets.every((target) => current.group.targets.includes(target))) expect(result.group).toStrictEqual(current.group);
      }),
      { numRuns: 2000 },
    );
  });

  it("coveredBy: every deadline at most the slack past its persisted one", () => {
    fc.assert(
      fc.property(registration, fc.integer({ min: 0, max: 5000 }), fc.integer({ min: -3000, max: 3000 }), (persistedReg, slack, move): void => {
        const persisted = persistedReg.expires;
        const moved = new Map([...persisted].map(([target, deadline]) => [target, deadline + move]));
        expect(coveredBy(moved, persisted, slack)).toBe(move <= slack || persisted.size === 0);
        const [first] = persistedReg.group.targets;
        if (!persisted.has(first!)) expect(coveredBy(new Map([[first!, T0]]), persisted, slack)).toBe(false);
      }),
    );
  });
});

describe("the interval and the slack", () => {
  it("keep a host renewing every slack minus the interval (or faster) answered from memory: its deadline never runs more than the slack ahead of the persisted one", () => {
    // One target, renewed every `period` with `ttl`; the store persists what memory holds once every
    // interval. Every renewal must be covered by what was persisted before it.
    fc.assert(
      fc.property(fc.integer({ min: 2000, max: 3_600_000 }), fc.double({ min: 0.01, max: 1, noNaN: true }), fc.integer({ min: 1000, max: 7_200_000 }), fc.integer({ min: 0, max: 10_000 }), (slackMs, share, ttlMs, offset) => {
        const interval = RENEWAL_FLUSH_MS;
        const period = Math.max(1, Math.floor((slackMs - interval) * share));
        let persisted = T0 + ttlMs; // the PUT that registered it, written before its answer
        let memory = persisted;
        let nextFlush = T0 + (offset % interval);
        for (let now = T0 + period; now < T0 + 20 * Math.max(period, interval); now += period) {
          while (nextFlush <= now) {
            persisted = memory;
            nextFlush += interval;
          }
          if (!coveredBy(new Map([["h:9100", now + ttlMs]]), new Map([["h:9100", persisted]]), slackMs)) return false;
          memory = now + ttlMs;
        }
        return true;
      }),
    );
  });

  it("and a host renewing less often than that is written first", () => {
    // ttl 60 s renewed every 20 s: with the default slack (2 s) each renewal moves its deadline 20 s past the persisted one.
    expect(coveredBy(new Map([["h:9100", T0 + 80_000]]), new Map([["h:9100", T0 + 60_000]]), 2000)).toBe(false);
    expect(coveredBy(new Map([["h:9100", T0 + 80_000]]), new Map([["h:9100", T0 + 60_000]]), 30_000)).toBe(true);
  });
});
