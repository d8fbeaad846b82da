import { execFile } from "node:child_process";
import { randomUUID } from "node:crypto";
import { mkdir, readFile, writeFile } from "node:fs/promises";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { serializeGroup } from "../../src/directory/group-file.js";
import { eventually, filesIn, makeTempDir, removeDir, startTestService, type TestService } from "../helpers.js";
import { startEtcdCluster, type EtcdCluster } from "../support/etcd.js";

const IMPORT_SCRIPT = fileURLToPath(new URL("../../dist/import.js", import.meta.url));

/**
 * Probe groups in etcd mode, on a real three-member cluster: one registry, two instances, each
 * keeping its own directory's probes/ folder and serving them at /-/http_sd?kind=probes.
 */
describe("probes across instances sharing one etcd", () => {
  let cluster: EtcdCluster;
  let a: TestService;
  let b: TestService;
  let prefix: string;
  const report: string[] = [];

  beforeAll(async () => {
    cluster = await startEtcdCluster();
    prefix = `/probes-${randomUUID()}/`;
    const env = { ETCD_ENDPOINTS: cluster.endpoints.join(","), ETCD_PREFIX: prefix };
    [a, b] = await Promise.all([startTestService({ env }), startTestService({ env })]);
  }, 120_000);
  afterAll(async () => {
    await Promise.all([a?.close(), b?.close()]);
    await cluster?.stop();
    if (report.length > 0) console.log(`etcd probes:\n  ${report.join("\n  ")}`);
  });

  it("a probe registered on one instance is in the other's probes/ directory and its /-/http_sd?kind=probes, and etcd holds the file's bytes", async () => {
    const url = "https://billing.example.com/v1/health?deep=1,2";
    const put = await a.request("PUT", "/billing/prod/probes", { body: { targets: [url], labels: { __param_module: "http_2xx" } } });
    expect(put.status, JSON.stringify(put.body)).toBe(200);
    const expected = [{ targets: [url], labels: { job: "billing", env: "prod", __param_module: "http_2xx" } }];
    expect(await a.fileOf("billing", "prod", "probes")).toEqual(expected);

    const ms = await eventually(async () => JSON.stringify(await b.fileOf("billing", "prod", "probes")) === JSON.stringify(expected), 1000, "b's probes/ file");
    report.push(`a probe PUT on one instance in the other's probes/ folder: ${ms} ms`);
    expect(await filesIn(b.directory)).toEqual(["probes/billing@prod.json"]);
    expect((await b.request("GET", "/billing/prod/probes")).body).toEqual(expected);
    // Not a scrape group, anywhere.
    expect((await b.request("GET", "/billing/prod")).body).toEqual([]);
    expect((await b.request("GET", "/-/http_sd")).body).toEqual([]);
    expect((await b.request("GET", "/-/http_sd?kind=probes")).body).toEqual([
      {
        targets: [url],
        labels: { ...expected[0]?.labels, __meta_filesd_application: "billing", __meta_filesd_environment: "prod", __meta_filesd_file: "probes/billing@prod.json" },
      },
    ]);
    const value = await cluster.etcdctl(["get", "--print-value-only", `${prefix}probes/billing@prod`]);
    expect(value.trimEnd()).toBe((await readFile(join(b.directory, "probes", "billing@prod.json"), "utf8")).trimEnd());
    expect((await cluster.etcdctl(["get", "--print-value-only", `${prefix}groups/billing@prod`])).trim()).toBe("");

    // A change through the other instance, with the rules of both: POST adds, a URL on the scrape route is refused.
    expect((await b.request("POST", "/billing/prod/probes", { body: "targets=db.billing.example.com:5432" })).status).toBe(200);
    expect((await b.request("PUT", "/billing/prod", { body: `targets=${url}` })).status).toBe(400);
    await eventually(async () => ((await a.fileOf("billing", "prod", "probes")) as { targets: string[] }[] | undefined)?.[0]?.targets.length === 2, 1000, "a's file to have both");

    expect((await b.request("DELETE", "/billing/prod/probes")).status).toBe(200);
    await eventually(async () => (await filesIn(a.directory)).length === 0 && (await filesIn(b.directory)).length === 0, 1000, "both probes/ files to go");
    expect((await a.request("GET", "/-/http_sd?kind=probes")).body).toEqual([]);
  });

  it("GROUP_SELECTOR decides which instances write a probe group's file and serve it at /-/http_sd?kind=probes", async () => {
    const eu = await startTestService({ env: { ETCD_ENDPOINTS: cluster.endpoints.join(","), ETCD_PREFIX: prefix, GROUP_SELECTOR: '{region="eu"}' } });
    try {
      expect((await a.request("PUT", "/search/prod/probes", { body: "targets=https://search.example.com/&region=us" })).status).toBe(200);
      expect((await a.request("PUT", "/search/eu/probes", { body: "targets=https://search.example.eu/&region=eu" })).status).toBe(200);
      await eventually(async () => (await filesIn(eu.directory)).join() === "probes/search@eu.json", 2000, "the eu instance's share");
      const served = (await eu.request("GET", "/-/http_sd?kind=probes")).body as { targets: string[] }[];
      expect(served.map((group) => group.targets)).toEqual([["https://search.example.eu/"]]);
      // Its API still serves and changes every group.
      expect((await eu.request("GET", "/search/prod/probes")).body).toEqual([{ targets: ["https://search.example.com/"], labels: { job: "search", env: "prod", region: "us" } }]);
      for (const path of ["/search/prod/probes", "/search/eu/probes"]) expect((await eu.request("DELETE", path)).status).toBe(200);
    } finally {
      await eu.close();
    }
  });

  it("the import copies a directory's probes/ into etcd, and every instance writes them", async () => {
    const directory = await makeTempDir("probes-import-");
    try {
      await mkdir(join(directory, "probes"));
      const group = { targets: ["https://imported.example.com/health?x=1,2", "imported.example.com:22"], labels: { job: "imported", env: "prod", __param_module: "http_2xx" } };
      await writeFile(join(directory, "probes", "imported@prod.json"), serializeGroup(group));
      const result = await new Promise<{ code: number; stdout: string }>((resolve) => {
        execFile(process.execPath, [IMPORT_SCRIPT, directory], { env: { ...process.env, ETCD_ENDPOINTS: cluster.endpoints.join(","), ETCD_PREFIX: prefix }, timeout: 30_000 }, (error, stdout) =>
          resolve({ code: error === null ? 0 : 1, stdout }),
        );
      });
      expect(result.stdout).toMatch(/^imported +probes\/imported@prod\.json$/m);
      expect(result.code).toBe(0);
      expect(JSON.parse(await cluster.etcdctl(["get", "--print-value-only", `${prefix}probes/imported@prod`]))).toEqual([group]);
      await eventually(async () => JSON.stringify(await b.fileOf("imported", "prod", "probes")) === JSON.stringify([group]), 2000, "b's probes/ file");
      expect((await a.request("DELETE", "/imported/prod/probes")).status).toBe(200);
    } finally {
      await removeDir(directory);
    }
  });

  it("?ttl= on a probe expires it from both instances' folders", async () => {
    expect((await b.request("PUT", "/shop/prod/probes?ttl=2s", { body: { targets: ["https://shop.example.com/"] } })).status).toBe(200);
    await eventually(async () => (await a.fileOf("shop", "prod", "probes")) !== undefined, 1000, "a's copy");
    const ms = await eventually(async () => (await a.fileOf("shop", "prod", "probes")) === undefined && (await b.fileOf("shop", "prod", "probes")) === undefined, 6000, "the expired probe to go");
    report.push(`a 2 s probe gone from both folders ${ms} ms after it was seen`);
  });
});
