import { unlink, writeFile } from "node:fs/promises";
import { createServer } from "node:http";
import type { AddressInfo } from "node:net";
import { join } from "node:path";
import { dump } from "js-yaml";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import type { TargetGroup } from "../src/model.js";
import { eventually, removeDir, startTestService, type TestService } from "./helpers.js";
import { freePort } from "./support/ports.js";
import {
  query,
  selfMetric,
  startPrometheus,
  targetsFromFile,
  waitForTargets,
  type ActiveTarget,
  type RunningPrometheus,
  type Sample,
} from "./support/prometheus.js";

/**
 * The service and a real Prometheus sharing one directory, the way they run side by side:
 * whatever we write must be what Prometheus lists, with the labels it will attach.
 */

const PICKUP_TIMEOUT_MS = 60_000;
const TEST_TIMEOUT_MS = 240_000;
const JOB_NAME = "file_sd";

let sd: TestService | undefined;
let prometheus: RunningPrometheus | undefined;
/** Nothing listens there: targets only need to be listed, not scraped. */
let closedPort = 0;
const pickups: string[] = [];

function fileSdConfig(directory: string): string {
  return dump({
    // Most targets here are addresses nobody serves: an hour keeps Prometheus from scraping
    // them while the tests run. The one test that wants a scrape sets __scrape_interval__.
    global: { scrape_interval: "1h" },
    scrape_configs: [{ job_name: JOB_NAME, file_sd_configs: [{ files: [join(directory, "*.json")] }] }],
  });
}

beforeAll(async () => {
  sd = await startTestService();
  prometheus = await startPrometheus({ configYaml: fileSdConfig(sd.directory) });
  closedPort = await freePort();
}, 120_000);

afterAll(async () => {
  if (pickups.length > 0) console.log(`Prometheus pickup times:\n${pickups.map((line) => `  ${line}`).join("\n")}`);
  await prometheus?.close();
  await sd?.close();
  if (sd !== undefined) await removeDir(sd.directory);
}, 60_000);

function running(): { sd: TestService; prometheus: RunningPrometheus } {
  if (sd === undefined || prometheus === undefined) throw new Error("the service and Prometheus did not start");
  return { sd, prometheus };
}

function fileNameOf(application: string, environment: string): string {
  return `${application}@${environment}.json`;
}

/** The labels Prometheus attaches to every sample of a target: the group's labels minus the `__` ones, plus `instance`. */
function sampleLabels(address: string, labels: TargetGroup["labels"]): Record<string, string> {
  return { instance: address, ...Object.fromEntries(Object.entries(labels).filter(([name]) => !name.startsWith("__"))) };
}

/** True when Prometheus lists exactly the group's targets from `fileName`, each with the group's labels. */
function showsGroup(targets: readonly ActiveTarget[], fileName: string, group: TargetGroup | undefined): boolean {
  const fromFile = targetsFromFile(targets, fileName);
  const expected = group?.targets ?? [];
  return (
    fromFile.length === expected.length &&
    expected.every((address) =>
      fromFile.some(
        (target) =>
          target.discoveredLabels.__address__ === address &&
          Object.entries(group?.labels ?? {}).every(([name, value]) => target.discoveredLabels[name] === value) &&
          JSON.stringify(sortedEntries(target.labels)) === JSON.stringify(sortedEntries(sampleLabels(address, group?.labels ?? {}))),
      ),
    )
  );
}

function sortedEntries(record: Readonly<Record<string, string>>): [string, string][] {
  return Object.entries(record).sort(([a], [b]) => a.localeCompare(b));
}

