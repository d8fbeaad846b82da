import { afterEach, describe, expect, it } from "vitest";
import { startTestService, type TestService } from "../helpers.js";
import { capturingLogger } from "./support.js";

/**
 * One line per request (docs/operations.md, "Logs"): at info what changed a group or was
 * refused, at debug what only read or renewed, so that a fleet's heartbeats and Prometheus'
 * polls do not fill the log; LOGLEVEL=debug shows them all.
 */

let service: TestService | undefined;
afterEach(async () => {
  await service?.close();
  service = undefined;
});

const INFO = 30;
const DEBUG = 20;

/** The requests of the test, each with the level its line must have. */
async function sendAll(sd: TestService): Promise<[string, number][]> {
  const sent: [string, number][] = [];
  const send = async (method: string, path: string, level: number, body?: string): Promise<void> => {
    const requestId = `line-${sent.length}`;
    await sd.request(method, path, { headers: { "X-Request-Id": requestId }, ...(body === undefined ? {} : { body }) });
    sent.push([requestId, level]);
  };
  await send("PUT", "/billing/prod?ttl=60s", INFO, "targets=constructor:9100,b:9100&team=core");
  await send("GET", "/billing/prod", DEBUG);
  await send("HEAD", "/billing/prod", DEBUG);
  await send("GET", "/-/http_sd", DEBUG);
  // A heartbeat: both targets are registered and expire; only their deadlines move.
  await send("POST", "/billing/prod?ttl=60s", DEBUG, "targets=constructor:9100,b:9100");
  await send("POST", "/billing/prod?ttl=60s", INFO, "targets=c:9100");
  await send("POST", "/billing/prod", INFO, "team=search");
  await send("POST", "/billing/prod", INFO, "targets=b:9100");
  await send("GET", "/bad%20name/prod", INFO);
  await send("DELETE", "/billing/prod", INFO, "targets=b:9100");
  return sent;
}

describe("the request log", () => {
  it("puts changes and refusals at info, reads and renewals at debug", async () => {
    const log = capturingLogger("debug");
    service = await startTestService({ logger: log.logger });
    const sent = await sendAll(service);
    const lines = log.lines().filter((line) => line.msg === "request");
    expect(lines.map((line) => [line.requestId, line.level])).toEqual(sent);
  });

  it("at LOGLEVEL=info leaves the reads and renewals out", async () => {
    const log = capturingLogger("info");
    service = await startTestService({ logger: log.logger });
    const sent = await sendAll(service);
    const lines = log.lines().filter((line) => line.msg === "request");
    expect(lines.map((line) => line.requestId)).toEqual(sent.filter(([, level]) => level === INFO).map(([id]) => id));
    expect(lines.every((line) => typeof line.durationMs === "number" && typeof line.status === "number")).toBe(true);
  });
});
