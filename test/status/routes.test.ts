import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { startTestService, type TestService } from "../helpers.js";
import { freePort } from "../support/ports.js";

/**
 * The status routes themselves, without a Prometheus to ask: no PROMETHEUS_URL,
 * and a PROMETHEUS_URL where nothing listens (every answer `unreachable`).
 */

let off: TestService;
let nobody: TestService;
let closedUrl: string;

beforeAll(async () => {
  off = await startTestService();
  closedUrl = `http://127.0.0.1:${await freePort()}`;
  nobody = await startTestService({ env: { PROMETHEUS_URL: closedUrl } });
  for (const service of [off, nobody]) {
    expect((await service.request("PUT", "/billing/prod", { body: "targets=127.0.0.1:9" })).status).toBe(200);
  }
});

afterAll(async () => {
  await off?.close();
  await nobody?.close();
});

describe("GET /<application>/<environment>/status without PROMETHEUS_URL", () => {
  it("is a 404 that says what to set, also with ?wait (a deploy gate must not pass)", async () => {
    for (const path of ["/billing/prod/status", "/billing/prod/status?wait=5s", "/-/status", "/billing/prod/probes/status?wait=5s", "/-/status?kind=probes"]) {
      const answer = await off.request("GET", path);
      expect(answer.status, path).toBe(404);
      expect((answer.body as { message: string }).message).toMatch(/PROMETHEUS_URL=http:\/\/prometheus:9090/);
    }
  });
});

describe("the status routes", () => {
  it("answer 405 with Allow to other methods", async () => {
    for (const path of ["/billing/prod/status", "/-/status", "/billing/prod/probes/status"]) {
      const answer = await nobody.request("POST", path, { body: "x=1" });
      expect(answer.status, path).toBe(405);
      expect(answer.headers.get("allow")).toBe("GET, HEAD");
    }
  });

  it("leave every other three-segment path a 404", async () => {
    for (const path of ["/billing/prod/statuses", "/billing/prod/health", "/billing/prod/status/x", "/billing/prod/probes/x", "/billing/prod/probes/status/x"]) {
      expect((await nobody.request("GET", path)).status, path).toBe(404);
    }
  });

  it("refuse a bad name like GET of a group", async () => {
    const answer = await nobody.request("GET", "/bil%20ling/prod/status");
    expect(answer.status).toBe(400);
  });

  it.each(["11m", "10m1s", "99999999999999999999d"])("?wait=%s, a duration over 10m, is a 400 that says so", async (wait) => {
    const answer = await off.request("GET", `/billing/prod/status?wait=${encodeURIComponent(wait)}`);
    expect(answer.status).toBe(400);
    expect((answer.body as { message: string }).message).toBe(`?wait=${JSON.stringify(wait)} is longer than a status waits (10m at most); wait again after it answers, e.g. in a loop`);
  });

  it.each(["abc", "-1s", "1.5s", "30", ""])("?wait=%s is a 400 naming the value and the accepted form", async (wait) => {
    for (const service of [off, nobody]) {
      const answer = await service.request("GET", `/billing/prod/status?wait=${encodeURIComponent(wait)}`);
      expect(answer.status).toBe(400);
      expect((answer.body as { message: string }).message).toBe(
        `?wait=${JSON.stringify(wait)} is not a Prometheus duration such as 30s, 2m or 1m30s, at most 10m`,
      );
    }
  });

  it("the probes' status takes the same ?wait=, and nothing else", async () => {
    expect((await nobody.request("GET", "/billing/prod/probes/status?wait=11m")).status).toBe(400);
    const unknown = await nobody.request("GET", "/billing/prod/probes/status?ttl=1s");
    expect(unknown.status).toBe(400);
    expect((unknown.body as { message: string }).message).toMatch(/unknown query parameter "ttl": GET \/<application>\/<environment>\/probes\/status takes \?wait=/);
    const kind = await nobody.request("GET", "/-/status?kind=probe");
    expect(kind.status).toBe(400);
    expect((kind.body as { message: string }).message).toMatch(/\?kind="probe" is not a kind of group: give \?kind=targets .* or \?kind=probes/);
  });

  it("?wait given twice is a 400", async () => {
    const answer = await nobody.request("GET", "/billing/prod/status?wait=1s&wait=2s");
    expect(answer.status).toBe(400);
    expect((answer.body as { message: string }).message).toMatch(/give \?wait= once/);
  });
});

