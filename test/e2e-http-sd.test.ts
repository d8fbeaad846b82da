import { createHash, randomBytes } from "node:crypto";
import { writeFile } from "node:fs/promises";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { eventually, makeTempDir, removeDir, startTestService, type TestService } from "./helpers.js";
import { activeTargets, startPrometheus, type ActiveTarget, type RunningPrometheus } from "./support/prometheus.js";

/**
 * The real Prometheus (Debian's /usr/bin/prometheus; `make test` installs it when run as root)
 * discovers targets through `http_sd_configs` against the service, with and
 * without a bearer token, and scrapes the service's own /metrics.
 */

const WAIT_MS = 60_000;

const token = randomBytes(32).toString("hex");
let directory: string;
let open: TestService;
let guarded: TestService;
let prometheus: RunningPrometheus | undefined;

beforeAll(async () => {
  directory = await makeTempDir("file-sd-e2e-http-sd-");
  open = await startTestService({ directory: join(directory, "open") });
  const tokensFile = join(directory, "tokens.yaml");
  await writeFile(
    tokensFile,
    `read: token\ntokens:\n  - name: prometheus\n    sha256: ${createHash("sha256").update(token).digest("hex")}\n    applications: ["*"]\n`,
  );
  guarded = await startTestService({ directory: join(directory, "guarded"), env: { AUTH_TOKENS_FILE: tokensFile } });
  const credentials = join(directory, "credentials");
  await writeFile(credentials, token, { mode: 0o600 });

  await open.request("PUT", "/billing/prod", { body: { targets: ["127.0.0.1:9", "127.0.0.2:9"], labels: { team: "core" } } });
  await guarded.request("PUT", "/search/prod", { body: "targets=127.0.0.3:9", headers: { Authorization: `Bearer ${token}` } });

  prometheus = await startPrometheus({
    readyTimeoutMs: WAIT_MS,
    configYaml: `
global:
  scrape_interval: 1s
  scrape_timeout: 1s
scrape_configs:
  - job_name: http-sd
    http_sd_configs:
      - url: ${open.url}/-/http_sd
        refresh_interval: 1s
    relabel_configs:
      - source_labels: [__meta_filesd_application]
        target_label: application
  - job_name: http-sd-with-token
    http_sd_configs:
      - url: ${guarded.url}/-/http_sd
        refresh_interval: 1s
        authorization:
          type: Bearer
          credentials_file: ${credentials}
  - job_name: http-sd-without-token
    http_sd_configs:
      - url: ${guarded.url}/-/http_sd
        refresh_interval: 1s
  - job_name: file-sd-writer
    static_configs:
      - targets: ["${new URL(open.url).host}"]
`,
  });
}, WAIT_MS + 30_000);

afterAll(async () => {
  await prometheus?.close();
  await open?.close();
  await guarded?.close();
  await removeDir(directory);
}, 30_000);

async function targetsOf(pool: string): Promise<ActiveTarget[]> {
  return (await activeTargets(prometheus!.url)).filter((target) => target.scrapePool === pool);
}

async function addressesOf(pool: string): Promise<string[]> {
  return (await targetsOf(pool)).map((target) => target.labels.instance ?? "").sort();
}

async function waitFor(what: string, check: () => Promise<boolean>): Promise<void> {
  try {
    await eventually(check, WAIT_MS, what);
  } catch (error) {
    throw new Error(`${(error as Error).message}\nprometheus said:\n${prometheus?.log()}`);
  }
}

describe("Prometheus with http_sd_configs against the service", () => {
  it("discovers every registered target with its labels and the meta labels for relabelling", async () => {
    await waitFor("the http_sd targets", async () => (await targetsOf("http-sd")).length === 2);
    const [first] = await targetsOf("http-sd");
    expect(first?.labels).toMatchObject({ job: "billing", env: "prod", team: "core", application: "billing" });
    expect(first?.discoveredLabels).toMatchObject({
      __meta_filesd_application: "billing",
      __meta_filesd_environment: "prod",
      __meta_filesd_file: "billing@prod.json",
      __meta_url: `${open.url}/-/http_sd`,
    });
    // Relabelling is over: Prometheus dropped the __meta_ labels from the target.
    expect(Object.keys(first?.labels ?? {}).filter((name) => name.startsWith("__meta_"))).toEqual([]);
  });

  it("follows changes on its refresh interval", { timeout: WAIT_MS * 2 }, async () => {
    await open.request("POST", "/billing/prod", { body: "targets=127.0.0.4:9" });
    await waitFor("the added target", async () => (await addressesOf("http-sd")).includes("127.0.0.4:9"));
    await open.request("DELETE", "/billing/prod");
    await waitFor("the deleted group to go", async () => (await addressesOf("http-sd")).length === 0);
  });

  it("sends the bearer token from its authorization block when reads need one", async () => {
    await waitFor("the targets behind a token", async () => (await addressesOf("http-sd-with-token")).length === 1);
    expect(await addressesOf("http-sd-with-token")).toEqual(["127.0.0.3:9"]);
  });

  it("without the token it discovers nothing, and the service counts the refusals", async () => {
    await waitFor("refused discovery requests", async () => {
      const metrics = await (await fetch(`${guarded.url}/metrics`)).text();
      const refused = /^file_sd_rejected_requests_total\{reason="unauthorized"\} (\d+)$/m.exec(metrics)?.[1];
      return Number(refused) > 0;
    });
    expect(await addressesOf("http-sd-without-token")).toEqual([]);
  });

  it("scrapes the service's own /metrics", async () => {
    await waitFor("the sidecar to be scraped", async () => (await targetsOf("file-sd-writer"))[0]?.health === "up");
  });
});
