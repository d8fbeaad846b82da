import fc from "fast-check";
import { describe, expect, it } from "vitest";
import { RuleError } from "../../src/errors.js";
import type { Change, TargetGroup } from "../../src/model.js";
import { applyDelete, applyPost, applyPut } from "../../src/rules/rules.js";
import { refused } from "./refused.js";

const appEnv = { application: "billing", environment: "prod-hou" };
const group = (targets: string[], labels: Record<string, string> = {}): TargetGroup => ({
  targets,
  labels: { job: "billing", env: "prod-hou", ...labels },
});


describe("PUT", () => {
  it("creates a group with the default labels", () => {
    expect(applyPut(undefined, { targets: ["a:1"] }, appEnv)).toEqual(group(["a:1"]));
  });

  it("needs targets to create", () => {
    expect(refused(() => applyPut(undefined, { labels: { team: "x" } }, appEnv)).message).toContain('needs "targets"');
  });

  it("needs targets or labels", () => {
    expect(refused(() => applyPut(group(["a:1"]), {}, appEnv)).message).toBe('PUT needs "targets", "labels" or both in the body');
  });

  it("replaces only the parts it names", () => {
    const current = group(["a:1"], { team: "core" });
    expect(applyPut(current, { targets: ["b:2", "c:3"] }, appEnv)).toEqual(group(["b:2", "c:3"], { team: "core" }));
    expect(applyPut(current, { labels: { tier: "web" } }, appEnv)).toEqual(group(["a:1"], { tier: "web" }));
  });

  it("keeps job and env given in the request, else falls back to the defaults", () => {
    const current = group(["a:1"], { team: "core" });
    expect(applyPut(current, { labels: { job: "node" } }, appEnv).labels).toEqual({ job: "node", env: "prod-hou" });
    expect(applyPut({ targets: ["a:1"], labels: { job: "node", env: "x" } }, { labels: {} }, appEnv).labels).toEqual({
      job: "billing",
      env: "prod-hou",
    });
  });

  it("refuses an empty or duplicated target list", () => {
    expect(refused(() => applyPut(undefined, { targets: [] }, appEnv)).message).toContain("at least one target");
    expect(refused(() => applyPut(undefined, { targets: ["a:1", "a:1"] }, appEnv)).message).toContain('"a:1" is listed twice');
  });
});

describe("scrape settings", () => {
  it("a timeout longer than the interval, or one that is not a duration, is refused whichever method sets it", () => {
    const labels = (interval: string, timeout: string) => ({ __scrape_interval__: interval, __scrape_timeout__: timeout });
    expect(refused(() => applyPut(undefined, { targets: ["a:1"], labels: labels("5s", "10s") }, appEnv)).message).toBe(
      "__scrape_timeout__ (10s) is longer than __scrape_interval__ (5s): Prometheus would drop the target; make the timeout at most the interval",
    );
    expect(applyPut(undefined, { targets: ["a:1"], labels: labels("5s", "5s") }, appEnv).labels).toMatchObject(labels("5s", "5s"));
    expect(refused(() => applyPut(undefined, { targets: ["a:1"], labels: { __scrape_interval__: "fast" } }, appEnv)).message).toMatch(/^label "__scrape_interval__" is "fast"/);
    const current = applyPut(undefined, { targets: ["a:1"], labels: labels("30s", "10s") }, appEnv);
    expect(refused(() => applyPost(current, { labels: { __scrape_interval__: "5s" } }, appEnv)).message).toMatch(/is longer than __scrape_interval__ \(5s\)/);
  });
});

describe("POST", () => {
  it("appends new targets in the order sent", () => {
    expect(applyPost(group(["a:1"]), { targets: ["c:3", "b:2"] }, appEnv).targets).toEqual(["a:1", "c:3", "b:2"]);
  });

  it("refuses a target that is already registered, naming it", () => {
    const error = refused(() => applyPost(group(["a:1", "b:2"]), { targets: ["b:2", "c:3"] }, appEnv));
    expect(error.message).toContain('"b:2"');
    expect(error.message).not.toContain('"c:3"');
  });

  it("adds or replaces labels", () => {
    const result = applyPost(group(["a:1"], { team: "core" }), { labels: { team: "edge", tier: "web" } }, appEnv);
    expect(result.labels).toEqual({ job: "billing", env: "prod-hou", team: "edge", tier: "web" });
  });

  it("refuses labels that change nothing", () => {
    const current = group(["a:1"], { team: "core" });
    expect(refused(() => applyPost(current, { labels: { team: "core" } }, appEnv)).message).toContain("none of the labels");
    expect(refused(() => applyPost(current, { labels: { job: "billing" } }, appEnv)).message).toContain("none of the labels");
  });

  it("refuses empty labels, empty targets, and an empty request", () => {
    expect(refused(() => applyPost(group(["a:1"]), { labels: {} }, appEnv)).message).toContain("at least one label");
    expect(refused(() => applyPost(group(["a:1"]), { targets: [] }, appEnv)).message).toContain("at least one target");
    expect(refused(() => applyPost(group(["a:1"]), {}, appEnv)).status).toBe(400);
  });

  it("creates with targets even when the labels given are the defaults", () => {
    expect(applyPost(undefined, { targets: ["a:1"], labels: { job: "billing", env: "prod-hou" } }, appEnv)).toEqual(group(["a:1"]));
  });

  it("creates with targets, overriding job", () => {
    expect(applyPost(undefined, { targets: ["a:1"], labels: { job: "node" } }, appEnv)).toEqual({
      targets: ["a:1"],
      labels: { job: "node", env: "prod-hou" },
    });
    expect(refused(() => applyPost(undefined, { labels: { team: "x" } }, appEnv)).message).toContain('needs "targets"');
  });
});

