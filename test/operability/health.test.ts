import { createServer, type Server } from "node:http";
import type { AddressInfo } from "node:net";
import { afterEach, describe, expect, it } from "vitest";
import { createApp } from "../../src/app.js";
import { FileStore } from "../../src/filestore/store.js";
import { makeTempDir, removeDir, request, silentLogger, startTestService, type TestService } from "../helpers.js";

const cleanups: (() => Promise<void>)[] = [];
afterEach(async () => {
  for (const cleanup of cleanups.splice(0).reverse()) await cleanup();
});

async function start(): Promise<TestService> {
  const service = await startTestService();
  cleanups.push(() => removeDir(service.directory), () => service.close());
  return service;
}

/** The app alone on a loopback listener, with a readiness the test controls. */
async function appWithReadiness(notReadyBecause: () => string | undefined): Promise<string> {
  const directory = await makeTempDir();
  const store = await FileStore.open({ directory, logger: silentLogger });
  const app = createApp({ store, logger: silentLogger, maxBodyBytes: 1024, readiness: { notReadyBecause } });
  const server: Server = createServer(app.callback());
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
  cleanups.push(
    () => removeDir(directory),
    () => new Promise<void>((resolve) => server.close(() => resolve())),
  );
  return `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
}

describe("health and readiness", () => {
  it("GET /-/healthy answers 200 while the process is up", async () => {
    const service = await start();
    const answer = await service.request("GET", "/-/healthy");
    expect(answer.status).toBe(200);
    expect(answer.body).toEqual({ status: "healthy" });
  });

  it("GET /-/ready answers 200 once the directory is loaded and watched", async () => {
    const service = await start();
    const answer = await service.request("GET", "/-/ready");
    expect(answer.status).toBe(200);
    expect(answer.body).toEqual({ status: "ready" });
  });

  it("GET /-/ready answers 503 with the reason until the service is ready, and /-/healthy stays 200", async () => {
    let reason: string | undefined = "loading the file_sd directory";
    const url = await appWithReadiness(() => reason);
    const notReady = await request(url, "GET", "/-/ready");
    expect(notReady.status).toBe(503);
    expect(notReady.body).toEqual({ status: "not ready", message: "loading the file_sd directory" });
    expect((await request(url, "GET", "/-/healthy")).status).toBe(200);

    reason = undefined;
    expect((await request(url, "GET", "/-/ready")).status).toBe(200);
  });

  it("HEAD works on both, and other methods get 405 with an Allow header", async () => {
    const service = await start();
    for (const path of ["/-/healthy", "/-/ready"]) {
      expect((await fetch(service.url + path, { method: "HEAD" })).status).toBe(200);
      const answer = await service.request("POST", path);
      expect(answer.status).toBe(405);
      expect(answer.headers.get("allow")).toBe("GET, HEAD");
      expect(answer.body).toEqual({ message: `POST is not supported on ${path}; use GET or HEAD` });
    }
  });

  it("an unknown /-/ path is a 404 that names the endpoints and the closest one, and never reaches the file system", async () => {
    const service = await start();
    const answer = await service.request("PUT", "/-/healthz", { body: "targets=a:9100" });
    expect(answer.status).toBe(404);
    expect((answer.body as { message: string }).message).toMatch(/^no endpoint \/-\/healthz; did you mean \/-\/healthy\? Paths under \/-\/ are the service's own: \/-\/healthy, \/-\/ready, /);
    expect(await service.fileOf("-", "healthz")).toBeUndefined();
    expect(((await service.request("GET", "/-/x/y")).body as { message: string }).message).toMatch(/^no endpoint \/-\/x\/y\. Paths under/);
    for (const [path, guess] of [["/-/readyz", "/-/ready"], ["/-/http-sd", "/-/http_sd"], ["/-/ui/", "/-/ui/app.js"], ["/-/statuz", "/-/status"], ["/-/x/y/status", undefined]] as const) {
      const missing = await service.request("GET", path);
      expect(missing.status, path).toBe(404);
      const message = (missing.body as { message: string }).message;
      expect(message).not.toMatch(/not a valid name/);
      if (guess !== undefined) expect(message, path).toContain(`did you mean ${guess}?`);
    }
  });
});
