import { execFile } from "node:child_process";
import { readFile } from "node:fs/promises";
import { request as httpRequest } from "node:http";
import { request as httpsRequest } from "node:https";
import { join } from "node:path";
import { promisify } from "node:util";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { ConfigError, loadConfig } from "../../src/config.js";
import { makeTempDir, removeDir, startTestService, type TestService } from "../helpers.js";

const run = promisify(execFile);

let directory: string;
let certificate: Buffer;
let service: TestService;

beforeAll(async () => {
  directory = await makeTempDir("file-sd-tls-");
  const certFile = join(directory, "cert.pem");
  const keyFile = join(directory, "key.pem");
  await run(
    "openssl",
    [
      "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1",
      "-subj", "/CN=localhost", "-addext", "subjectAltName=IP:127.0.0.1",
      "-keyout", keyFile, "-out", certFile,
    ],
    { timeout: 60_000 },
  );
  certificate = await readFile(certFile);
  service = await startTestService({
    directory: join(directory, "sd"),
    env: { CERTFILE: certFile, KEYFILE: keyFile },
  });
});

afterAll(async () => {
  await service?.close();
  await removeDir(directory);
});

interface RawAnswer {
  readonly status: number;
  readonly body: string;
}

function send(
  requester: typeof httpsRequest | typeof httpRequest,
  url: string,
  options: { method?: string; body?: string; ca?: Buffer } = {},
): Promise<RawAnswer> {
  return new Promise((resolve, reject) => {
    const headers = options.body === undefined ? {} : { "content-type": "application/x-www-form-urlencoded" };
    const outgoing = requester(url, { method: options.method ?? "GET", headers, ca: options.ca, timeout: 10_000 }, (incoming) => {
      let body = "";
      incoming.setEncoding("utf8");
      incoming.on("data", (chunk: string) => (body += chunk));
      incoming.on("end", () => resolve({ status: incoming.statusCode ?? 0, body }));
      incoming.on("error", reject);
    });
    outgoing.on("timeout", () => outgoing.destroy(new Error("timed out")));
    outgoing.on("error", reject);
    outgoing.end(options.body);
  });
}

describe("HTTPS when CERTFILE and KEYFILE are set", () => {
  it("serves the API over TLS with the given certificate", async () => {
    expect(service.url).toMatch(/^https:\/\/127\.0\.0\.1:\d+$/);
    const put = await send(httpsRequest, `${service.url}/billing/prod`, { method: "PUT", body: "targets=a:9100", ca: certificate });
    expect(put.status).toBe(200);
    expect(await service.fileOf("billing", "prod")).toEqual([{ targets: ["a:9100"], labels: { job: "billing", env: "prod" } }]);
    const ready = await send(httpsRequest, `${service.url}/-/ready`, { ca: certificate });
    expect(ready).toEqual({ status: 200, body: '{"status":"ready"}' });
  });

  it("a client that does not trust the certificate is refused by its own TLS check", async () => {
    await expect(send(httpsRequest, `${service.url}/-/healthy`)).rejects.toThrow(/self[- ]signed certificate/);
  });

  it("plain HTTP to the HTTPS port gets no answer from the API", async () => {
    const plainUrl = service.url.replace(/^https:/, "http:");
    // Node's TLS server answers bytes that are not a handshake by closing the connection.
    await expect(send(httpRequest, `${plainUrl}/-/healthy`)).rejects.toThrow(/socket hang up|ECONNRESET/);
  });
});

describe("configuration for operations", () => {
  it("AUTH_TOKENS_FILE is optional; blank means unset", () => {
    expect(loadConfig({}).authTokensFile).toBeUndefined();
    expect(loadConfig({ AUTH_TOKENS_FILE: "  " }).authTokensFile).toBeUndefined();
    expect(loadConfig({ AUTH_TOKENS_FILE: " /etc/file-sd/tokens.yaml " }).authTokensFile).toBe("/etc/file-sd/tokens.yaml");
  });

  it("CERTFILE without KEYFILE (or the reverse) is a configuration error", () => {
    for (const env of [{ CERTFILE: "/tmp/cert.pem" }, { KEYFILE: "/tmp/key.pem" }]) {
      expect(() => loadConfig(env)).toThrow(ConfigError);
      expect(() => loadConfig(env)).toThrow("set both CERTFILE and KEYFILE for HTTPS, or neither for plain HTTP");
    }
    expect(loadConfig({ CERTFILE: "", KEYFILE: "" }).tls).toBeUndefined();
    expect(loadConfig({ CERTFILE: "c.pem", KEYFILE: "k.pem" }).tls).toEqual({ certFile: "c.pem", keyFile: "k.pem" });
  });
});
