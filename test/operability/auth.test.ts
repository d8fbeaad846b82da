import { createHash, randomBytes } from "node:crypto";
import { writeFile } from "node:fs/promises";
import { join } from "node:path";
import { afterEach, describe, expect, it } from "vitest";
import { loadConfig } from "../../src/config.js";
import { startService } from "../../src/server.js";
import { makeTempDir, removeDir, silentLogger, startTestService, type TestService } from "../helpers.js";
import { capturingLogger, parseMetrics, sampleValue } from "./support.js";

const newToken = (): string => randomBytes(32).toString("hex");
const sha256Hex = (token: string): string => createHash("sha256").update(token).digest("hex");
const bearer = (token: string) => ({ Authorization: `Bearer ${token}` });

const billing = newToken();
const everything = newToken();
const reader = newToken();

function tokensFile(read: "public" | "token"): string {
  return `
read: ${read}
tokens:
  - name: ci-billing
    sha256: ${sha256Hex(billing)}
    applications: ["billing", "billing-*"]
  - name: admin
    sha256: ${sha256Hex(everything)}
    applications: ["*"]
  - name: prometheus
    sha256: ${sha256Hex(reader)}
`;
}

const cleanups: (() => Promise<void>)[] = [];
afterEach(async () => {
  for (const cleanup of cleanups.splice(0).reverse()) await cleanup();
});

async function startWithTokens(
  read: "public" | "token",
  logger = silentLogger,
): Promise<TestService> {
  const directory = await makeTempDir("file-sd-auth-");
  const path = join(directory, "tokens.yaml");
  await writeFile(path, tokensFile(read));
  const service = await startTestService({ directory: join(directory, "file_sd"), env: { AUTH_TOKENS_FILE: path }, logger });
  cleanups.push(() => removeDir(directory), () => service.close());
  return service;
}

