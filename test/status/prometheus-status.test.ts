import { createServer, type Server } from "node:http";
import type { AddressInfo } from "node:net";
import { writeFile } from "node:fs/promises";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import type { GroupStatus } from "../../src/status/status.js";
import { eventually, makeTempDir, removeDir, startTestService, type TestService } from "../helpers.js";
import { startChildService } from "../support/child-service.js";
import { freePort } from "../support/ports.js";
import { activeTargets, startPrometheus, type RunningPrometheus } from "../support/prometheus.js";

/**
 * docs/api.md against two real Prometheus servers (Debian's), scraping every second:
 * `byFile` reads the directory through file_sd_configs (not the files starting
 * with `z`), `byHttp` asks /-/http_sd for a few applications. Both drop the
 * application `dropme` by relabelling. A real loopback exporter is the target
 * that comes up; a closed port the one that stays down.
 */

const WAIT_MS = 60_000;
const TEST_TIMEOUT_MS = 120_000;

let directory: string;
let sd: TestService;
let byFile: RunningPrometheus;
let byHttp: RunningPrometheus;
let exporter: Server;
let exporterAddress: string;
let closedAddress: string;
const timings: string[] = [];

function exposition(): Server {
  return createServer((request, response) => {
    if (request.url !== "/metrics") {
      response.writeHead(404).end();
      return;
    }
    response.writeHead(200, { "content-type": "text/plain; version=0.0.4" });
    response.end("# HELP status_probe A target for the status tests.\n# TYPE status_probe gauge\nstatus_probe 1\n");
  });
}

beforeAll(async () => {
  directory = await makeTempDir("file-sd-status-");
  exporter = exposition();
  await new Promise<void>((resolve) => exporter.listen(0, "127.0.0.1", () => resolve()));
  exporterAddress = `127.0.0.1:${(exporter.address() as AddressInfo).port}`;
  closedAddress = `127.0.0.1:${await freePort()}`;
  const sdPort = await freePort();
  const files = join(directory, "sd");
  const global = "global:\n  scrape_interval: 1s\n  scrape_timeout: 1s\n";
  byFile = await startPrometheus({
    configYaml: `${global}scrape_configs:
  - job_name: file_sd
    file_sd_configs:
      - files: ["${files}/[^z]*.json"]
        refresh_interval: 1s
    relabel_configs:
      - source_labels: [__meta_filepath]
        regex: ".*/dropme@.*"
        action: drop
`,
  });
  byHttp = await startPrometheus({
    configYaml: `${global}scrape_configs:
  - job_name: http_sd
    http_sd_configs:
      - url: "http://127.0.0.1:${sdPort}/-/http_sd?application=web&application=closed&application=dropme&application=late"
        refresh_interval: 1s
    relabel_configs:
      - source_labels: [__meta_filesd_application]
        regex: dropme
        action: drop
`,
  });
  sd = await startTestService({
    directory: files,
    env: { BIND: `127.0.0.1:${sdPort}`, PROMETHEUS_URL: `${byFile.url},${byHttp.url}` },
  });
}, 120_000);

afterAll(async () => {
  if (timings.length > 0) console.log(`status timings:\n${timings.map((line) => `  ${line}`).join("\n")}`);
  await sd?.close();
  await byFile?.close();
  await byHttp?.close();
  exporter?.closeAllConnections();
  await new Promise<void>((resolve) => (exporter === undefined ? resolve() : exporter.close(() => resolve())));
  await removeDir(directory);
}, 60_000);

async function statusOf(path: string): Promise<{ status: number; body: GroupStatus; ms: number }> {
  const started = Date.now();
  const answer = await sd.request("GET", path);
  return { status: answer.status, body: answer.body as GroupStatus, ms: Date.now() - started };
}

function healthOf(body: GroupStatus): string[] {
  return body.targets.flatMap((target) => target.servers.map((server) => `${target.target} ${server.prometheus} ${server.health}`));
}

/** Both Prometheus servers list `address` from `application` with health "up". */
async function prometheusSaysUp(application: string, address: string): Promise<boolean> {
  const lists = await Promise.all([activeTargets(byFile.url), activeTargets(byHttp.url)]);
  return lists.every((targets) =>
    targets.some(
      (target) => target.labels.job === application && target.discoveredLabels.__address__ === address && target.health === "up",
    ),
  );
}

