import { createHash } from "node:crypto";
import { readFile } from "node:fs/promises";
import { join } from "node:path";
import { afterAll, beforeAll, beforeEach, describe, expect, it } from "vitest";
import { request, startTestService, type TestService } from "../helpers.js";

/** docs/api.md through a real listener, on the directory and (project api-on-etcd) on etcd. */
describe("conditional writes: ETag, If-Match, If-None-Match (docs/api.md)", () => {
  let sd: TestService;
  const path = "/cond/prod";

  beforeAll(async () => {
    sd = await startTestService();
  });
  afterAll(() => sd.close());
  beforeEach(async () => {
    await sd.request("DELETE", path);
  });

  const etagOfFile = async (): Promise<string> => {
    const bytes = await readFile(join(sd.directory, "cond@prod.json"));
    return `"${createHash("sha256").update(bytes).digest("base64url").slice(0, 27)}"`;
  };
  const put = (body: unknown, headers: Record<string, string> = {}) => sd.request("PUT", path, { body, headers });

  it("GET, HEAD and every write that leaves a group carry the same strong ETag, derived from the file's bytes", async () => {
    expect((await sd.request("GET", path)).headers.get("etag")).toBeNull();
    const created = await put("targets=a:1");
    expect(created.status).toBe(200);
    const tag = created.headers.get("etag");
    expect(tag).toMatch(/^"[A-Za-z0-9_-]{27}"$/);
    expect(tag).toBe(await etagOfFile());
    expect((await sd.request("GET", path)).headers.get("etag")).toBe(tag);
    expect((await fetch(sd.url + path, { method: "HEAD" })).headers.get("etag")).toBe(tag);

    const posted = await sd.request("POST", path, { body: "targets=b:2" });
    expect(posted.headers.get("etag")).not.toBe(tag);
    expect(posted.headers.get("etag")).toBe(await etagOfFile());
    const deleted = await sd.request("DELETE", path, { body: "targets=b:2" });
    // Back to the same group, so back to the same tag.
    expect(deleted.headers.get("etag")).toBe(tag);
    const gone = await sd.request("DELETE", path);
    expect(gone.status).toBe(200);
    expect(gone.headers.get("etag")).toBeNull();
  });

  it("If-Match with the current tag, a list holding it, or * goes ahead", async () => {
    const tag = (await put("targets=a:1")).headers.get("etag")!;
    const one = await put("targets=a:1,b:2", { "If-Match": tag });
    expect(one.status).toBe(200);
    const list = await put("targets=c:3", { "If-Match": `"nope", ${one.headers.get("etag")!}` });
    expect(list.status).toBe(200);
    expect((await sd.request("POST", path, { body: "team=core", headers: { "If-Match": "*" } })).status).toBe(200);
    expect(await sd.fileOf("cond", "prod")).toEqual([{ targets: ["c:3"], labels: { job: "cond", env: "prod", team: "core" } }]);
  });

  for (const method of ["PUT", "POST", "DELETE"] as const) {
    it(`${method} with a stale If-Match answers 412 in JSON and changes nothing`, async () => {
      const stale = (await put("targets=a:1")).headers.get("etag")!;
      const current = (await sd.request("POST", path, { body: "targets=b:2" })).headers.get("etag")!;
      const before = await readFile(join(sd.directory, "cond@prod.json"), "utf8");
      const body = method === "DELETE" ? "targets=b:2" : method === "POST" ? "targets=c:3" : "targets=z:9";
      const answer = await sd.request(method, path, { body, headers: { "If-Match": stale } });
      expect(answer.status).toBe(412);
      expect((answer.body as { message: string }).message).toContain(current);
      expect(answer.headers.get("etag")).toBe(current);
      expect(await readFile(join(sd.directory, "cond@prod.json"), "utf8")).toBe(before);
      expect((await sd.request("GET", path)).headers.get("etag")).toBe(current);
    });
  }

  it("a weak tag never satisfies If-Match, and If-Match on nothing registered is a 412", async () => {
    const tag = (await put("targets=a:1")).headers.get("etag")!;
    expect((await put("targets=b:1", { "If-Match": `W/${tag}` })).status).toBe(412);
    await sd.request("DELETE", path);
    const answer = await put("targets=b:1", { "If-Match": "*" });
    expect(answer.status).toBe(412);
    expect(await sd.fileOf("cond", "prod")).toBeUndefined();
    expect((await sd.request("DELETE", path, { headers: { "If-Match": tag } })).status).toBe(412);
  });

  it("If-None-Match: * creates only when nothing is registered", async () => {
    expect((await put("targets=a:1", { "If-None-Match": "*" })).status).toBe(200);
    const again = await sd.request("POST", path, { body: "targets=b:2", headers: { "If-None-Match": "*" } });
    expect(again.status).toBe(412);
    expect((again.body as { message: string }).message).toMatch(/already registered/);
    expect(await sd.fileOf("cond", "prod")).toEqual([{ targets: ["a:1"], labels: { job: "cond", env: "prod" } }]);
  });

  it("a malformed If-Match is a 400 that shows the value as it came and the accepted form", async () => {
    await put("targets=a:1");
    const answer = await put("targets=b:1", { "If-Match": "abc" });
    expect(answer.status).toBe(400);
    // Sent without quotes, so shown without them: the quotes are what is missing.
    expect((answer.body as { message: string }).message).toBe(
      'If-Match: abc is not an entity-tag: send the ETag header of a GET as it came, double quotes included (If-Match: "…"), ' +
        'a comma-separated list of them, or *. Did you mean If-Match: "abc"?',
    );
    const spaced = await put("targets=b:1", { "If-None-Match": '"a b"' });
    expect((spaced.body as { message: string }).message).toMatch(/^If-None-Match: "a b" is not an entity-tag: /);
    expect((await sd.request("GET", "/cond/prod")).body).toEqual([{ targets: ["a:1"], labels: { job: "cond", env: "prod" } }]);
  });

  it("If-Match lists are read as lists: * stands alone, an empty list says so, every unquoted tag is quoted in the fix", async () => {
    await put("targets=a:1");
    const messageOf = async (value: string) => ((await put("targets=b:1", { "If-Match": value })).body as { message: string }).message;
    expect(await messageOf('*, "x"')).toBe('If-Match: * stands alone: send If-Match: * or a list of entity-tags, not both');
    expect(await messageOf(",")).toMatch(/^If-Match: , lists no entity-tag/);
    expect(await messageOf('"a", b')).toMatch(/^If-Match: b is not an entity-tag: .* Did you mean If-Match: "a", "b"\?$/);
    expect((await sd.request("GET", "/cond/prod")).body).toEqual([{ targets: ["a:1"], labels: { job: "cond", env: "prod" } }]);
  });

  it("refused requests are counted as precondition failures", async () => {
    await put("targets=a:1");
    await put("targets=b:1", { "If-Match": '"stale"' });
    const metrics = await (await fetch(`${sd.url}/metrics`)).text();
    expect(metrics).toMatch(/^file_sd_rejected_requests_total\{reason="precondition"\} [1-9]/m);
  });

  it("read-modify-write loops with If-Match from several clients: every acknowledged change survives", async () => {
    await put("targets=a:1");
    const clients = 4;
    const rounds = 12;
    const acknowledged: string[] = [];
    let conflicts = 0;
    await Promise.all(
      Array.from({ length: clients }, async (_, client) => {
        for (let round = 0; round < rounds; round++) {
          for (let attempt = 0; ; attempt++) {
            expect(attempt).toBeLessThan(200);
            const read = await request(sd.url, "GET", path);
            const [group] = read.body as [{ labels: Record<string, string> }];
            const name = `c${client}_${round}`;
            // PUT replaces the whole label set: without If-Match, concurrent loops would drop each other's labels.
            const answer = await request(sd.url, "PUT", path, {
              body: { labels: { ...group.labels, [name]: "x" } },
              headers: { "If-Match": read.headers.get("etag")! },
            });
            if (answer.status === 200) {
              acknowledged.push(name);
              break;
            }
            expect(answer.status).toBe(412);
            conflicts++;
          }
        }
      }),
    );
    expect(acknowledged).toHaveLength(clients * rounds);
    const [group] = (await sd.fileOf("cond", "prod")) as [{ labels: Record<string, string> }];
    for (const name of acknowledged) expect(group.labels[name], name).toBe("x");
    expect((await sd.request("GET", path)).body).toEqual([group]);
    console.log(`read-modify-write: ${acknowledged.length} acknowledged, ${conflicts} answered 412 and retried`);
  });
});
