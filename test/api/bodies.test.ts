import { gzipSync } from "node:zlib";
import { afterAll, beforeAll, beforeEach, describe, expect, it } from "vitest";
import { startTestService, type TestService } from "../helpers.js";

describe("request bodies over HTTP (docs/api.md)", () => {
  let sd: TestService;
  beforeAll(async () => {
    sd = await startTestService({ env: { MAX_BODY_BYTES: "4096" } });
  });
  afterAll(() => sd.close());
  beforeEach(async () => {
    await sd.request("DELETE", "/billing/prod");
  });

  const expected = [{ targets: ["a:1", "b:2"], labels: { job: "billing", env: "prod", team: "core" } }];

  it.each([
    ["application/json", '{"targets": ["a:1", "b:2"], "labels": {"team": "core"}}'],
    ["application/json; charset=utf-8", '{"targets": ["a:1", "b:2"], "labels": {"team": "core"}}'],
    ["text/vnd.yaml", "targets: [a:1, b:2]\nlabels: {team: core}\n"],
    ["text/yaml", "targets:\n  - a:1\n  - b:2\nlabels:\n  team: core\n"],
    ["text/x-yaml", "targets: [a:1, b:2]\nlabels: {team: core}\n"],
    ["application/vnd.yaml", "targets: [a:1, b:2]\nlabels: {team: core}\n"],
    ["application/x-yaml", "targets: [a:1, b:2]\nlabels: {team: core}\n"],
    ["application/yaml; charset=UTF-8", "targets: [a:1, b:2]\nlabels: {team: core}\n"],
    ["application/x-www-form-urlencoded", "targets=a:1,b:2&team=core"],
    ["application/x-www-form-urlencoded", "targets=a:1&targets=b:2&team=core"],
  ])("%s: %j is written as the group", async (contentType, body) => {
    const answer = await sd.request("PUT", "/billing/prod", { body, contentType });
    expect(answer.status).toBe(200);
    expect(answer.body).toEqual(expected);
    expect(await sd.fileOf("billing", "prod")).toEqual(expected);
  });

  it("a body larger than MAX_BODY_BYTES is a 413 and changes nothing", async () => {
    const body = `targets=${Array.from({ length: 600 }, (_, i) => `host${i}:9100`).join(",")}`;
    const answer = await sd.request("PUT", "/billing/prod", { body });
    expect(answer.status).toBe(413);
    expect(answer.body).toEqual({ message: expect.stringContaining("MAX_BODY_BYTES (4096 bytes)") });
    expect(await sd.fileOf("billing", "prod")).toBeUndefined();
  });

  it.each(["text/plain", "multipart/form-data; boundary=x", "application/xml"])("%s is a 415 and changes nothing", async (contentType) => {
    const answer = await sd.request("PUT", "/billing/prod", { body: "targets=a:1", contentType });
    expect(answer.status).toBe(415);
    expect(answer.body).toEqual({ message: expect.stringContaining("application/json") });
    expect(await sd.fileOf("billing", "prod")).toBeUndefined();
  });

  it("a body without a Content-Type is a 415", async () => {
    const response = await fetch(`${sd.url}/billing/prod`, { method: "PUT", body: new Uint8Array(Buffer.from("targets=a:1")) });
    expect(response.status).toBe(415);
  });

  it("an unknown key is a 400 naming it, and changes nothing", async () => {
    await sd.request("PUT", "/billing/prod", { body: { targets: ["a:1"] } });
    const answer = await sd.request("PUT", "/billing/prod", { body: { targets: ["b:2"], hosts: ["c:3"] } });
    expect(answer.status).toBe(400);
    expect(answer.body).toEqual({ message: expect.stringContaining('"hosts"') });
    expect((await sd.request("GET", "/billing/prod")).body).toEqual([{ targets: ["a:1"], labels: { job: "billing", env: "prod" } }]);
    expect(await sd.fileOf("billing", "prod")).toEqual([{ targets: ["a:1"], labels: { job: "billing", env: "prod" } }]);
  });

  it("a YAML label value that is not a string tells the user to quote it", async () => {
    const answer = await sd.request("PUT", "/billing/prod", { body: "targets: [a:1]\nlabels:\n  port: 9100\n", contentType: "text/yaml" });
    expect(answer.status).toBe(400);
    expect(answer.body).toEqual({ message: 'label "port" must be a string; quote it: port: "9100"' });
    const changed = await sd.request("PUT", "/billing/prod", { body: "targets: [a:1]\nlabels:\n  version: 1.10\n", contentType: "text/yaml" });
    expect((changed.body as { message: string }).message).toBe(
      'label "version" must be a string, but unquoted it was read as the number 1.1; put the value in quotes exactly as you mean it: version: "…"',
    );
  });

  it("a Content-Encoding the reader does not know is a 415 naming the ones it does; names are case-insensitive", async () => {
    for (const encoding of ["zstd", "gzip, gzip"]) {
      const answer = await sd.request("PUT", "/billing/enc", { body: "targets=a:1", headers: { "Content-Encoding": encoding } });
      expect(answer.status, encoding).toBe(415);
      expect((answer.body as { message: string }).message).toBe(`Content-Encoding ${JSON.stringify(encoding)} is not supported: send the body as it is, or compressed once with gzip, deflate or br`);
    }
    const gzipped = await fetch(`${sd.url}/billing/enc`, { method: "PUT", headers: { "content-type": "application/x-www-form-urlencoded", "content-encoding": "GZIP" }, body: gzipSync("targets=gz:1") });
    expect(gzipped.status).toBe(200);
    expect((await sd.request("GET", "/billing/enc")).body).toEqual([{ targets: ["gz:1"], labels: { job: "billing", env: "enc" } }]);
  });

  it("a zero-length body or {} carries nothing: PUT needs targets or labels", async () => {
    for (const options of [{}, { body: {} }, { body: "", contentType: "application/json" }]) {
      const answer = await sd.request("PUT", "/billing/prod", options);
      expect(answer.status).toBe(400);
      expect(answer.body).toEqual({ message: 'PUT needs "targets", "labels" or both in the body' });
    }
  });

  it("invalid UTF-8 is a 400", async () => {
    const response = await fetch(`${sd.url}/billing/prod`, {
      method: "PUT",
      headers: { "content-type": "application/json" },
      body: new Uint8Array(Buffer.concat([Buffer.from('{"targets": ["a:1"], "labels": {"team": "'), Buffer.from([0xff, 0xfe]), Buffer.from('"}}')])),
    });
    expect(response.status).toBe(400);
    expect(await response.json()).toEqual({ message: expect.stringContaining("UTF-8") });
  });
});