/** Requests Prometheus answered on /api/v1/targets, from its own metrics. */
async function targetsApiRequests(prometheus: RunningPrometheus): Promise<number> {
  const text = await (await fetch(`${prometheus.url}/metrics`)).text();
  let sum = 0;
  for (const line of text.split("\n")) {
    if (line.startsWith("prometheus_http_requests_total{") && line.includes('handler="/api/v1/targets"')) {
      sum += Number(line.slice(line.lastIndexOf(" ") + 1));
    }
  }
  return sum;
}

const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

describe("GET /<application>/<environment>/status against real Prometheus servers", () => {
  it(
    "?wait answers 200 as soon as both Prometheus scrape the new target: up, matched by file on one and by http_sd labels on the other",
    async () => {
      const registered = Date.now();
      expect((await sd.request("PUT", "/web/prod", { body: { targets: [exporterAddress] } })).status).toBe(200);
      const before = await statusOf("/web/prod/status");
      expect(before.status).toBe(200);
      expect(before.body.ready).toBe(false);

      // Beside the wait, watch Prometheus itself, to see how soon after it the wait answers.
      let prometheusUpAt: number | undefined;
      const watching = eventually(
        async () => {
          if (await prometheusSaysUp("web", exporterAddress)) prometheusUpAt ??= Date.now();
          return prometheusUpAt !== undefined;
        },
        WAIT_MS,
        "both Prometheus to report the exporter up",
      );
      const waited = await statusOf("/web/prod/status?wait=60s");
      const answeredAt = Date.now();
      await watching;
      const lag = answeredAt - (prometheusUpAt ?? answeredAt);
      console.log(
        `wait-to-up: PUT → ?wait answered 200 in ${answeredAt - registered} ms ` +
          `(the wait itself ${waited.ms} ms); Prometheus' own API said up ${lag} ms before the answer`,
      );
      timings.push(`PUT → 200 from ?wait: ${answeredAt - registered} ms (answer ${lag} ms after Prometheus said up)`);

      expect(waited.status).toBe(200);
      expect(waited.body).toEqual({
        application: "web",
        environment: "prod",
        ready: true,
        targets: [
          {
            target: exporterAddress,
            ready: true,
            servers: [byFile.url, byHttp.url].map((prometheus) => ({
              prometheus,
              health: "up",
              lastScrape: expect.stringMatching(/^\d{4}-\d\d-\d\dT/),
              scrapeUrl: `http://${exporterAddress}/metrics`,
            })),
          },
        ],
      });
      // The cache is one second and the wait looks every 250 ms: the answer follows Prometheus closely.
      expect(lag).toBeLessThan(2500);

      // Ready now: a wait answers at once.
      const again = await statusOf("/web/prod/status?wait=10m");
      expect(again.status).toBe(200);
      expect(again.ms).toBeLessThan(2500);
    },
    TEST_TIMEOUT_MS,
  );

  it(
    "a closed port is down on both with Prometheus' error, and ?wait answers 503 with that body at its deadline",
    async () => {
      expect((await sd.request("PUT", "/closed/prod", { body: { targets: [closedAddress] } })).status).toBe(200);
      let last: GroupStatus | undefined;
      const ms = await eventually(
        async () => {
          last = (await statusOf("/closed/prod/status")).body;
          return healthOf(last).every((line) => line.endsWith(" down"));
        },
        WAIT_MS,
        "the closed port to be down on both",
      );
      timings.push(`PUT → down on both: ${ms} ms`);
      for (const server of last?.targets[0]?.servers ?? []) {
        expect(server.error).toMatch(/connection refused/);
        expect(server.lastScrape).toMatch(/^\d{4}-/);
      }

      const waited = await statusOf("/closed/prod/status?wait=2s");
      timings.push(`?wait=2s on a down target answered 503 after ${waited.ms} ms`);
      expect(waited.status).toBe(503);
      expect(waited.body.ready).toBe(false);
      expect(healthOf(waited.body)).toEqual([
        `${closedAddress} ${byFile.url} down`,
        `${closedAddress} ${byHttp.url} down`,
      ]);
      expect(waited.ms).toBeGreaterThanOrEqual(2000);
      expect(waited.ms).toBeLessThan(4500);
    },
    TEST_TIMEOUT_MS,
  );

  it(
    "a group neither Prometheus reads is missing, one they relabel away is dropped",
    async () => {
      expect((await sd.request("PUT", "/zmissing/prod", { body: { targets: [exporterAddress] } })).status).toBe(200);
      expect((await sd.request("PUT", "/dropme/prod", { body: { targets: [closedAddress] } })).status).toBe(200);
      await eventually(
        async () => healthOf((await statusOf("/dropme/prod/status")).body).every((line) => line.endsWith(" dropped")),
        WAIT_MS,
        "dropme to be dropped on both",
      );
      // Both have re-read their sources since zmissing was registered, and still do not list it.
      const missing = await statusOf("/zmissing/prod/status");
      expect(missing.status).toBe(200);
      expect(missing.body.ready).toBe(false);
      expect(healthOf(missing.body)).toEqual([
        `${exporterAddress} ${byFile.url} missing`,
        `${exporterAddress} ${byHttp.url} missing`,
      ]);
      expect(missing.body.targets[0]?.servers[0]).toEqual({ prometheus: byFile.url, health: "missing", lastScrape: null });
    },
    TEST_TIMEOUT_MS,
  );

  it(
    "a wait started before the registration answers once it is registered and scraped",
    async () => {
      const started = Date.now();
      const waiting = statusOf("/late/prod/status?wait=60s");
      await sleep(1000);
      expect((await sd.request("PUT", "/late/prod", { body: { targets: [exporterAddress] } })).status).toBe(200);
      const answer = await waiting;
      timings.push(`wait started 1 s before the PUT answered 200 after ${Date.now() - started} ms`);
      expect(answer.status).toBe(200);
      expect(healthOf(answer.body)).toEqual([`${exporterAddress} ${byFile.url} up`, `${exporterAddress} ${byHttp.url} up`]);
    },
    TEST_TIMEOUT_MS,
  );

  it(
    "fifty clients waiting at once cost each Prometheus about one request a second",
    async () => {
      const before = await Promise.all([targetsApiRequests(byFile), targetsApiRequests(byHttp)]);
      const answers = await Promise.all(Array.from({ length: 50 }, () => statusOf("/closed/prod/status?wait=3s")));
      expect(answers.map((answer) => answer.status)).toEqual(Array(50).fill(503));
      const after = await Promise.all([targetsApiRequests(byFile), targetsApiRequests(byHttp)]);
      const asked = after.map((count, i) => count - (before[i] ?? 0));
      timings.push(`50 clients waiting 3 s: /api/v1/targets requests per Prometheus: ${asked.join(", ")}`);
      for (const count of asked) {
        expect(count).toBeGreaterThanOrEqual(2);
        expect(count).toBeLessThanOrEqual(5);
      }
    },
    TEST_TIMEOUT_MS,
  );

  it(
    "a client that hangs up ends its wait: the service stops asking Prometheus",
    async () => {
      const start = await targetsApiRequests(byFile);
      const client = new AbortController();
      const waiting = fetch(`${sd.url}/closed/prod/status?wait=60s`, { signal: client.signal }).then(
        () => "answered",
        (error: Error) => error.name,
      );
      await sleep(2500);
      const whileWaiting = (await targetsApiRequests(byFile)) - start;
      client.abort();
      expect(await waiting).toBe("AbortError");
      await sleep(1500);
      const afterHangUp = await targetsApiRequests(byFile);
      await sleep(3000);
      const later = await targetsApiRequests(byFile);
      timings.push(`hang-up: ${whileWaiting} requests in the 2.5 s of waiting, ${later - afterHangUp} in the 3 s after`);
      expect(whileWaiting).toBeGreaterThanOrEqual(2);
      expect(later - afterHangUp).toBe(0);
    },
    TEST_TIMEOUT_MS,
  );

  it(
    "SIGTERM answers a waiting client at once with the status as it is, then the service exits 0",
    async () => {
      expect((await sd.request("PUT", "/closed/prod", { body: { targets: [closedAddress] } })).status).toBe(200);
      await eventually(
        async () => healthOf((await statusOf("/closed/prod/status")).body).every((line) => line.endsWith(" down")),
        WAIT_MS,
        "the closed port to be down on both",
      );
      const child = await startChildService({
        directory: sd.directory,
        env: { PROMETHEUS_URL: `${byFile.url},${byHttp.url}` },
      });
      try {
        const started = Date.now();
        const waiting = fetch(`${child.url}/closed/prod/status?wait=60s`).then(async (answer) => ({
          status: answer.status,
          body: (await answer.json()) as GroupStatus,
          at: Date.now(),
        }));
        await sleep(1500);
        const signalled = Date.now();
        child.signal("SIGTERM");
        const answer = await waiting;
        const exit = await child.exited;
        const exitedAt = Date.now();
        // The answer closes its connection, so the drain does not wait for it to idle out.
        const stoppedAt = child.logs.find((line) => line.msg === "stopped")?.time ?? Number.NaN;
        timings.push(
          `SIGTERM after ${signalled - started} ms of waiting: answered ${answer.at - signalled} ms later, ` +
            `drained ${stoppedAt - signalled} ms later, process gone ${exitedAt - signalled} ms later`,
        );
        expect(stoppedAt - signalled).toBeLessThan(1500);
        expect(answer.status).toBe(503);
        expect(answer.body.ready).toBe(false);
        expect(healthOf(answer.body)).toEqual([`${closedAddress} ${byFile.url} down`, `${closedAddress} ${byHttp.url} down`]);
        expect(answer.at - signalled).toBeLessThan(1500);
        expect(exit).toEqual({ code: 0, signal: null });
      } finally {
        await child.stop();
      }
    },
    TEST_TIMEOUT_MS,
  );

  it(
    "no registration of another application changes a group's status: __meta_* labels are refused, and a file counts only for its own group",
    async () => {
      expect((await sd.request("PUT", "/web/iso", { body: { targets: [exporterAddress] } })).status).toBe(200);
      expect((await statusOf("/web/iso/status?wait=60s")).status).toBe(200);

      // The attack: another application's registration that claims to be web/iso, scraping the same address where it fails.
      const disguised = await sd.request("PUT", "/evil/x", {
        body: `targets=${exporterAddress}&__metrics_path__=/nope&__meta_filesd_application=web&__meta_filesd_environment=iso`,
      });
      expect(disguised.status).toBe(400);
      expect((disguised.body as { message: string }).message).toMatch(/^label "__meta_filesd_application" is reserved/);
      // Without the disguise it is evil's own group, down on its own.
      expect((await sd.request("PUT", "/evil/x", { body: `targets=${exporterAddress}&__metrics_path__=/nope` })).status).toBe(200);
      // And a file that holds the disguise anyway (written by hand, or registered before the rule): the file decides.
      await writeFile(
        join(sd.directory, "evil@y.json"),
        JSON.stringify([{ targets: [exporterAddress], labels: { job: "evil", env: "y", __metrics_path__: "/nope", __meta_filesd_application: "web", __meta_filesd_environment: "iso" } }]),
      );
      await eventually(
        async () => {
          const targets = await activeTargets(byFile.url);
          const evil = targets.filter((target) => target.labels.job === "evil");
          return evil.length === 2 && evil.every((target) => target.health === "down");
        },
        WAIT_MS,
        "Prometheus to scrape both of evil's groups, down",
      );
      const evil = await statusOf("/evil/y/status");
      expect(healthOf(evil.body)).toContain(`${exporterAddress} ${byFile.url} down`);
      const web = await statusOf("/web/iso/status?wait=5s");
      expect(web.status).toBe(200);
      expect(healthOf(web.body)).toEqual([`${exporterAddress} ${byFile.url} up`, `${exporterAddress} ${byHttp.url} up`]);
      await sd.request("DELETE", "/evil/x");
      await sd.request("DELETE", "/evil/y");
      await sd.request("DELETE", "/web/iso");
    },
    TEST_TIMEOUT_MS,
  );

  it(
    "one Prometheus stopped is unreachable while the other still answers up",
    async () => {
      await byHttp.close();
      let last: GroupStatus | undefined;
      await eventually(
        async () => {
          last = (await statusOf("/web/prod/status")).body;
          return last.targets[0]?.servers[1]?.health === "unreachable";
        },
        10_000,
        "the stopped Prometheus to be unreachable",
      );
      expect(last?.ready).toBe(false);
      expect(last?.targets[0]?.servers[0]).toMatchObject({ prometheus: byFile.url, health: "up" });
      expect(last?.targets[0]?.servers[1]).toEqual({
        prometheus: byHttp.url,
        health: "unreachable",
        lastScrape: null,
        error: expect.stringMatching(/fetch failed: .*ECONNREFUSED/),
      });
      expect((await statusOf("/web/prod/status?wait=1s")).status).toBe(503);
    },
    TEST_TIMEOUT_MS,
  );
});
