import { describe, expect, it } from "vitest";
import { NO_DEADLINES } from "../../src/model.js";
import type { Entry } from "../../src/filestore/store.js";
import { GroupListJson } from "../../src/handlers/group-list-json.js";

function entry(application: string, environment: string, targets: string[]): Entry {
  return {
    id: { kind: "targets", application, environment },
    fileName: `${application}@${environment}.json`,
    group: { targets, labels: { job: application, env: environment } },
    expires: NO_DEADLINES,
    changedAt: new Date(0),
    text: "",
  };
}

describe("the JSON list of groups", () => {
  const render = (e: Entry) => ({ app: e.id.application, env: e.id.environment, targets: e.group.targets });

  it("is sorted by application, then environment, in code-unit order", () => {
    const list = new GroupListJson(render);
    const text = list.of([entry("b", "x", ["1:1"]), entry("a", "y", ["2:2"]), entry("a", "X", ["3:3"]), entry("B", "z", ["4:4"])]);
    expect((JSON.parse(text) as { app: string; env: string }[]).map(({ app, env }) => `${app}/${env}`)).toEqual([
      "B/z",
      "a/X",
      "a/y",
      "b/x",
    ]);
  });

  it("follows a replaced entry, an added one and a removed one", () => {
    const list = new GroupListJson(render);
    const a = entry("a", "prod", ["1:1"]);
    const b = entry("b", "prod", ["2:2"]);
    expect(JSON.parse(list.of([a, b]))).toHaveLength(2);
    expect(list.of([a, b])).toBe(list.of([a, b]));

    const changed = entry("b", "prod", ["2:2", "3:3"]);
    expect(JSON.parse(list.of([a, changed]))[1].targets).toEqual(["2:2", "3:3"]);
    expect(JSON.parse(list.of([a, changed, entry("c", "prod", ["4:4"])]))).toHaveLength(3);
    expect(JSON.parse(list.of([changed]))).toEqual([{ app: "b", env: "prod", targets: ["2:2", "3:3"] }]);
    expect(list.of([])).toBe("[]");
  });

  it("gives the framed answer encoded once while nothing changes, and anew after a change", () => {
    const list = new GroupListJson(render, { before: '{"groups":', after: "}" });
    const a = entry("a", "prod", ["1:1"]);
    const first = list.bytesOf([a]);
    expect(JSON.parse(first.toString("utf8"))).toEqual({ groups: [{ app: "a", env: "prod", targets: ["1:1"] }] });
    expect(list.bytesOf([a])).toBe(first);

    const changed = entry("a", "prod", ["1:1", "2:2"]);
    expect(JSON.parse(list.bytesOf([changed]).toString("utf8")).groups[0].targets).toEqual(["1:1", "2:2"]);
  });
});
