import fc from "fast-check";
import { describe, expect, it } from "vitest";
import { RuleError } from "../../src/errors.js";
import type { Change, Deadlines, Registration } from "../../src/model.js";
import { deleteRegistration, expireRegistration, postRegistration, putRegistration } from "../../src/rules/registration.js";
import { applyDelete, applyPost, applyPut } from "../../src/rules/rules.js";
import { refused } from "./refused.js";

const deadlines = (byTarget: Record<string, number>): Deadlines => new Map(Object.entries(byTarget));

const appEnv = { application: "billing", environment: "prod-hou" };
const defaults = { job: "billing", env: "prod-hou" };
const T0 = Date.UTC(2026, 0, 1);


describe("deadlines (docs/api.md)", () => {
  it("PUT with a ttl gives every named target now + ttl; without one they are permanent", () => {
    const put = putRegistration(undefined, { targets: ["a:1", "b:2"] }, appEnv, { now: T0, ttlMs: 60_000 });
    expect(put.expires).toEqual(deadlines({ "a:1": T0 + 60_000, "b:2": T0 + 60_000 }));
    expect(putRegistration(put, { targets: ["a:1"] }, appEnv, { now: T0 + 1 }).expires).toEqual(deadlines({}));
  });

  it("PUT of labels alone keeps the deadlines; a ttl without targets is refused", () => {
    const put = putRegistration(undefined, { targets: ["a:1"] }, appEnv, { now: T0, ttlMs: 5000 });
    expect(putRegistration(put, { labels: { team: "x" } }, appEnv, { now: T0 + 1 }).expires).toEqual(deadlines({ "a:1": T0 + 5000 }));
    expect(refused(() => putRegistration(put, { labels: { team: "x" } }, appEnv, { now: T0, ttlMs: 5000 })).message).toContain('needs "targets"');
  });

  it("POST with a ttl is a heartbeat: renews what is registered, adds what is not, and never refuses a renewal", () => {
    const first = postRegistration(undefined, { targets: ["a:1"], labels: { team: "core" } }, appEnv, { now: T0, ttlMs: 3000 });
    expect(first).toEqual({ group: { targets: ["a:1"], labels: { ...defaults, team: "core" } }, expires: deadlines({ "a:1": T0 + 3000 }) });
    // The same heartbeat again: the labels already hold those values, and that is fine.
    const again = postRegistration(first, { targets: ["a:1"], labels: { team: "core" } }, appEnv, { now: T0 + 1000, ttlMs: 3000 });
    expect(again.group).toBe(first.group);
    expect(again.expires).toEqual(deadlines({ "a:1": T0 + 4000 }));
    const more = postRegistration(again, { targets: ["a:1", "b:2"] }, appEnv, { now: T0 + 2000, ttlMs: 3000 });
    expect(more.group.targets).toEqual(["a:1", "b:2"]);
    expect(more.expires).toEqual(deadlines({ "a:1": T0 + 5000, "b:2": T0 + 5000 }));
  });

  it("POST without a ttl keeps the method rules: a registered target is refused; a new one is permanent", () => {
    const current = postRegistration(undefined, { targets: ["a:1"] }, appEnv, { now: T0, ttlMs: 3000 });
    expect(refused(() => postRegistration(current, { targets: ["a:1"] }, appEnv, { now: T0 })).message).toContain("already registered");
    expect(postRegistration(current, { targets: ["b:2"] }, appEnv, { now: T0 }).expires).toEqual(deadlines({ "a:1": T0 + 3000 }));
  });

  it("a heartbeat still refuses a duplicated or empty target list", () => {
    expect(refused(() => postRegistration(undefined, { targets: ["a:1", "a:1"] }, appEnv, { now: T0, ttlMs: 1000 })).message).toContain("listed twice");
    expect(refused(() => postRegistration(undefined, { targets: [] }, appEnv, { now: T0, ttlMs: 1000 })).status).toBe(400);
  });

  it("DELETE takes the removed targets' deadlines with them", () => {
    const current = putRegistration(undefined, { targets: ["a:1", "b:2"] }, appEnv, { now: T0, ttlMs: 1000 });
    expect(deleteRegistration(current, { targets: ["a:1"] }, appEnv)?.expires).toEqual(deadlines({ "b:2": T0 + 1000 }));
  });

  it("expiry removes exactly the targets due, keeps labels, and takes the group when the last one goes", () => {
    let current: Registration | null = putRegistration(undefined, { targets: ["perm:1"], labels: { team: "core" } }, appEnv, { now: T0 });
    current = postRegistration(current, { targets: ["soon:1"] }, appEnv, { now: T0, ttlMs: 1000 });
    current = postRegistration(current, { targets: ["later:1"] }, appEnv, { now: T0, ttlMs: 5000 });
    expect(expireRegistration(current, T0 + 999)).toBe(current);
    const after = expireRegistration(current, T0 + 1000)!;
    expect(after.group).toEqual({ targets: ["perm:1", "later:1"], labels: { ...defaults, team: "core" } });
    const onlyExpiring = putRegistration(undefined, { targets: ["x:1"], labels: { team: "core" } }, appEnv, { now: T0, ttlMs: 1000 });
    expect(expireRegistration(onlyExpiring, T0 + 1000)).toBeNull();
    expect(expireRegistration(undefined, T0)).toBeNull();
  });
});

