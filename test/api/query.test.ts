import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { startTestService, type TestService } from "../helpers.js";

/**
 * Each route takes the query parameters it documents and answers 400 to any
 * other, naming it: `?tll=60s` must never register a permanent target, and
 * `/?app=billing` must never list every group. On both backends.
 */
describe("query parameters", () => {
  let sd: TestService;
  beforeAll(async () => {
    sd = await startTestService();
  });
  afterAll(() => sd.close());

  const message = (answer: { body: unknown }): string => (answer.body as { message: string }).message;

  it("a misspelt ?ttl= is a 400 that says what was meant, and registers nothing", async () => {
    const answer = await sd.request("POST", "/typo/prod?tll=60s", { body: "targets=host1:9100" });
    expect(answer.status).toBe(400);
    expect(message(answer)).toBe('unknown query parameter "tll" (did you mean ?ttl=?): POST /<application>/<environment> takes ?ttl=. Nothing was changed');
    expect((await sd.request("GET", "/typo/prod")).body).toEqual([]);
    expect(await sd.fileOf("typo", "prod")).toBeUndefined();
  });

  it("the index refuses a filter it does not know instead of listing everything", async () => {
    await sd.request("PUT", "/billing/prod", { body: "targets=b:1" });
    const answer = await sd.request("GET", "/?app=billing");
    expect(answer.status).toBe(400);
    expect(message(answer)).toBe('unknown query parameter "app" (did you mean ?application=?): GET / takes ?application=, ?environment=, ?q=. Nothing was changed');
    expect(((await sd.request("GET", "/?application=billing")).body as { groups: unknown[] }).groups).toHaveLength(1);
    // The page's filter, asked of the JSON index, would look filtered and list everything.
    const page = await sd.request("GET", "/?q=billing");
    expect(page.status).toBe(400);
    expect(message(page)).toMatch(/^\?q= is the page's filter/);
  });

  it("?ttl= on DELETE says where it belongs", async () => {
    const answer = await sd.request("DELETE", "/billing/prod?ttl=60s");
    expect(answer.status).toBe(400);
    expect(message(answer)).toMatch(/DELETE \/<application>\/<environment> takes no query parameters \(\?ttl= is for PUT and POST; DELETE removes targets at once\)/);
    expect((await sd.request("GET", "/billing/prod")).body).toEqual([{ targets: ["b:1"], labels: { job: "billing", env: "prod" } }]);
  });

  it.each([
    ["GET", "/billing/prod"],
    ["PUT", "/billing/prod"],
    ["POST", "/billing/prod"],
    ["DELETE", "/billing/prod"],
    ["GET", "/billing/prod/status"],
    ["GET", "/"],
    ["GET", "/metrics"],
    ["GET", "/-/healthy"],
    ["GET", "/-/ready"],
    ["GET", "/-/http_sd"],
    ["GET", "/-/status"],
    ["GET", "/-/openapi.json"],
    ["GET", "/-/ui/app.js"],
    ["GET", "/-/ui/app.css"],
    ["GET", "/-/ui/icon.svg"],
  ])("%s %s refuses an unknown parameter, and a constructor or __proto__ one", async (method, path) => {
    for (const parameter of ["bogus", "constructor", "__proto__", "toString"]) {
      const answer = await sd.request(method, `${path}?${parameter}=1`, method === "PUT" || method === "POST" ? { body: "targets=x:1" } : {});
      expect(answer.status, `${method} ${path}?${parameter}=1`).toBe(400);
      expect(message(answer)).toMatch(new RegExp(`^unknown query parameter "${parameter}": ${method} `));
    }
    expect((await sd.request("GET", "/billing/prod")).body).toEqual([{ targets: ["b:1"], labels: { job: "billing", env: "prod" } }]);
  });
});