/** Waits until Prometheus shows `group` for `fileName` (nothing, when undefined), and notes how long it took. */
async function waitUntilPrometheusShows(
  step: string,
  fileName: string,
  group: TargetGroup | undefined,
): Promise<ActiveTarget[]> {
  const seen = await waitForTargets(running().prometheus.url, (targets) => showsGroup(targets, fileName, group), {
    what: group === undefined ? `no target from ${fileName}` : `${JSON.stringify(group)} from ${fileName}`,
    timeoutMs: PICKUP_TIMEOUT_MS,
  });
  pickups.push(`${step}: ${seen.ms} ms`);
  console.log(`Prometheus showed "${step}" ${seen.ms} ms after the answer`);
  return targetsFromFile(seen.targets, fileName);
}

/** The one group a 200 answered with, after checking it is what the file on disk holds. */
async function answeredGroup(
  answer: { status: number; body: unknown },
  application: string,
  environment: string,
): Promise<TargetGroup> {
  expect(answer.status, JSON.stringify(answer.body)).toBe(200);
  expect(await running().sd.fileOf(application, environment)).toEqual(answer.body);
  const [group] = answer.body as TargetGroup[];
  if (group === undefined) throw new Error(`expected one group in ${JSON.stringify(answer.body)}`);
  return group;
}