describe("DELETE", () => {
  it("is a 404 when nothing is registered", () => {
    expect(refused(() => applyDelete(undefined, {}, appEnv)).status).toBe(404);
  });

  it("with no body deletes the group", () => {
    expect(applyDelete(group(["a:1"]), {}, appEnv)).toBeNull();
  });

  it("removes the named targets and labels", () => {
    const current = group(["a:1", "b:2", "c:3"], { team: "core", tier: "web" });
    expect(applyDelete(current, { targets: ["b:2"], labels: { tier: "web" } }, appEnv)).toEqual(group(["a:1", "c:3"], { team: "core" }));
  });

  it("refuses a target that is not registered, or one listed twice", () => {
    expect(refused(() => applyDelete(group(["a:1", "b:2"]), { targets: ["x:1"] }, appEnv)).message).toContain('"x:1"');
    expect(refused(() => applyDelete(group(["a:1", "b:2"]), { targets: ["a:1", "a:1"] }, appEnv)).status).toBe(400);
    expect(refused(() => applyDelete(group(["a:1"]), { targets: [] }, appEnv)).status).toBe(400);
  });

  it("refuses a label whose value does not match, and job or env", () => {
    const current = group(["a:1"], { team: "core" });
    expect(refused(() => applyDelete(current, { labels: { team: "edge" } }, appEnv)).message).toContain('has the value "core"');
    expect(refused(() => applyDelete(current, { labels: { tier: "web" } }, appEnv)).message).toContain("not registered");
    expect(refused(() => applyDelete(current, { labels: { job: "billing" } }, appEnv)).message).toContain("cannot be deleted");
    expect(refused(() => applyDelete(current, { labels: {} }, appEnv)).status).toBe(400);
  });

  it("removing every target is refused while other labels stay", () => {
    const current = group(["a:1", "b:2"], { team: "core" });
    expect(refused(() => applyDelete(current, { targets: ["a:1", "b:2"] }, appEnv)).message).toContain('"team"');
  });

  it("removing every target and every other label deletes the group", () => {
    const current = group(["a:1", "b:2"], { team: "core" });
    expect(applyDelete(current, { targets: ["a:1", "b:2"], labels: { team: "core" } }, appEnv)).toBeNull();
    expect(applyDelete(group(["a:1"]), { targets: ["a:1"] }, appEnv)).toBeNull();
  });
});

describe("properties of every rule", () => {
  const target = fc.constantFrom("a:1", "b:2", "c:3", "d:4", "e:5", "[::1]:9");
  const labelName = fc.constantFrom("job", "env", "team", "tier", "zone");
  const labelValue = fc.constantFrom("billing", "prod-hou", "core", "edge", "x");
  const change: fc.Arbitrary<Change> = fc.record(
    { targets: fc.array(target, { maxLength: 4 }), labels: fc.dictionary(labelName, labelValue, { maxKeys: 3 }) },
    { requiredKeys: [] },
  );
  const current: fc.Arbitrary<TargetGroup | undefined> = fc.option(
    fc.record({
      targets: fc.uniqueArray(target, { minLength: 1, maxLength: 5 }),
      labels: fc.dictionary(labelName, labelValue, { maxKeys: 3 }).map((labels) => ({ job: "billing", env: "prod-hou", ...labels })),
    }),
    { nil: undefined },
  );
  const rules = [applyPut, applyPost, applyDelete] as const;

  it("either refuse with a RuleError or give a group Prometheus can use: distinct targets, job and env set", () => {
    fc.assert(
      fc.property(fc.constantFrom(...rules), current, change, (rule, before, request) => {
        let after: TargetGroup | null;
        try {
          after = rule(before, request, appEnv);
        } catch (error) {
          expect(error).toBeInstanceOf(RuleError);
          return;
        }
        if (after === null) return;
        expect(after.targets.length).toBeGreaterThan(0);
        expect(new Set(after.targets).size).toBe(after.targets.length);
        expect(Object.keys(after.labels).slice(0, 2)).toEqual(["job", "env"]);
      }),
    );
  });

  it("never change the group they are given", () => {
    fc.assert(
      fc.property(fc.constantFrom(...rules), current, change, (rule, before, request) => {
        const snapshot = structuredClone(before);
        try {
          rule(before, request, appEnv);
        } catch {
          // refusals are covered above
        }
        expect(before).toEqual(snapshot);
      }),
    );
  });

  it("POST then DELETE of new targets gives back the targets it started from", () => {
    fc.assert(
      fc.property(current, fc.uniqueArray(target, { minLength: 1 }), (before, added) => {
        fc.pre(before !== undefined && added.every((t) => !before.targets.includes(t)));
        const posted = applyPost(before, { targets: added }, appEnv);
        expect(applyDelete(posted, { targets: added }, appEnv)?.targets).toEqual(before?.targets);
      }),
    );
  });
});