describe("properties with a driven clock", () => {
  const target = fc.constantFrom("a:1", "b:2", "c:3", "d:4");
  const labelName = fc.constantFrom("team", "tier");
  const labelValue = fc.constantFrom("core", "edge");
  const change: fc.Arbitrary<Change> = fc.record(
    { targets: fc.array(target, { maxLength: 3 }), labels: fc.dictionary(labelName, labelValue, { maxKeys: 2 }) },
    { requiredKeys: [] },
  );
  const ttl = fc.option(fc.integer({ min: 1000, max: 10_000 }), { nil: undefined });
  const step = fc.oneof(
    fc.record({ kind: fc.constantFrom("PUT" as const, "POST" as const), change, ttl }),
    fc.record({ kind: fc.constant("DELETE" as const), change }),
    fc.record({ kind: fc.constant("tick" as const), ms: fc.integer({ min: 0, max: 4000 }) }),
  );

  /**
   * A reference model kept beside the rules: for each target, the last request
   * that named it decides (a ttl: a deadline; none: permanent). After every
   * step, with the clock driven forward and expiry run as the scheduler would:
   * no target outlives its deadline, a deadline only belongs to a target of the
   * group, labels are those of the method rules alone, and targets not yet due are all there.
   */
  it("no target outlives its deadline; renewals, permanence and last-target expiry follow the requests", () => {
    fc.assert(
      fc.property(fc.array(step, { minLength: 1, maxLength: 25 }), (steps) => {
        let now = T0;
        let state: Registration | undefined;
        let plainGroup = state as { targets: readonly string[]; labels: Record<string, string> } | undefined;
        for (const s of steps) {
          if (s.kind === "tick") {
            now += s.ms;
            const before = state;
            const after = expireRegistration(state, now);
            state = after ?? undefined;
            if (before !== undefined && state !== undefined) expect(state.group.labels).toEqual(before.group.labels);
            if (before !== undefined) {
              const due = before.group.targets.filter((t) => (before.expires.get(t) ?? Infinity) <= now);
              expect(state?.group.targets ?? []).toEqual(before.group.targets.filter((t) => !due.includes(t)));
            }
            plainGroup = state?.group as typeof plainGroup;
          } else {
            const timing = { now, ttlMs: s.kind === "DELETE" ? undefined : s.ttl };
            let next: Registration | null;
            try {
              next =
                s.kind === "PUT" ? putRegistration(state, s.change, appEnv, timing)
                : s.kind === "POST" ? postRegistration(state, s.change, appEnv, timing)
                : deleteRegistration(state, s.change, appEnv);
            } catch (error) {
              expect(error).toBeInstanceOf(RuleError);
              continue;
            }
            // Without a ttl the group is exactly what the method rules give.
            if (timing.ttlMs === undefined) {
              const rule = s.kind === "PUT" ? applyPut : s.kind === "POST" ? applyPost : applyDelete;
              expect(next?.group ?? null).toEqual(rule(plainGroup, s.change, appEnv));
            }
            for (const t of s.kind === "DELETE" ? [] : (s.change.targets ?? [])) {
              if (next === null) break;
              expect(next.expires.get(t)).toBe(timing.ttlMs === undefined ? undefined : now + timing.ttlMs);
            }
            state = next ?? undefined;
            plainGroup = state?.group as typeof plainGroup;
          }
          if (state !== undefined) {
            expect(state.group.targets.length).toBeGreaterThan(0);
            for (const t of state.expires.keys()) expect(state.group.targets).toContain(t);
            for (const deadline of state.expires.values()) expect(deadline).toBeGreaterThan(s.kind === "tick" ? now : now - 1);
          }
        }
      }),
      { numRuns: 500 },
    );
  });
});
