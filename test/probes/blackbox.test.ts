import { afterAll, beforeAll, describe, expect, it } from "vitest";
import type { GroupStatus } from "../../src/status/status.js";
import { run } from "../contrib/support.js";
import { makeTempDir, removeDir, startTestService, type TestService } from "../helpers.js";
import type { RunningBlackboxExporter } from "../support/blackbox.js";
import { freePort } from "../support/ports.js";
import { startProbeStack, type ProbeStack } from "../support/probe-stack.js";
import { activeTargets, query, waitForTargets, type ActiveTarget, type RunningPrometheus } from "../support/prometheus.js";
import { curlLine, probesJob } from "./doc.js";

/**
 * Probes for real: Debian's blackbox_exporter with the configuration docs/probes.md shows, a
 * real Prometheus with the page's probes job (only the directory and the exporter's address
 * put in, and a scrape every second) beside a scrape job reading the same directory, and the
 * page's curl lines run by bash and curl against the service. This test serves the URL that
 * answers 200 and the one that answers 500; a closed port refuses.
 */

const TEST_TIMEOUT_MS = 120_000;
const PICKUP_MS = 30_000;
/** The page's example URL, in place of which the test registers one it serves. */
const EXAMPLE_URL = "https://billing.example.com/health";

let directory: string;
let stack: ProbeStack;
let okUrl: string;
let failUrl: string;
let refusedUrl: string;
let exporter: RunningBlackboxExporter;
let prometheus: RunningPrometheus;
let sd: TestService;
const measured: string[] = [];

beforeAll(async () => {
  directory = await makeTempDir("file-sd-probes-");
  // The page's job as it stands: the stack puts in only this machine's paths (the folder, and the exporter).
  const job = await probesJob();
  expect(job.file_sd_configs).toEqual([{ files: ["/file_sd/probes/*.json"] }]);
  expect(job.relabel_configs?.at(-1)).toEqual({ target_label: "__address__", replacement: "blackbox-exporter:9115" });
  stack = await startProbeStack(directory);
  ({ okUrl, failUrl, refusedUrl, exporter, prometheus } = stack);
  sd = await startTestService({ directory, env: { PROMETHEUS_URL: prometheus.url } });
  // A scrape group beside the probes: its job must never get a URL.
  expect((await sd.request("PUT", "/billing/prod", { body: `targets=127.0.0.1:${await freePort()}` })).status).toBe(200);
}, 120_000);

afterAll(async () => {
  if (measured.length > 0) console.log(`probes, measured:\n${measured.map((line) => `  ${line}`).join("\n")}`);
  await sd?.close();
  await stack?.close();
  if (directory !== undefined) await removeDir(directory);
}, 60_000);

/** A curl line of the page, run by bash with $S set to the service. */
async function runDocLine(line: string): Promise<{ code: number; body: unknown; stdout: string; stderr: string }> {
  const result = await run("bash", ["-c", line], { env: { S: sd.url }, timeoutMs: 180_000 });
  let body: unknown;
  try {
    body = JSON.parse(result.stdout);
  } catch {
    body = undefined;
  }
  return { ...result, body };
}

/** probe_success of `url` in Prometheus, once there is one. */
async function probeSuccess(url: string): Promise<string | undefined> {
  const samples = await query(prometheus.url, `probe_success{instance=${JSON.stringify(url)}}`);
  return samples[0]?.value[1];
}

async function waitForProbeSuccess(url: string, value: "0" | "1"): Promise<number> {
  const started = Date.now();
  let last: string | undefined;
  while (Date.now() - started < PICKUP_MS) {
    last = await probeSuccess(url);
    if (last === value) return Date.now() - started;
    await new Promise((resolve) => setTimeout(resolve, 50));
  }
  throw new Error(`probe_success{instance="${url}"} was not ${value} within ${PICKUP_MS} ms (last: ${last}); exporter log:\n${exporter.log()}`);
}

/** No target of the scrape job is a URL, whatever the probe groups hold: not what it discovered, not what it scrapes. */
async function scrapeJobHasNoUrl(): Promise<void> {
  const scraped = (await activeTargets(prometheus.url)).filter((target) => target.scrapePool === "file_sd");
  expect(scraped.length).toBeGreaterThan(0);
  for (const target of scraped) {
    expect(target.discoveredLabels.__address__ ?? "").not.toContain("://");
    expect(target.discoveredLabels.__meta_filepath).not.toContain("/probes/");
    expect(target.scrapeUrl).toMatch(/^http:\/\/127\.0\.0\.1:[0-9]+\/metrics$/);
  }
}