describe("write tokens (AUTH_TOKENS_FILE)", () => {
  it("PUT, POST and DELETE without a token are 401 with WWW-Authenticate, and change nothing", async () => {
    const service = await startWithTokens("public");
    for (const method of ["PUT", "POST", "DELETE"]) {
      const answer = await service.request(method, "/billing/prod", { body: "targets=a:9100" });
      expect(answer.status).toBe(401);
      expect(answer.headers.get("www-authenticate")).toBe('Bearer realm="file_sd"');
      expect(answer.body).toEqual({
        message: "this needs a token: send Authorization: Bearer <token> (see AUTH_TOKENS_FILE)",
      });
    }
    expect(await service.fileOf("billing", "prod")).toBeUndefined();
  });

  it("an unknown token, or another scheme, is 401 too", async () => {
    const service = await startWithTokens("public");
    const unknown = await service.request("PUT", "/billing/prod", { body: "targets=a:9100", headers: bearer(newToken()) });
    expect(unknown.status).toBe(401);
    expect(unknown.headers.get("www-authenticate")).toBe('Bearer realm="file_sd", error="invalid_token"');
    expect(unknown.body).toEqual({ message: "the bearer token is not one of the tokens in AUTH_TOKENS_FILE" });

    const basic = await service.request("PUT", "/billing/prod", {
      body: "targets=a:9100",
      headers: { Authorization: `Basic ${Buffer.from(`x:${billing}`).toString("base64")}` },
    });
    expect(basic.status).toBe(401);
    expect(basic.body).toEqual({ message: "the Authorization header must be: Bearer <token>" });
    expect(await service.fileOf("billing", "prod")).toBeUndefined();
  });

  it("a token changes the applications its patterns name, and the file is written", async () => {
    const service = await startWithTokens("public");
    for (const application of ["billing", "billing-eu"]) {
      const answer = await service.request("PUT", `/${application}/prod`, { body: "targets=a:9100", headers: bearer(billing) });
      expect(answer.status).toBe(200);
      expect(await service.fileOf(application, "prod")).toEqual([
        { targets: ["a:9100"], labels: { job: application, env: "prod" } },
      ]);
    }
    // The scheme is case-insensitive (RFC 7235).
    const lower = await service.request("POST", "/billing/prod", {
      body: "targets=b:9100",
      headers: { authorization: `bearer ${billing}` },
    });
    expect(lower.status).toBe(200);
    expect((await service.request("DELETE", "/billing/prod", { headers: bearer(billing) })).status).toBe(200);
    expect(await service.fileOf("billing", "prod")).toBeUndefined();
  });

  it("a token outside its applications is 403 and the other application's file is untouched", async () => {
    const service = await startWithTokens("public");
    await service.request("PUT", "/search/prod", { body: "targets=s:9100", headers: bearer(everything) });
    const before = await service.fileOf("search", "prod");

    const answer = await service.request("DELETE", "/search/prod", { headers: bearer(billing) });
    expect(answer.status).toBe(403);
    expect(answer.headers.get("www-authenticate")).toBe('Bearer realm="file_sd", error="insufficient_scope"');
    expect(answer.body).toEqual({
      message:
        'token "ci-billing" may not change application "search"; it may change: billing, billing-*. ' +
        "Ask for its applications to be extended in AUTH_TOKENS_FILE",
    });
    expect(await service.fileOf("search", "prod")).toEqual(before);

    const readOnly = await service.request("PUT", "/search/prod", { body: "targets=x:1", headers: bearer(reader) });
    expect(readOnly.status).toBe(403);
    expect((readOnly.body as { message: string }).message).toContain("it may change: no application (read only)");
  });

  it("a token that may change an application may change its probes, and no other application's", async () => {
    const service = await startWithTokens("public");
    const url = "https://billing.example.com/health";
    expect((await service.request("PUT", "/billing/prod/probes", { body: `targets=${url}` })).status).toBe(401);
    const put = await service.request("PUT", "/billing/prod/probes", { body: `targets=${url}`, headers: bearer(billing) });
    expect(put.status).toBe(200);
    expect(await service.fileOf("billing", "prod", "probes")).toEqual([{ targets: [url], labels: { job: "billing", env: "prod" } }]);
    const elsewhere = await service.request("PUT", "/search/prod/probes", { body: `targets=${url}`, headers: bearer(billing) });
    expect(elsewhere.status).toBe(403);
    expect((elsewhere.body as { message: string }).message).toMatch(/may not change application "search"/);
    expect(await service.fileOf("search", "prod", "probes")).toBeUndefined();
    expect((await service.request("DELETE", "/billing/prod/probes", { headers: bearer(reader) })).status).toBe(403);
    expect((await service.request("DELETE", "/billing/prod/probes", { headers: bearer(billing) })).status).toBe(200);
  });

  it("with read: public, GETs need no token", async () => {
    const service = await startWithTokens("public");
    for (const path of ["/billing/prod", "/", "/-/http_sd"]) {
      expect((await service.request("GET", path)).status).toBe(200);
    }
  });

  it("with read: token, GETs of registered data need any token from the file; health, metrics and the description stay open", async () => {
    const service = await startWithTokens("token");
    for (const path of ["/billing/prod", "/", "/-/http_sd", "/?application=billing", "/billing/prod/probes", "/-/http_sd?kind=probes"]) {
      const anonymous = await service.request("GET", path);
      expect(anonymous.status).toBe(401);
      expect(anonymous.headers.get("www-authenticate")).toBe('Bearer realm="file_sd"');
      expect((await fetch(service.url + path, { method: "HEAD" })).status).toBe(401);
      for (const token of [reader, billing]) {
        expect((await service.request("GET", path, { headers: bearer(token) })).status).toBe(200);
      }
    }
    for (const path of ["/-/healthy", "/-/ready", "/metrics", "/-/openapi.json"]) {
      expect((await fetch(service.url + path)).status).toBe(200);
    }
  });

  it("counts refusals as unauthorized and forbidden", async () => {
    const service = await startWithTokens("public");
    await service.request("PUT", "/billing/prod", { body: "targets=a:9100" });
    await service.request("PUT", "/search/prod", { body: "targets=a:9100", headers: bearer(billing) });
    const samples = parseMetrics(await (await fetch(`${service.url}/metrics`)).text());
    expect(sampleValue(samples, "file_sd_rejected_requests_total", { reason: "unauthorized" })).toBe(1);
    expect(sampleValue(samples, "file_sd_rejected_requests_total", { reason: "forbidden" })).toBe(1);
  });

  it("logs the token's name on the request line and never the token", async () => {
    const log = capturingLogger("trace");
    const service = await startWithTokens("token", log.logger);
    await service.request("PUT", "/billing/prod", { body: "targets=a:9100", headers: bearer(billing) });
    await service.request("PUT", "/search/prod", { body: "targets=a:9100", headers: bearer(billing) });
    await service.request("GET", "/", { headers: bearer(reader) });
    const stranger = newToken();
    await service.request("GET", "/", { headers: bearer(stranger) });

    const requests = log.lines().filter((line) => line.msg === "request");
    expect(requests.map((line) => [line.method, line.path, line.status, line.token])).toEqual([
      ["PUT", "/billing/prod", 200, "ci-billing"],
      ["PUT", "/search/prod", 403, "ci-billing"],
      ["GET", "/", 200, "prometheus"],
      ["GET", "/", 401, undefined],
    ]);
    for (const secret of [billing, reader, everything, stranger]) expect(log.text()).not.toContain(secret);
  });

  it("refuses to start when the file is missing or invalid, naming the file", async () => {
    const directory = await makeTempDir("file-sd-auth-");
    cleanups.push(() => removeDir(directory));
    const path = join(directory, "tokens.yaml");
    const start = () =>
      startService(
        loadConfig({ BIND: "127.0.0.1:0", FILE_SD_DIRECTORY: join(directory, "sd"), AUTH_TOKENS_FILE: path }),
        silentLogger,
      );
    await expect(start()).rejects.toThrow(`AUTH_TOKENS_FILE ${path} cannot be read: ENOENT`);
    await writeFile(path, "tokens:\n  - name: ci\n    sha256: nothex\n");
    await expect(start()).rejects.toThrow(
      `AUTH_TOKENS_FILE ${path} is not valid: tokens[0].sha256 (token "ci") must be the 64 hex digits`,
    );
  });
});
