import { afterAll, beforeAll, beforeEach, describe, expect, it } from "vitest";
import { filesIn, startTestService, type TestService } from "../helpers.js";

/** docs/api.md through a real listener: every answer checked against the file Prometheus reads. */
describe("PUT, POST and DELETE (docs/api.md)", () => {
  let sd: TestService;
  const path = "/billing/prod-hou";
  const defaults = { job: "billing", env: "prod-hou" };

  beforeAll(async () => {
    sd = await startTestService();
  });
  afterAll(() => sd.close());
  beforeEach(async () => {
    await sd.request("DELETE", path);
  });

  /** GET and the file agree, and equal `expected` (undefined: no file and GET answers []). */
  async function expectState(expected: object | undefined): Promise<void> {
    expect(await sd.fileOf("billing", "prod-hou")).toEqual(expected === undefined ? undefined : [expected]);
    expect((await sd.request("GET", path)).body).toEqual(expected === undefined ? [] : [expected]);
  }

  async function expectRefused(method: string, body: unknown, status: number, message: string | RegExp): Promise<void> {
    const before = await sd.fileOf("billing", "prod-hou");
    const answer = await sd.request(method, path, body === undefined ? {} : { body });
    expect(answer.status).toBe(status);
    expect((answer.body as { message: string }).message).toMatch(message);
    expect(await sd.fileOf("billing", "prod-hou")).toEqual(before);
  }

  it("the curl one-liner from the README registers the targets", async () => {
    const answer = await sd.request("PUT", path, { body: "targets=host1:9100,host2:9100&team=core" });
    expect(answer.status).toBe(200);
    expect(answer.body).toEqual([{ targets: ["host1:9100", "host2:9100"], labels: { ...defaults, team: "core" } }]);
    await expectState({ targets: ["host1:9100", "host2:9100"], labels: { ...defaults, team: "core" } });
    expect(await filesIn(sd.directory)).toEqual(["billing@prod-hou.json"]);
  });

  describe("PUT", () => {
    it("needs targets to create, and targets or labels always", async () => {
      await expectRefused("PUT", { labels: { team: "core" } }, 400, /needs "targets"/);
      await expectRefused("PUT", undefined, 400, /PUT needs "targets", "labels" or both/);
      await expectState(undefined);
    });

    it("replaces targets, keeping labels", async () => {
      await sd.request("PUT", path, { body: { targets: ["a:1"], labels: { team: "core" } } });
      expect((await sd.request("PUT", path, { body: { targets: ["b:2"] } })).status).toBe(200);
      await expectState({ targets: ["b:2"], labels: { ...defaults, team: "core" } });
    });

    it("replaces labels, keeping targets; job and env fall back to the defaults; {} resets", async () => {
      await sd.request("PUT", path, { body: { targets: ["a:1"], labels: { job: "node", team: "core" } } });
      await expectState({ targets: ["a:1"], labels: { job: "node", env: "prod-hou", team: "core" } });
      await sd.request("PUT", path, { body: { labels: { tier: "web" } } });
      await expectState({ targets: ["a:1"], labels: { ...defaults, tier: "web" } });
      await sd.request("PUT", path, { body: { labels: {} } });
      await expectState({ targets: ["a:1"], labels: defaults });
    });

    it("refuses an empty or duplicated target list and changes nothing", async () => {
      await sd.request("PUT", path, { body: { targets: ["a:1"] } });
      await expectRefused("PUT", { targets: [] }, 400, /at least one target/);
      await expectRefused("PUT", { targets: ["b:2", "b:2"] }, 400, /listed twice/);
      await expectState({ targets: ["a:1"], labels: defaults });
    });
  });

  describe("POST", () => {
    it("creates with targets and appends new targets in order", async () => {
      await expectRefused("POST", { labels: { team: "x" } }, 400, /needs "targets"/);
      expect((await sd.request("POST", path, { body: "targets=a:1" })).status).toBe(200);
      expect((await sd.request("POST", path, { body: "targets=c:3,b:2" })).status).toBe(200);
      await expectState({ targets: ["a:1", "c:3", "b:2"], labels: defaults });
    });

    it("with an existing target changes nothing", async () => {
      await sd.request("POST", path, { body: "targets=a:1,b:2" });
      await expectRefused("POST", { targets: ["c:3", "b:2"] }, 400, /already registered.*"b:2"/);
      await expectState({ targets: ["a:1", "b:2"], labels: defaults });
    });

    it("adds and replaces labels, and refuses labels that change nothing", async () => {
      await sd.request("POST", path, { body: "targets=a:1&team=core" });
      expect((await sd.request("POST", path, { body: "team=edge&tier=web" })).status).toBe(200);
      await expectState({ targets: ["a:1"], labels: { ...defaults, team: "edge", tier: "web" } });
      await expectRefused("POST", { labels: { team: "edge" } }, 400, /none of the labels changes anything/);
      await expectRefused("POST", { labels: {} }, 400, /at least one label/);
      await expectRefused("POST", { targets: [] }, 400, /at least one target/);
      await expectRefused("POST", undefined, 400, /POST needs/);
    });

    it("overrides job and env but never removes them", async () => {
      await sd.request("POST", path, { body: "targets=a:1&job=node&env=staging" });
      await expectState({ targets: ["a:1"], labels: { job: "node", env: "staging" } });
    });
  });

  describe("DELETE", () => {
    it("of nothing registered is a 404", async () => {
      await expectRefused("DELETE", undefined, 404, /nothing is registered for billing\/prod-hou/);
      await expectRefused("DELETE", { targets: ["a:1"] }, 404, /nothing is registered/);
    });

    it("with no body deletes the group and its file, answering the group as it was", async () => {
      await sd.request("PUT", path, { body: "targets=a:1&team=core" });
      const answer = await sd.request("DELETE", path);
      expect(answer.status).toBe(200);
      expect(answer.body).toEqual([{ targets: ["a:1"], labels: { ...defaults, team: "core" } }]);
      await expectState(undefined);
      expect(await filesIn(sd.directory)).toEqual([]);
    });

    it("removes the named targets and labels, answering the group after", async () => {
      await sd.request("PUT", path, { body: "targets=a:1,b:2,c:3&team=core&tier=web" });
      const answer = await sd.request("DELETE", path, { body: { targets: ["b:2"], labels: { tier: "web" } } });
      expect(answer.body).toEqual([{ targets: ["a:1", "c:3"], labels: { ...defaults, team: "core" } }]);
      await expectState({ targets: ["a:1", "c:3"], labels: { ...defaults, team: "core" } });
    });

    it("refuses what is not registered, wrong values, job and env, and empty lists", async () => {
      await sd.request("PUT", path, { body: "targets=a:1,b:2&team=core" });
      await expectRefused("DELETE", { targets: ["x:9"] }, 400, /not registered.*"x:9"/);
      await expectRefused("DELETE", { targets: ["a:1", "a:1"] }, 400, /listed twice/);
      await expectRefused("DELETE", { targets: [] }, 400, /at least one target/);
      await expectRefused("DELETE", { labels: { team: "edge" } }, 400, /has the value "core"/);
      await expectRefused("DELETE", { labels: { job: "billing" } }, 400, /cannot be deleted/);
      await expectRefused("DELETE", { labels: {} }, 400, /at least one label/);
      await expectState({ targets: ["a:1", "b:2"], labels: { ...defaults, team: "core" } });
    });

    it("removing every target is refused while other labels stay, and deletes the group when they go too", async () => {
      await sd.request("PUT", path, { body: "targets=a:1,b:2&team=core" });
      await expectRefused("DELETE", "targets=a:1,b:2", 400, /remove those labels in the same request/);
      const answer = await sd.request("DELETE", path, { body: "targets=a:1,b:2&team=core" });
      expect(answer.status).toBe(200);
      await expectState(undefined);
    });
  });
});