describe("probes through blackbox_exporter and Prometheus, as docs/probes.md sets them up", () => {
  it(
    "the page's one-liner registers a URL that answers: probe_success is 1 within seconds, and the page's deploy gate lets it through",
    async () => {
      const register = (await curlLine("-d __param_module=http_2xx $S/billing/prod/probes")).replace(EXAMPLE_URL, okUrl);
      expect(register).toBe(`curl -X PUT -d targets=${okUrl} -d __param_module=http_2xx $S/billing/prod/probes`);
      const put = await runDocLine(register);
      const acknowledged = Date.now();
      expect(put.code, put.stderr).toBe(0);
      expect(put.body).toEqual([{ targets: [okUrl], labels: { job: "billing", env: "prod", __param_module: "http_2xx" } }]);
      expect(await sd.fileOf("billing", "prod", "probes")).toEqual(put.body);

      await waitForProbeSuccess(okUrl, "1");
      measured.push(`PUT acknowledged → first probe_success 1 in Prometheus: ${Date.now() - acknowledged} ms`);
      const [series] = await query(prometheus.url, `probe_success{instance=${JSON.stringify(okUrl)}}`);
      expect(series?.metric).toEqual({ __name__: "probe_success", instance: okUrl, job: "billing", env: "prod" });

      const gate = await runDocLine(await curlLine("probes/status?wait=2m"));
      measured.push(`deploy gate (?wait=2m) after probe_success: exit ${gate.code}`);
      expect(gate.code, gate.stdout + gate.stderr).toBe(0);
      const status = gate.body as GroupStatus;
      expect(status).toMatchObject({ application: "billing", environment: "prod", kind: "probes", ready: true });
      expect(status.targets).toEqual([
        {
          target: okUrl,
          ready: true,
          servers: [
            {
              prometheus: prometheus.url,
              health: "up",
              lastScrape: expect.any(String),
              scrapeUrl: `http://${exporter.address}/probe?module=http_2xx&target=${encodeURIComponent(okUrl)}`,
              probe: { success: true, durationSeconds: expect.any(Number), httpStatusCode: 200 },
            },
          ],
        },
      ]);
      await scrapeJobHasNoUrl();
    },
    TEST_TIMEOUT_MS,
  );

  it(
    "a refused connection and a 500 are probe_success 0, and the gate answers 503 with the reason for each",
    async () => {
      const put = await sd.request("PUT", "/billing/broken/probes", { body: { targets: [refusedUrl, failUrl], labels: { __param_module: "http_2xx" } } });
      expect(put.status, JSON.stringify(put.body)).toBe(200);
      await Promise.all([waitForProbeSuccess(refusedUrl, "0"), waitForProbeSuccess(failUrl, "0")]);
      // The page's gate on this group, with a shorter wait: it never gets ready.
      const line = (await curlLine("probes/status?wait=2m")).replace("/billing/prod/", "/billing/broken/").replace("wait=2m", "wait=3s");
      const started = Date.now();
      const gate = await runDocLine(line);
      expect(Date.now() - started).toBeGreaterThanOrEqual(3000);
      // --fail-with-body: curl fails (22) and still prints the answer.
      expect(gate.code).toBe(22);
      expect(gate.stderr).toMatch(/503/);
      const status = gate.body as GroupStatus;
      expect(status).toMatchObject({ application: "billing", environment: "broken", kind: "probes", ready: false });
      const byTarget = new Map(status.targets.map((target) => [target.target, target]));
      expect(byTarget.get(refusedUrl)?.servers).toEqual([
        expect.objectContaining({
          health: "down",
          probe: { success: false, durationSeconds: expect.any(Number), httpStatusCode: 0 },
          error: "the probe failed: no HTTP answer (connection refused, DNS, TLS or timeout)",
          debugUrl: `http://${exporter.address}/probe?module=http_2xx&target=${encodeURIComponent(refusedUrl)}&debug=true`,
        }),
      ]);
      expect(byTarget.get(failUrl)?.servers).toEqual([
        expect.objectContaining({ health: "down", probe: { success: false, durationSeconds: expect.any(Number), httpStatusCode: 500 }, error: "the probe failed: HTTP status 500" }),
      ]);
      // The debug link is the exporter's own account of the probe.
      const debug = byTarget.get(failUrl)?.servers[0]?.debugUrl ?? "";
      expect(await (await fetch(debug)).text()).toMatch(/Invalid HTTP response status code.*500/s);
      await scrapeJobHasNoUrl();
    },
    TEST_TIMEOUT_MS,
  );

  it(
    "fifty deploys waiting on probes cost Prometheus about one query a second, and one look a second at its targets",
    async () => {
      const handled = async (handler: string): Promise<number> => {
        let sum = 0;
        for (const line of (await (await fetch(`${prometheus.url}/metrics`)).text()).split("\n")) {
          if (line.startsWith("prometheus_http_requests_total{") && line.includes(`handler="${handler}"`)) sum += Number(line.slice(line.lastIndexOf(" ") + 1));
        }
        return sum;
      };
      const before = await Promise.all([handled("/api/v1/query"), handled("/api/v1/targets")]);
      const answers = await Promise.all(Array.from({ length: 50 }, () => sd.request("GET", "/billing/broken/probes/status?wait=3s")));
      expect(answers.map((answer) => answer.status)).toEqual(Array(50).fill(503));
      const after = await Promise.all([handled("/api/v1/query"), handled("/api/v1/targets")]);
      const [queries, targets] = after.map((count, i) => count - (before[i] ?? 0)) as [number, number];
      measured.push(`50 clients waiting 3 s on probes: ${queries} /api/v1/query and ${targets} /api/v1/targets requests`);
      for (const count of [queries, targets]) {
        expect(count).toBeGreaterThanOrEqual(2);
        expect(count).toBeLessThanOrEqual(5);
      }
    },
    TEST_TIMEOUT_MS,
  );

  it(
    "another application's probes never count for this group's status",
    async () => {
      expect((await sd.request("PUT", "/search/prod/probes", { body: { targets: [failUrl, okUrl] } })).status).toBe(200);
      await waitForTargets(prometheus.url, (targets) => targets.filter((target) => target.discoveredLabels.__meta_filepath?.endsWith("/probes/search@prod.json")).length === 2, {
        what: "search's probes",
      });
      const status = (await sd.request("GET", "/billing/prod/probes/status")).body as GroupStatus;
      expect(status.targets.map((target) => target.target)).toEqual([okUrl]);
      expect(status.ready).toBe(true);
      expect((await sd.request("DELETE", "/search/prod/probes")).status).toBe(200);
    },
    TEST_TIMEOUT_MS,
  );

  it(
    "/-/http_sd?kind=probes and /-/status?kind=probes list the probe groups, and the scrape kind does not",
    async () => {
      const probes = (await sd.request("GET", "/-/http_sd?kind=probes")).body as { targets: string[]; labels: Record<string, string> }[];
      expect(probes.map((group) => [group.labels.__meta_filesd_file, group.targets])).toEqual([
        ["probes/billing@broken.json", [refusedUrl, failUrl]],
        ["probes/billing@prod.json", [okUrl]],
      ]);
      const scrape = (await sd.request("GET", "/-/http_sd")).body as { labels: Record<string, string> }[];
      expect(scrape.map((group) => group.labels.__meta_filesd_file)).toEqual(["billing@prod.json"]);
      const all = (await sd.request("GET", "/-/status?kind=probes")).body as { ready: boolean; groups: GroupStatus[] };
      expect(all.ready).toBe(false);
      expect(all.groups.map((group) => `${group.environment} ${group.ready}`)).toEqual(["broken false", "prod true"]);
    },
    TEST_TIMEOUT_MS,
  );

  it(
    "DELETE takes the URL out of Prometheus' targets",
    async () => {
      // By what is probed: Prometheus 2.42 may list a probe's discovered labels as they were after relabelling.
      const listed = (url: string) => (targets: readonly ActiveTarget[]) => targets.some((target) => new URL(target.scrapeUrl).searchParams.get("target") === url);
      expect(listed(failUrl)(await activeTargets(prometheus.url))).toBe(true);
      expect((await sd.request("DELETE", "/billing/broken/probes", { body: { targets: [failUrl] } })).status).toBe(200);
      const seen = await waitForTargets(prometheus.url, (targets) => !listed(failUrl)(targets) && listed(refusedUrl)(targets), { what: `${failUrl} gone, ${refusedUrl} still there`, timeoutMs: PICKUP_MS });
      measured.push(`DELETE of one URL → gone from Prometheus' targets: ${seen.ms} ms`);

      expect((await sd.request("DELETE", "/billing/prod/probes")).status).toBe(200);
      await waitForTargets(prometheus.url, (targets) => !listed(okUrl)(targets), { what: `${okUrl} gone`, timeoutMs: PICKUP_MS });
      const status = await sd.request("GET", "/billing/prod/probes/status");
      expect(status.body).toMatchObject({ kind: "probes", ready: false, targets: [], message: expect.stringMatching(/nothing is registered for the probes of billing\/prod/) });
      await scrapeJobHasNoUrl();
    },
    TEST_TIMEOUT_MS,
  );

  it(
    "a wait that starts with the PUT answers 200 once the first probe succeeded",
    async () => {
      const started = Date.now();
      expect((await sd.request("PUT", "/shop/prod/probes", { body: { targets: [okUrl] } })).status).toBe(200);
      const answer = await sd.request("GET", "/shop/prod/probes/status?wait=30s");
      measured.push(`PUT → probes/status?wait= answered 200: ${Date.now() - started} ms`);
      expect(answer.status, JSON.stringify(answer.body)).toBe(200);
      expect(answer.body).toMatchObject({ ready: true });
      expect((await sd.request("DELETE", "/shop/prod/probes")).status).toBe(200);
    },
    TEST_TIMEOUT_MS,
  );
});