describe("a Prometheus that does not answer", () => {
  it("makes every target unreachable with the reason, never ready", async () => {
    const answer = await nobody.request("GET", "/billing/prod/status");
    expect(answer.status).toBe(200);
    expect(answer.headers.get("cache-control")).toBe("no-store");
    expect(answer.body).toEqual({
      application: "billing",
      environment: "prod",
      ready: false,
      targets: [
        {
          target: "127.0.0.1:9",
          ready: false,
          servers: [
            {
              prometheus: closedUrl,
              health: "unreachable",
              lastScrape: null,
              error: expect.stringMatching(new RegExp(`^${closedUrl}/api/v1/targets\\?state=any: fetch failed: .*ECONNREFUSED`)),
            },
          ],
        },
      ],
    });
  });

  it("?wait answers 503 with the same body at the deadline", async () => {
    const started = Date.now();
    const answer = await nobody.request("GET", "/billing/prod/status?wait=1500ms");
    const ms = Date.now() - started;
    expect(answer.status).toBe(503);
    expect((answer.body as { ready: boolean }).ready).toBe(false);
    expect(ms).toBeGreaterThanOrEqual(1500);
    expect(ms).toBeLessThan(4000);
  });

  it("nothing registered: 200 with ready false, no targets and a message; 503 after a wait", async () => {
    const now = await nobody.request("GET", "/nothing/here/status");
    expect(now.status).toBe(200);
    expect(now.body).toEqual({
      application: "nothing",
      environment: "here",
      ready: false,
      targets: [],
      message: expect.stringMatching(/^nothing is registered for nothing\/here; register it first/),
    });
    const waited = await nobody.request("GET", "/nothing/here/status?wait=300ms");
    expect(waited.status).toBe(503);
    expect(waited.body).toEqual(now.body);
  });

  it("a probe is unreachable too, with the reason, and nothing registered says how to register a probe", async () => {
    expect((await nobody.request("PUT", "/billing/prod/probes", { body: "targets=https://billing.example.com/health" })).status).toBe(200);
    const answer = await nobody.request("GET", "/billing/prod/probes/status?wait=300ms");
    expect(answer.status).toBe(503);
    expect(answer.body).toEqual({
      application: "billing",
      environment: "prod",
      kind: "probes",
      ready: false,
      targets: [
        {
          target: "https://billing.example.com/health",
          ready: false,
          servers: [{ prometheus: closedUrl, health: "unreachable", lastScrape: null, error: expect.stringMatching(/ECONNREFUSED/) }],
        },
      ],
    });
    const nothing = await nobody.request("GET", "/nothing/here/probes/status");
    expect(nothing.body).toMatchObject({ kind: "probes", ready: false, targets: [], message: expect.stringMatching(/^nothing is registered for the probes of nothing\/here; register it first \(curl -X PUT -d targets=https:\/\/host\/path -d __param_module=http_2xx …\/nothing\/here\/probes\)/) });
    const all = (await nobody.request("GET", "/-/status?kind=probes")).body as { groups: { application: string; kind?: string }[] };
    expect(all.groups.map((group) => `${group.application} ${group.kind}`)).toEqual(["billing probes"]);
    expect((await nobody.request("DELETE", "/billing/prod/probes")).status).toBe(200);
  });

  it("GET /-/status lists every group with its status, and takes the index' filters", async () => {
    await nobody.request("PUT", "/alpha/dev", { body: "targets=127.0.0.1:10" });
    const all = await nobody.request("GET", "/-/status");
    expect(all.status).toBe(200);
    const body = all.body as { prometheus: string[]; ready: boolean; groups: { application: string; environment: string }[] };
    expect(body.prometheus).toEqual([closedUrl]);
    expect(body.ready).toBe(false);
    expect(body.groups.map((group) => `${group.application}/${group.environment}`)).toEqual(["alpha/dev", "billing/prod"]);
    const filtered = await nobody.request("GET", "/-/status?application=billing");
    expect((filtered.body as typeof body).groups.map((group) => group.application)).toEqual(["billing"]);
    expect((await nobody.request("GET", "/-/status?application=-x")).status).toBe(400);
  });
});
