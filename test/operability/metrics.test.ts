import { mkdir, writeFile } from "node:fs/promises";
import { join } from "node:path";
import { afterEach, describe, expect, it } from "vitest";
import { eventually, makeTempDir, removeDir, startTestService, type TestService } from "../helpers.js";
import { parseMetrics, sampleValue, writeAtomically, type Sample } from "./support.js";

const running: TestService[] = [];
const directories: string[] = [];

afterEach(async () => {
  await Promise.all(running.splice(0).map((service) => service.close()));
  await Promise.all(directories.splice(0).map(removeDir));
});

async function start(directory?: string): Promise<TestService> {
  const service = await startTestService(directory === undefined ? {} : { directory });
  running.push(service);
  directories.push(service.directory);
  return service;
}

async function scrape(service: TestService): Promise<{ samples: Sample[]; contentType: string | null }> {
  const response = await fetch(`${service.url}/metrics`);
  expect(response.status).toBe(200);
  return { samples: parseMetrics(await response.text()), contentType: response.headers.get("content-type") };
}

describe("GET /metrics", () => {
  it("answers the Prometheus text format with the default process metrics", async () => {
    const service = await start();
    const { samples, contentType } = await scrape(service);
    expect(contentType).toMatch(/^text\/plain; version=0\.0\.4/);
    expect(sampleValue(samples, "process_cpu_user_seconds_total")).toBeGreaterThanOrEqual(0);
    expect(sampleValue(samples, "nodejs_heap_size_used_bytes")).toBeGreaterThan(0);
  });

  it("counts requests by method, route template and status, never by raw path", async () => {
    const service = await start();
    await service.request("PUT", "/billing/prod", { body: "targets=a:9100" });
    await service.request("PUT", "/search/prod", { body: "targets=b:9100" });
    await service.request("GET", "/billing/prod");
    await service.request("GET", "/no/such/route");
    const { samples } = await scrape(service);

    const requests = samples.filter((sample) => sample.name === "file_sd_http_requests_total");
    expect(sampleValue(requests, "file_sd_http_requests_total", { method: "PUT", route: "/:application/:environment", status: "200" })).toBe(2);
    expect(sampleValue(requests, "file_sd_http_requests_total", { method: "GET", route: "/:application/:environment", status: "200" })).toBe(1);
    expect(sampleValue(requests, "file_sd_http_requests_total", { method: "GET", route: "unmatched", status: "404" })).toBe(1);
    const routes = new Set(requests.map((sample) => sample.labels.route));
    for (const route of routes) expect(["/:application/:environment", "unmatched", "/metrics"]).toContain(route);
    expect(
      sampleValue(samples, "file_sd_http_request_duration_seconds_count", { method: "PUT", route: "/:application/:environment" }),
    ).toBe(2);
  });

  it("counts refused requests by a fixed set of reasons", async () => {
    const service = await start();
    await service.request("PUT", "/-bad/prod", { body: "targets=a:9100" });
    await service.request("PUT", "/billing/prod", { body: "targets=a:9100,," });
    await service.request("PUT", "/billing/prod", { body: "team=core" });
    await service.request("PATCH", "/billing/prod");
    await service.request("DELETE", "/nothing/here");
    await service.request("PUT", "/billing/prod", { body: "x", contentType: "text/plain" });
    await service.request("GET", "/?application=..");
    await service.request("PUT", "/billing/prod", { body: `targets=${"a".repeat(1024 * 1024)}` });
    const { samples } = await scrape(service);
    const rejected = (reason: string) => sampleValue(samples, "file_sd_rejected_requests_total", { reason });
    expect(rejected("bad_name")).toBe(2);
    expect(rejected("bad_body")).toBe(1);
    expect(rejected("rule")).toBe(1);
    expect(rejected("method")).toBe(1);
    expect(rejected("not_found")).toBe(1);
    expect(rejected("media_type")).toBe(1);
    expect(rejected("too_large")).toBe(1);
    expect(rejected("unauthorized")).toBe(0);
    expect(samples.filter((sample) => sample.name === "file_sd_rejected_requests_total")).toHaveLength(12);
  });

  it("shows registered groups and targets, probe groups and their targets apart, and times every file write", async () => {
    const service = await start();
    const before = (await scrape(service)).samples;
    expect(sampleValue(before, "file_sd_groups", { kind: "probes" })).toBe(0);
    expect(sampleValue(before, "file_sd_targets", { kind: "probes" })).toBe(0);
    await service.request("PUT", "/billing/prod", { body: "targets=a:9100,b:9100" });
    await service.request("PUT", "/search/prod", { body: "targets=c:9100" });
    await service.request("DELETE", "/search/prod");
    const probes = await service.request("PUT", "/billing/prod/probes", { body: { targets: ["https://billing.example.com/health", "https://billing.example.com/", "db:5432"] } });
    expect(probes.status).toBe(200);
    const { samples } = await scrape(service);
    expect(sampleValue(samples, "file_sd_groups", { kind: "targets" })).toBe(1);
    expect(sampleValue(samples, "file_sd_targets", { kind: "targets" })).toBe(2);
    expect(sampleValue(samples, "file_sd_groups", { kind: "probes" })).toBe(1);
    expect(sampleValue(samples, "file_sd_targets", { kind: "probes" })).toBe(3);
    expect(sampleValue(samples, "file_sd_file_write_duration_seconds_count")).toBe(3);
    expect(sampleValue(samples, "file_sd_files_removed_total")).toBe(1);
  });

  it("counts outside changes picked up from the directory watch", async () => {
    const service = await start();
    await writeAtomically(
      join(service.directory, "billing@prod.json"),
      JSON.stringify([{ targets: ["a:9100"], labels: { job: "billing", env: "prod" } }]),
    );
    await eventually(async () => sampleValue((await scrape(service)).samples, "file_sd_outside_changes_total") === 1, 10_000, "the outside change to be counted");
    expect(sampleValue((await scrape(service)).samples, "file_sd_groups", { kind: "targets" })).toBe(1);
  });

  it("counts unreadable files, failed writes and crash leftovers removed at start", async () => {
    const directory = await makeTempDir();
    await writeFile(join(directory, "broken@prod.json"), "{ not json");
    await writeFile(join(directory, "billing@prod.json.12345"), "half a write");
    // A directory where the file should be: root can write anywhere, but nobody can rename a file over a directory.
    await mkdir(join(directory, "blocked@prod.json"));
    const service = await start(directory);

    const answer = await service.request("PUT", "/blocked/prod", { body: "targets=a:9100" });
    expect(answer.status).toBe(500);
    const { samples } = await scrape(service);
    expect(sampleValue(samples, "file_sd_file_read_errors_total")).toBe(2);
    expect(sampleValue(samples, "file_sd_leftover_files_removed_total")).toBe(1);
    expect(sampleValue(samples, "file_sd_file_write_errors_total")).toBe(1);
    expect(sampleValue(samples, "file_sd_groups", { kind: "targets" })).toBe(0);
  });

  it("keeps one registry per service, so two services in one process count apart", async () => {
    const first = await start();
    const second = await start();
    await first.request("PUT", "/billing/prod", { body: "targets=a:9100" });
    expect(sampleValue((await scrape(first)).samples, "file_sd_groups", { kind: "targets" })).toBe(1);
    expect(sampleValue((await scrape(second)).samples, "file_sd_groups", { kind: "targets" })).toBe(0);
  });
});
