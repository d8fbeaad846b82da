import { request as httpRequest } from "node:http";
import { connect } from "node:net";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { MAX_COMBINED_NAME_LENGTH } from "../../src/parse/values.js";
import { filesIn, startTestService, type TestService } from "../helpers.js";

/** Sends a raw path, so nothing on the client side normalises `..` or percent escapes. */
function rawRequest(base: string, method: string, path: string): Promise<{ status: number; body: unknown; allow?: string }> {
  const url = new URL(base);
  return new Promise((resolve, reject) => {
    const req = httpRequest({ host: url.hostname, port: url.port, method, path }, (res) => {
      let text = "";
      res.on("data", (chunk: Buffer) => (text += chunk.toString()));
      res.on("end", () =>
        resolve({ status: res.statusCode ?? 0, body: text === "" ? undefined : JSON.parse(text), allow: res.headers.allow }),
      );
    });
    req.on("error", reject);
    req.end();
  });
}

describe("routes (docs/api.md)", () => {
  let sd: TestService;
  beforeAll(async () => {
    sd = await startTestService();
  });
  afterAll(() => sd.close());

  it("GET of an application/environment with nothing registered is []", async () => {
    const answer = await sd.request("GET", "/billing/prod-hou");
    expect(answer.status).toBe(200);
    expect(answer.body).toEqual([]);
    expect(answer.headers.get("content-type")).toMatch(/^application\/json/);
  });

  it.each(["/billing", "/billing/prod/extra", "/-/nothing/here"])("%s is a JSON 404", async (path) => {
    const answer = await sd.request("GET", path);
    expect(answer.status).toBe(404);
    expect(answer.body).toEqual({ message: expect.stringContaining("/<application>/<environment>") });
  });

  it.each(["PATCH", "OPTIONS"])("%s is a JSON 405 with Allow", async (method) => {
    const answer = await rawRequest(sd.url, method, "/billing/prod-hou");
    expect(answer.status).toBe(405);
    expect(answer.allow).toBe("GET, HEAD, PUT, POST, DELETE");
    expect(answer.body).toEqual({ message: expect.stringContaining(method) });
  });

  it.each([
    "/billing/..",
    "/billing/%2e%2e",
    "/..%2f..%2fetc/passwd",
    "/billing%2F..%2Fx/prod",
    "/billing/prod%00",
    "/billing/prod%20hou",
    "/-billing/prod",
    "/.billing/prod",
    "/billing/.",
    `/${"a".repeat(129)}/prod`,
    "/b%C3%A9/prod",
    "/billing/prod@x",
  ])("%s is a 400 and touches no file", async (path) => {
    for (const method of ["GET", "PUT", "POST", "DELETE"]) {
      const answer = await rawRequest(sd.url, method, path);
      expect(answer.status, `${method} ${path}`).toBe(400);
      expect(answer.body).toEqual({ message: expect.stringMatching(/is not a valid name/) });
    }
    expect(await filesIn(sd.directory)).toEqual([]);
  });

  it("a name of 128 characters is fine", async () => {
    const name = "a".repeat(128);
    const answer = await sd.request("PUT", `/${name}/prod`, { body: "targets=h:1" });
    expect(answer.status).toBe(200);
    expect(await sd.fileOf(name, "prod")).toEqual([{ targets: ["h:1"], labels: { job: name, env: "prod" } }]);
  });

  it.each([
    [128, MAX_COMBINED_NAME_LENGTH - 128],
    [Math.floor(MAX_COMBINED_NAME_LENGTH / 2), Math.ceil(MAX_COMBINED_NAME_LENGTH / 2)],
  ])("the longest pair (%i + %i characters) works with every option, ?ttl= included; one character more is a 400 that says the limit", async (a, e) => {
    const [application, environment] = ["x".repeat(a), "y".repeat(e)];
    const group = (targets: string[]) => [{ targets, labels: { job: application, env: environment } }];
    for (const [method, body] of [["PUT", "targets=h:1"], ["POST", "targets=h:2"], ["POST", "targets=h:1,h:2"], ["PUT", "targets=h:3"]] as const) {
      const answer = await sd.request(method, `/${application}/${environment}?ttl=1h`, { body });
      expect(answer.status, `${method} ${body}: ${JSON.stringify(answer.body)}`).toBe(200);
    }
    expect(await sd.fileOf(application, environment)).toEqual(group(["h:3"]));
    const index = (await sd.request("GET", `/?application=${application}`)).body as { groups: { expires?: Record<string, string> }[] };
    expect(Object.keys(index.groups[0]?.expires ?? {})).toEqual(["h:3"]);
    expect((await sd.request("DELETE", `/${application}/${environment}`)).status).toBe(200);
    expect(await sd.fileOf(application, environment)).toBeUndefined();

    const longer = await sd.request("PUT", `/${application}/${environment}y?ttl=1h`, { body: "targets=h:1" });
    expect(longer.status).toBe(400);
    expect((longer.body as { message: string }).message).toMatch(
      new RegExp(`^application and environment are ${MAX_COMBINED_NAME_LENGTH + 1} characters together, over the limit of ${MAX_COMBINED_NAME_LENGTH}`),
    );
    // Nothing of the pair is left: no group, no deadlines, no temporary twin.
    expect((await filesIn(sd.directory)).filter((name) => name.startsWith(`${application}@`))).toEqual([]);
  });

  it("a request Node's HTTP parser refuses still gets a JSON 400", async () => {
    const url = new URL(sd.url);
    const answer = await new Promise<string>((resolve, reject) => {
      const socket = connect(Number(url.port), url.hostname, () => {
        socket.write("PUT /billing/prod HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n");
      });
      let text = "";
      socket.on("data", (chunk: Buffer) => (text += chunk.toString()));
      socket.on("end", () => resolve(text));
      socket.on("error", reject);
    });
    expect(answer).toMatch(/^HTTP\/1\.1 400 Bad Request\r\n/);
    expect(JSON.parse(answer.slice(answer.indexOf("\r\n\r\n") + 4))).toEqual({ message: expect.stringContaining("not valid HTTP") });
  });

  it("HEAD answers like GET without a body", async () => {
    const answer = await rawRequest(sd.url, "HEAD", "/billing/prod-hou");
    expect(answer.status).toBe(200);
    expect(answer.body).toBeUndefined();
  });
});
