import { afterEach, describe, expect, it } from "vitest";
import { removeDir, startTestService, type TestService } from "../helpers.js";
import { capturingLogger } from "./support.js";

const UUID = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/;

let service: TestService | undefined;
afterEach(async () => {
  await service?.close();
  if (service !== undefined) await removeDir(service.directory);
  service = undefined;
});

describe("X-Request-Id", () => {
  it("is honoured when the client sends one, and appears on the request's log line", async () => {
    const log = capturingLogger();
    service = await startTestService({ logger: log.logger });
    const answer = await service.request("PUT", "/billing/prod", {
      body: "targets=a:9100",
      headers: { "X-Request-Id": "ci-build-1234.5" },
    });
    expect(answer.status).toBe(200);
    expect(answer.headers.get("x-request-id")).toBe("ci-build-1234.5");
    const line = log.lines().find((entry) => entry.msg === "request" && entry.requestId === "ci-build-1234.5");
    expect(line).toMatchObject({ method: "PUT", path: "/billing/prod", status: 200 });
  });

  it("is generated when the client sends none, and is the one logged", async () => {
    // A GET's line is at debug (test/operability/request-log.test.ts).
    const log = capturingLogger("debug");
    service = await startTestService({ logger: log.logger });
    const answer = await service.request("GET", "/billing/prod");
    const id = answer.headers.get("x-request-id") ?? "";
    expect(id).toMatch(UUID);
    expect(log.lines().filter((entry) => entry.requestId === id)).toMatchObject([{ msg: "request", status: 200 }]);
  });

  it("is replaced when the client's is not a plain token, so nothing odd reaches the log", async () => {
    const log = capturingLogger();
    service = await startTestService({ logger: log.logger });
    const answer = await service.request("GET", "/billing/prod", { headers: { "X-Request-Id": "a b\tc" } });
    expect(answer.headers.get("x-request-id")).toMatch(UUID);
    expect(log.text()).not.toContain("a b");
  });

  it("is on error answers too", async () => {
    service = await startTestService();
    const answer = await service.request("POST", "/billing/prod", { headers: { "X-Request-Id": "abc" } });
    expect(answer.status).toBe(400);
    expect(answer.headers.get("x-request-id")).toBe("abc");
  });
});
