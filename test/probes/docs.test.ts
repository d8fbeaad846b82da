import { readFile } from "node:fs/promises";
import { join } from "node:path";
import { load } from "js-yaml";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { run } from "../contrib/support.js";
import { startTestService, type TestService } from "../helpers.js";
import { blackboxConfig, curlLines, probesJob, ROOT } from "./doc.js";

/**
 * docs/probes.md stays true: its job and exporter configuration are the repository's files,
 * and each of its curl lines does what the page says against a live service. The deploy gate
 * needs a Prometheus and an exporter: test/probes/blackbox.test.ts runs it for real.
 */

describe("docs/probes.md", () => {
  let sd: TestService;
  beforeAll(async () => {
    sd = await startTestService();
  });
  afterAll(() => sd.close());

  it("shows the probes job of prometheus.yml and prometheus.etcd.yml, and blackbox.yml, as they are", async () => {
    const job = await probesJob();
    for (const file of ["prometheus.yml", "prometheus.etcd.yml"]) {
      const jobs = (load(await readFile(join(ROOT, file), "utf8")) as { scrape_configs: { job_name: string }[] }).scrape_configs;
      expect(jobs.find((each) => each.job_name === "probes"), file).toEqual(job);
    }
    expect(await blackboxConfig()).toBe(await readFile(join(ROOT, "blackbox.yml"), "utf8"));
  });

  it("every curl line but the gate answers as the page says, run by bash against a live service", async () => {
    const lines = (await curlLines()).filter((line) => !line.includes("/status?wait="));
    expect(lines.length).toBeGreaterThanOrEqual(7);
    for (const line of lines) {
      const result = await run("bash", ["-c", `${line} --silent --show-error --write-out '\\n%{http_code}'`], { env: { S: sd.url } });
      expect(result.code, `${line}: ${result.stderr}`).toBe(0);
      const status = result.stdout.trimEnd().split("\n").at(-1);
      const body = JSON.parse(result.stdout.trimEnd().split("\n").slice(0, -1).join("\n")) as unknown;
      if (line.includes("$S/billing/prod ") || line.endsWith("$S/billing/prod")) {
        // The scrape route refuses the URL, pointing at the probes.
        expect(status, line).toBe("400");
        expect((body as { message: string }).message).toMatch(/^target "https:\/\/billing\.example\.com\/health" is not host or host:port: a target is host or host:port, not a URL: .* To probe the URL with blackbox_exporter instead, register it at \/<application>\/<environment>\/probes \(docs\/probes\.md\)$/);
      } else {
        expect(status, `${line}: ${JSON.stringify(body)}`).toBe("200");
      }
    }
    // What the lines leave: the page's examples, as it describes them.
    expect((await sd.request("GET", "/billing/prod/probes")).body).toEqual([
      {
        targets: ["https://billing.example.com/search?q=a,b&limit=1"],
        labels: { job: "billing", env: "prod", __param_module: "http_2xx" },
      },
    ]);
    expect((await sd.request("GET", "/billing-db/prod/probes")).body).toEqual([
      { targets: ["db.billing.example.com:5432"], labels: { job: "billing-db", env: "prod", __param_module: "tcp_connect" } },
    ]);
  });

  it("the page's first line answers what the page shows", async () => {
    const [first = ""] = await curlLines();
    const result = await run("bash", ["-c", first], { env: { S: sd.url } });
    const markdown = await readFile(join(ROOT, "docs", "probes.md"), "utf8");
    const shown = /```json\n(\[\{"targets": \["https:\/\/billing\.example\.com\/health"\].*)\n```/.exec(markdown)?.[1];
    expect(JSON.parse(result.stdout)).toEqual(JSON.parse(shown ?? "null"));
  });
});
