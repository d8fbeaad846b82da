import { execFile } from "node:child_process";
import { randomUUID } from "node:crypto";
import { writeFile } from "node:fs/promises";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { serializeGroup } from "../../src/directory/group-file.js";
import { JOURNAL_FILE } from "../../src/filestore/journal.js";
import { eventually, makeTempDir, removeDir, startTestService } from "../helpers.js";
import { startEtcdCluster, type EtcdCluster } from "../support/etcd.js";

const IMPORT_SCRIPT = fileURLToPath(new URL("../../dist/import.js", import.meta.url));

function runImport(args: string[], env: Record<string, string>): Promise<{ code: number; stdout: string; stderr: string }> {
  return new Promise((resolve) => {
    execFile(process.execPath, [IMPORT_SCRIPT, ...args], { env: { ...process.env, ...env }, timeout: 30_000 }, (error, stdout, stderr) => {
      resolve({ code: error === null ? 0 : typeof error.code === "number" ? error.code : -1, stdout, stderr });
    });
  });
}

/** The one-shot import from a file-mode directory into etcd (docs/etcd.md), as the built command. */
describe("node dist/import.js", () => {
  let cluster: EtcdCluster;
  let directory: string;
  const prefix = `/import-${randomUUID()}/`;
  const group = (application: string, environment: string, targets: string[]) => ({ targets, labels: { job: application, env: environment } });

  beforeAll(async () => {
    cluster = await startEtcdCluster();
    directory = await makeTempDir();
    await writeFile(join(directory, "billing@prod.json"), serializeGroup(group("billing", "prod", ["a:1", "b:1"])));
    await writeFile(join(directory, "billing@dev.json"), serializeGroup(group("billing", "dev", ["c:1"])));
    await writeFile(join(directory, "same@prod.json"), serializeGroup(group("same", "prod", ["s:1"])));
    await writeFile(join(directory, "taken@prod.json"), serializeGroup(group("taken", "prod", ["mine:1"])));
    await writeFile(join(directory, "broken@prod.json"), "{ not json");
    await writeFile(join(directory, "nothing@prod.json"), "[]");
    await writeFile(join(directory, "README.txt"), "not a group");
    await cluster.etcdctl(["put", `${prefix}groups/same@prod`, serializeGroup(group("same", "prod", ["s:1"]))]);
    await cluster.etcdctl(["put", `${prefix}groups/taken@prod`, serializeGroup(group("taken", "prod", ["theirs:1"]))]);
  });
  afterAll(async () => {
    await cluster?.stop();
    await removeDir(directory);
  });

  it("imports what etcd lacks, leaves what it holds, reports every group, and says so in its exit code", async () => {
    const env = { ETCD_ENDPOINTS: cluster.endpoints.join(","), ETCD_PREFIX: prefix };
    const first = await runImport([directory], env);
    const lines = first.stdout.trim().split("\n");
    expect(lines).toEqual([
      expect.stringMatching(/^imported +billing@dev\.json$/),
      expect.stringMatching(/^imported +billing@prod\.json$/),
      expect.stringMatching(/^invalid +broken@prod\.json: /),
      expect.stringMatching(/^empty +nothing@prod\.json/),
      expect.stringMatching(/^unchanged +same@prod\.json/),
      expect.stringMatching(/^skipped +taken@prod\.json: .*--overwrite/),
      expect.stringMatching(/^6 groups in .*: 2 imported, 0 overwritten, 1 already in etcd, 1 empty, 0 expired, 1 skipped .*, 1 invalid, 0 failed; 0 deadlines carried, 0 expired targets left out$/),
    ]);
    expect(first.code).toBe(1);
    expect(JSON.parse(await cluster.etcdctl(["get", "--print-value-only", `${prefix}groups/taken@prod`]))).toEqual([group("taken", "prod", ["theirs:1"])]);
    expect(JSON.parse(await cluster.etcdctl(["get", "--print-value-only", `${prefix}groups/billing@prod`]))).toEqual([group("billing", "prod", ["a:1", "b:1"])]);

    const again = await runImport(["--overwrite", directory], env);
    expect(again.stdout).toMatch(/^overwrote +taken@prod\.json/m);
    expect(again.stdout).toMatch(/^unchanged +billing@prod\.json/m);
    expect(again.code).toBe(1); // broken@prod.json is still invalid
    expect(JSON.parse(await cluster.etcdctl(["get", "--print-value-only", `${prefix}groups/taken@prod`]))).toEqual([group("taken", "prod", ["mine:1"])]);

    // An instance on the same prefix serves what was imported.
    const sd = await startTestService({ env });
    try {
      expect((await sd.request("GET", "/billing/prod")).body).toEqual([group("billing", "prod", ["a:1", "b:1"])]);
      expect(await sd.fileOf("billing", "dev")).toEqual([group("billing", "dev", ["c:1"])]);
    } finally {
      await sd.close();
    }
  });

  it("carries deadlines into etcd in the same transaction, leaves out the targets whose deadline passed, and says how many", async () => {
    const withDeadlines = await makeTempDir();
    const ttlPrefix = `/import-ttl-${randomUUID()}/`;
    try {
      const soon = new Date(Date.now() + 4000).toISOString();
      const later = new Date(Date.now() + 3_600_000).toISOString();
      const past = new Date(Date.now() - 1000).toISOString();
      await writeFile(join(withDeadlines, "fleet@prod.json"), serializeGroup(group("fleet", "prod", ["soon:1", "later:1", "gone:1", "kept:1"])));
      await writeFile(join(withDeadlines, "fleet@prod.expires"), JSON.stringify({ "soon:1": soon, "later:1": later, "gone:1": past }));
      await writeFile(join(withDeadlines, "old@prod.json"), serializeGroup(group("old", "prod", ["x:1"])));
      await writeFile(join(withDeadlines, "old@prod.expires"), JSON.stringify({ "x:1": past }));
      // A file-mode service's journal of renewals not yet folded (a crash): later:1 was renewed; the record
      // of soon:1 starts from a deadline the file no longer holds (a later change), so it does not apply.
      const renewed = new Date(Date.parse(later) + 60_000).toISOString();
      const journal = [["fleet@prod", ["later:1", Date.parse(later), Date.parse(renewed), "soon:1", Date.parse(soon) - 5, Date.parse(later)]]];
      await writeFile(join(withDeadlines, JOURNAL_FILE), journal.map((line) => `${JSON.stringify(line)}\n`).join(""));
      const env = { ETCD_ENDPOINTS: cluster.endpoints.join(","), ETCD_PREFIX: ttlPrefix };
      const run = await runImport([withDeadlines], env);
      expect(run.stdout.trim().split("\n")).toEqual([
        "imported   fleet@prod.json (2 expiring targets with their deadlines; 1 already expired and left out: gone:1)",
        "expired    old@prod.json: the deadline of every target has passed; not imported",
        expect.stringMatching(/^2 groups in .*: 1 imported, .* 1 expired, .*; 2 deadlines carried, 2 expired targets left out$/),
      ]);
      expect(run.code).toBe(0);
      expect(JSON.parse(await cluster.etcdctl(["get", "--print-value-only", `${ttlPrefix}groups/fleet@prod`]))).toEqual([group("fleet", "prod", ["soon:1", "later:1", "kept:1"])]);
      expect(JSON.parse(await cluster.etcdctl(["get", "--print-value-only", `${ttlPrefix}expires/fleet@prod`]))).toEqual({ "soon:1": soon, "later:1": renewed });
      expect(await cluster.etcdctl(["get", "--print-value-only", `${ttlPrefix}groups/old@prod`])).toBe("");

      // The deadlines hold in etcd mode: soon:1 goes at its deadline, the others stay.
      const sd = await startTestService({ env });
      try {
        await eventually(async () => JSON.stringify((await sd.request("GET", "/fleet/prod")).body).includes("soon:1") === false, 8000, "soon:1 to expire");
        expect(Date.now()).toBeGreaterThanOrEqual(Date.parse(soon));
        expect((await sd.request("GET", "/fleet/prod")).body).toEqual([group("fleet", "prod", ["later:1", "kept:1"])]);
      } finally {
        await sd.close();
      }
    } finally {
      await removeDir(withDeadlines);
    }
  });

  it("without ETCD_ENDPOINTS, or with an unknown option, says how to use it and exits 2", async () => {
    const none = await runImport([directory], { ETCD_ENDPOINTS: "" });
    expect(none.code).toBe(2);
    expect(none.stderr).toMatch(/ETCD_ENDPOINTS is not set/);
    const missing = await runImport(["/nonexistent/file_sd"], { ETCD_ENDPOINTS: cluster.endpoints.join(",") });
    expect(missing.code).toBe(2);
    expect(missing.stderr).toMatch(/^the directory \/nonexistent\/file_sd cannot be read: /);
    const bad = await runImport(["--force", directory], { ETCD_ENDPOINTS: cluster.endpoints.join(",") });
    expect(bad.code).toBe(2);
    expect(bad.stderr).toMatch(/unknown option --force[\s\S]*usage: node dist\/import\.js/);
  });
});