describe("a real Prometheus reading the directory through file_sd_configs", () => {
  it(
    "lists registered IPv4 and IPv6 targets with their path, scheme, custom labels and overridden job",
    async () => {
      const { sd } = running();
      const ipv4 = `127.0.0.1:${closedPort}`;
      const ipv6 = `[::1]:${closedPort}`;
      const answer = await sd.request("PUT", "/billing/prod-hou", {
        body: {
          targets: [ipv4, ipv6],
          labels: { job: "billing-api", team: "core", __metrics_path__: "/custom/metrics", __scheme__: "https" },
        },
      });
      const group = await answeredGroup(answer, "billing", "prod-hou");
      const fileName = fileNameOf("billing", "prod-hou");

      const listed = await waitUntilPrometheusShows("PUT (register) → listed", fileName, group);

      const byAddress = (a: ActiveTarget, b: ActiveTarget): number =>
        (a.discoveredLabels.__address__ ?? "").localeCompare(b.discoveredLabels.__address__ ?? "");
      expect([...listed].sort(byAddress)).toEqual(
        [ipv4, ipv6].sort((a, b) => a.localeCompare(b)).map((address) =>
          expect.objectContaining({
            scrapePool: JOB_NAME,
            scrapeUrl: `https://${address}/custom/metrics`,
            discoveredLabels: expect.objectContaining({
              __address__: address,
              __meta_filepath: join(sd.directory, fileName),
              __metrics_path__: "/custom/metrics",
              __scheme__: "https",
              job: "billing-api",
              env: "prod-hou",
              team: "core",
            }),
            // The group's job wins over the scrape config's job_name.
            labels: { instance: address, job: "billing-api", env: "prod-hou", team: "core" },
          }),
        ),
      );
    },
    TEST_TIMEOUT_MS,
  );

  it(
    "follows a POST, a DELETE of one target and a DELETE of the whole group",
    async () => {
      const { sd } = running();
      const fileName = fileNameOf("shop", "staging");
      const first = `127.0.0.1:${closedPort}`;
      const second = `localhost:${closedPort}`;

      const created = await answeredGroup(
        await sd.request("PUT", "/shop/staging", { body: `targets=${first}` }),
        "shop",
        "staging",
      );
      await waitUntilPrometheusShows("PUT (register, form body) → listed", fileName, created);

      const added = await answeredGroup(
        await sd.request("POST", "/shop/staging", { body: `targets=${second}&tier=web` }),
        "shop",
        "staging",
      );
      expect(added).toEqual({ targets: [first, second], labels: { job: "shop", env: "staging", tier: "web" } });
      await waitUntilPrometheusShows("POST (add target + label) → listed", fileName, added);

      const shrunk = await answeredGroup(
        await sd.request("DELETE", "/shop/staging", { body: { targets: [first] } }),
        "shop",
        "staging",
      );
      expect(shrunk.targets).toEqual([second]);
      await waitUntilPrometheusShows("DELETE (one target) → gone", fileName, shrunk);

      const removed = await sd.request("DELETE", "/shop/staging");
      expect(removed.status).toBe(200);
      expect(await sd.fileOf("shop", "staging")).toBeUndefined();
      await waitUntilPrometheusShows("DELETE (whole group, file removed) → gone", fileName, undefined);
    },
    TEST_TIMEOUT_MS,
  );

  it(
    "scrapes a registered target at the path and interval its labels give, and stores samples with the group's labels",
    async () => {
      const { sd, prometheus } = running();
      const requested: string[] = [];
      const exporter = createServer((request, response) => {
        requested.push(request.url ?? "");
        if (request.url !== "/probe/metrics") {
          response.writeHead(404).end();
          return;
        }
        response.writeHead(200, { "content-type": "text/plain; version=0.0.4" });
        response.end("# TYPE e2e_probe_value gauge\ne2e_probe_value 42\n");
      });
      await new Promise<void>((resolve) => exporter.listen(0, "127.0.0.1", () => resolve()));
      try {
        const address = `127.0.0.1:${(exporter.address() as AddressInfo).port}`;
        const group = await answeredGroup(
          await sd.request("PUT", "/probe/e2e", {
            body: {
              targets: [address],
              labels: { __metrics_path__: "/probe/metrics", __scrape_interval__: "1s", __scrape_timeout__: "1s" },
            },
          }),
          "probe",
          "e2e",
        );
        await waitUntilPrometheusShows("PUT (scraped target) → listed", fileNameOf("probe", "e2e"), group);

        const up = await waitForTargets(
          prometheus.url,
          (targets) => targetsFromFile(targets, fileNameOf("probe", "e2e")).some((target) => target.health === "up"),
          { what: `${address} scraped with health "up"`, timeoutMs: PICKUP_TIMEOUT_MS },
        );
        console.log(`Prometheus scraped ${address} successfully ${up.ms} ms after listing it`);
        expect(requested).toContain("/probe/metrics");
        expect(requested.filter((path) => path !== "/probe/metrics")).toEqual([]);

        let samples: Sample[] = [];
        await eventually(
          async () => (samples = await query(prometheus.url, "e2e_probe_value")).length > 0,
          PICKUP_TIMEOUT_MS,
          "the scraped sample e2e_probe_value in Prometheus",
        );
        expect(samples.map((sample) => ({ metric: sample.metric, value: sample.value[1] }))).toEqual([
          { metric: { __name__: "e2e_probe_value", instance: address, job: "probe", env: "e2e" }, value: "42" },
        ]);

        expect((await sd.request("DELETE", "/probe/e2e")).status).toBe(200);
        await waitUntilPrometheusShows("DELETE (scraped target) → gone", fileNameOf("probe", "e2e"), undefined);
      } finally {
        exporter.closeAllConnections();
        await new Promise<void>((resolve) => exporter.close(() => resolve()));
      }
    },
    TEST_TIMEOUT_MS,
  );

  it(
    "never reads a half-written file during a burst of concurrent writes (prometheus_sd_file_read_errors_total stays 0)",
    async () => {
      const { sd, prometheus } = running();
      const environments = ["a", "b", "c", "d"];
      for (const environment of environments) {
        const answer = await sd.request("PUT", `/burst/${environment}`, { body: { targets: [`127.0.0.1:${closedPort}`] } });
        expect(answer.status).toBe(200);
      }
      expect(await selfMetric(prometheus.url, "prometheus_sd_file_read_errors_total")).toBe(0);
      const scansBefore = await selfMetric(prometheus.url, "prometheus_sd_file_scan_duration_seconds_count");

      const REQUESTS = 400;
      const CONCURRENCY = 32;
      const statuses: number[] = [];
      let next = 0;
      const started = Date.now();
      const worker = async (): Promise<void> => {
        while (next < REQUESTS) {
          const i = next++;
          const environment = environments[i % environments.length] as string;
          // Alternate replacing the targets (1 to 3 of them) and adding a label, so the file keeps changing size.
          const body =
            i % 2 === 0
              ? { targets: Array.from({ length: 1 + (i % 3) }, (_, j) => `127.0.0.1:${20_000 + i * 3 + j}`), labels: { round: `put-${i}` } }
              : { labels: { round: `post-${i}` } };
          statuses.push((await sd.request(i % 2 === 0 ? "PUT" : "POST", `/burst/${environment}`, { body })).status);
        }
      };
      await Promise.all(Array.from({ length: CONCURRENCY }, worker));
      const burstMs = Date.now() - started;
      expect(statuses.filter((status) => status !== 200)).toEqual([]);

      for (const environment of environments) {
        const answer = await sd.request("GET", `/burst/${environment}`);
        const group = await answeredGroup(answer, "burst", environment);
        await waitUntilPrometheusShows(`burst: final state of burst@${environment}.json → listed`, fileNameOf("burst", environment), group);
      }

      const readErrors = await selfMetric(prometheus.url, "prometheus_sd_file_read_errors_total");
      const scansAfter = await selfMetric(prometheus.url, "prometheus_sd_file_scan_duration_seconds_count");
      const scans = (scansAfter ?? 0) - (scansBefore ?? 0);
      console.log(
        `burst: ${REQUESTS} requests (${CONCURRENCY} at a time) in ${burstMs} ms; ` +
          `Prometheus re-read the directory ${scans} times; read errors: ${readErrors}`,
      );
      // Prometheus re-reads every file on each inotify event, so it read while we were writing.
      expect(scans).toBeGreaterThan(environments.length);
      expect(readErrors).toBe(0);
    },
    TEST_TIMEOUT_MS,
  );

  it(
    "a target registered with ?ttl=15s is listed, then dropped once it expires (docs/api.md)",
    async () => {
      const { sd } = running();
      const fileName = fileNameOf("expiring", "prod");
      const target = `127.0.0.1:${closedPort}`;
      // Long enough for Prometheus, which applies discovered changes at most every 5 s, to list it first.
      const answer = await sd.request("PUT", "/expiring/prod?ttl=15s", { body: `targets=${target}` });
      const group = await answeredGroup(answer, "expiring", "prod");
      const registered = Date.now();
      await waitUntilPrometheusShows("PUT ?ttl=15s → listed", fileName, group);
      await eventually(async () => (await sd.fileOf("expiring", "prod")) === undefined, 20_000, "the file to go when the target expires");
      const fileGone = Date.now() - registered;
      await waitUntilPrometheusShows("expiry → no longer listed", fileName, undefined);
      console.log(`?ttl=15s: file removed ${fileGone} ms after the PUT, and Prometheus dropped the target`);
      expect(fileGone).toBeGreaterThanOrEqual(15_000);
      expect(fileGone).toBeLessThan(17_000 + 1000);
    },
    TEST_TIMEOUT_MS,
  );

  it(
    "does count a truly half-written file, so the zero above means something",
    async () => {
      const { sd, prometheus } = running();
      const half = join(sd.directory, "half@written.json");
      // What a writer without write-then-rename leaves for a moment: a truncated list.
      await writeFile(half, '[{"targets": ["127.0.0.1:1"], "lab');
      try {
        const ms = await eventually(
          async () => ((await selfMetric(prometheus.url, "prometheus_sd_file_read_errors_total")) ?? 0) > 0,
          PICKUP_TIMEOUT_MS,
          "prometheus_sd_file_read_errors_total to count half@written.json",
        );
        console.log(`Prometheus counted the half-written file as a read error after ${ms} ms`);
      } finally {
        await unlink(half);
      }
    },
    TEST_TIMEOUT_MS,
  );
});
