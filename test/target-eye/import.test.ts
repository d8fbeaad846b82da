import { execFile } from "node:child_process";
import { createHash, randomUUID } from "node:crypto";
import { mkdir, readdir, readFile, writeFile } from "node:fs/promises";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { serializeGroup } from "../../src/directory/group-file.js";
import { eventually, makeTempDir, removeDir, startTestService } from "../helpers.js";
import { startEtcdCluster, type EtcdCluster } from "../support/etcd.js";

/**
 * `node dist/import-target-eye.js` on a directory written the way Target-eye writes it
 * (flightaware/target-eye, fa_target_eye/target_config.py): one file per application/environment,
 * named by the hex MD5 of application + environment with nothing between them, holding Python's
 * `json.dumps([{"targets": ..., "labels": ...}])` (", " and ": " separators, non-ASCII escaped),
 * with `job` and `env` among the labels unless a request overrode them. Into a directory, with
 * and without a service running on it, and into a real etcd.
 */

const SCRIPT = fileURLToPath(new URL("../../dist/import-target-eye.js", import.meta.url));

/** Python's json.dumps with its defaults, for the values Target-eye writes (lists, string maps, strings). */
function pythonJsonDumps(value: unknown): string {
  if (typeof value === "string") return JSON.stringify(value).replace(/[\u0080-\uffff]/g, (c) => `\\u${c.charCodeAt(0).toString(16).padStart(4, "0")}`);
  if (Array.isArray(value)) return `[${value.map(pythonJsonDumps).join(", ")}]`;
  return `{${Object.entries(value as Record<string, unknown>).map(([key, item]) => `${pythonJsonDumps(key)}: ${pythonJsonDumps(item)}`).join(", ")}}`;
}

/** TargetConfig.filename: md5(f"{application}{environment}".encode("utf-8")).hexdigest() + ".json". */
const targetEyeName = (application: string, environment: string): string =>
  `${createHash("md5").update(`${application}${environment}`, "utf8").digest("hex")}.json`;

/** A file as Target-eye's PUT leaves it: labels default to job/env unless the request gave them. */
async function writeTargetEyeFile(directory: string, application: string, environment: string, targets: string[], labels: Record<string, string> = {}): Promise<string> {
  const name = targetEyeName(application, environment);
  await writeFile(join(directory, name), pythonJsonDumps([{ targets, labels: { job: application, env: environment, ...labels } }]));
  return name;
}

interface Ran {
  readonly code: number;
  readonly stdout: string;
  readonly stderr: string;
  readonly lines: string[];
}

function runImport(args: readonly string[], env: Readonly<Record<string, string>>): Promise<Ran> {
  return new Promise((resolve) => {
    execFile(process.execPath, [SCRIPT, ...args], { env: { PATH: process.env.PATH ?? "", ...env }, timeout: 60_000 }, (error, stdout, stderr) => {
      const code = error === null ? 0 : typeof error.code === "number" ? error.code : -1;
      resolve({ code, stdout, stderr, lines: stdout.trim().split("\n") });
    });
  });
}

const group = (job: string, env: string, targets: string[], labels: Record<string, string> = {}) => [{ targets, labels: { job, env, ...labels } }];

describe("node dist/import-target-eye.js", () => {
  let scratch = "";
  let source = "";
  const files = { billing: "", search: "", repeated: "", zurich: "", invalid: "", extra: "extra.json", same: "", taken: "" };

  beforeAll(async () => {
    scratch = await makeTempDir("target-eye-");
    source = join(scratch, "target-eye");
    await mkdir(source);
    files.billing = await writeTargetEyeFile(source, "billing", "prod-hou", ["host1:9100", "host2:9100"], { team: "core" });
    // A PUT that overrode job: the file keeps the URL's hash, the labels say otherwise.
    files.search = await writeTargetEyeFile(source, "search", "prod", ["s1:9200"], { job: "search-api" });
    // Target-eye's PUT never refused a repeated target.
    files.repeated = await writeTargetEyeFile(source, "cache", "dev-dal", ["c1:11211", "c1:11211", "c2:11211"]);
    files.zurich = await writeTargetEyeFile(source, "geo", "prod-zrh", ["10.3.3.1:15000"], { city: "Zürich" });
    // Target-eye accepted an empty label value; Prometheus reads it as no label, and this service refuses it.
    files.invalid = await writeTargetEyeFile(source, "legacy", "prod", ["l1:80"], { owner: "" });
    files.same = await writeTargetEyeFile(source, "same", "prod", ["x:1"]);
    files.taken = await writeTargetEyeFile(source, "taken", "prod", ["mine:1"]);
    // A file someone put there by hand: Prometheus scraped it, so it is reported, not ignored.
    await writeFile(join(source, files.extra), pythonJsonDumps([{ targets: ["e1:9100"], labels: { job: "extra", env: "prod" } }]));
    await writeFile(join(source, "notes.txt"), "not for Prometheus");
  });
  afterAll(async () => {
    if (scratch !== "") await removeDir(scratch);
  });

  it("the file names are what target_config.py computes: md5 of application and environment together", () => {
    // python3 -c 'from hashlib import md5; print(md5("billingprod-hou".encode("utf-8")).hexdigest())'
    expect(targetEyeName("billing", "prod-hou")).toBe(`${createHash("md5").update("billingprod-hou").digest("hex")}.json`);
    expect(targetEyeName("a", "bc")).toBe(targetEyeName("ab", "c"));
  });

  it("into a directory: a line per file, a summary, exit 1 while a file is skipped; never overwrites; --map imports an overridden one", async () => {
    const target = join(scratch, "file_sd");
    await mkdir(target);
    await writeFile(join(target, "same@prod.json"), serializeGroup({ targets: ["x:1"], labels: { job: "same", env: "prod" } }));
    const theirs = serializeGroup({ targets: ["theirs:1"], labels: { job: "taken", env: "prod" } });
    await writeFile(join(target, "taken@prod.json"), theirs);

    const first = await runImport([source], { FILE_SD_DIRECTORY: target });
    const line = (file: string) => first.lines.find((text) => text.includes(file)) ?? `no line for ${file}`;
    expect(line(files.billing)).toMatch(new RegExp(`^imported +${files.billing} → billing/prod-hou$`));
    expect(line(files.search)).toMatch(new RegExp(`^skipped +${files.search}: its name is not the MD5 of its labels job="search-api" env="prod" .*--map ${files.search}=APPLICATION/ENVIRONMENT`));
    expect(line(files.repeated)).toMatch(/^imported +.* → cache\/dev-dal \(1 repeated target listed once\)$/);
    expect(line(files.zurich)).toMatch(/^imported +.* → geo\/prod-zrh$/);
    expect(line(files.invalid)).toMatch(/^invalid +.*: label "owner" is not a non-empty string/);
    expect(line(files.extra)).toMatch(/^skipped +extra\.json: its name is not the MD5 of its labels job="extra" env="prod" .*someone put the file there by hand/);
    expect(line(files.same)).toMatch(/^unchanged +.* → same\/prod: already registered with the same targets and labels$/);
    expect(line(files.taken)).toMatch(/^skipped +.* → taken\/prod: a different group is registered there already; nothing overwritten/);
    expect(first.lines).toHaveLength(9);
    expect(first.lines.at(-1)).toMatch(/^8 Target-eye files in .* → directory .*file_sd: 3 imported, 1 already there, 0 empty, 4 not imported \(1 registered differently, 2 skipped, 1 invalid, 0 failed, 0 not tried\)$/);
    expect(first.code).toBe(1);

    const read = async (name: string): Promise<unknown> => JSON.parse(await readFile(join(target, name), "utf8"));
    expect(await read("billing@prod-hou.json")).toEqual(group("billing", "prod-hou", ["host1:9100", "host2:9100"], { team: "core" }));
    expect(await read("cache@dev-dal.json")).toEqual(group("cache", "dev-dal", ["c1:11211", "c2:11211"]));
    expect(await read("geo@prod-zrh.json")).toEqual(group("geo", "prod-zrh", ["10.3.3.1:15000"], { city: "Zürich" }));
    // The bytes the service itself writes.
    expect(await readFile(join(target, "billing@prod-hou.json"), "utf8")).toBe(serializeGroup({ targets: ["host1:9100", "host2:9100"], labels: { job: "billing", env: "prod-hou", team: "core" } }));
    expect(await readFile(join(target, "taken@prod.json"), "utf8")).toBe(theirs);
    // No temporary file left, nothing Prometheus' *.json would read that is not a group.
    expect((await readdir(target)).sort()).toEqual(["billing@prod-hou.json", "cache@dev-dal.json", "geo@prod-zrh.json", "same@prod.json", "taken@prod.json"]);

    // The overridden file, mapped to the URL it was registered at: its labels stay as Prometheus saw them.
    const mapped = await runImport(["--map", `${files.search}=search/prod`, `--map=extra.json=extra/prod`, source], { FILE_SD_DIRECTORY: target });
    expect(mapped.stdout).toMatch(new RegExp(`^imported +${files.search} → search/prod$`, "m"));
    expect(mapped.stdout).toMatch(/^imported +extra\.json → extra\/prod$/m);
    expect(mapped.stdout).toMatch(new RegExp(`^unchanged +${files.billing} → billing/prod-hou`, "m"));
    expect(await read("search@prod.json")).toEqual(group("search-api", "prod", ["s1:9200"]));
    expect(mapped.code).toBe(1); // still the invalid file and the taken pair
  });

  it("a service running on the directory picks the imported groups up, and serves them under the same URLs", async () => {
    const target = join(scratch, "running");
    const service = await startTestService({ directory: target });
    try {
      expect((await service.request("GET", "/billing/prod-hou")).body).toEqual([]);
      const ran = await runImport([source], { FILE_SD_DIRECTORY: target });
      expect(ran.stdout).toMatch(/^imported +.* → billing\/prod-hou$/m);
      await eventually(async () => JSON.stringify((await service.request("GET", "/billing/prod-hou")).body) === JSON.stringify(group("billing", "prod-hou", ["host1:9100", "host2:9100"], { team: "core" })), 5000, "the service to serve the imported group");
      // And the API goes on from there, as Target-eye's did.
      expect((await service.request("POST", "/billing/prod-hou", { body: "targets=host3:9100" })).status).toBe(200);
    } finally {
      await service.close();
    }
  });

  it("--dry-run writes nothing; --help answers 0; a bad --map, a missing directory or the service's own directory are usage errors (2)", async () => {
    const target = join(scratch, "dry");
    const dry = await runImport(["--dry-run", source], { FILE_SD_DIRECTORY: target });
    expect(dry.stdout).toMatch(/^would add +.* → billing\/prod-hou, 2 targets$/m);
    expect(dry.lines.at(-1)).toMatch(/\(dry run: nothing written\)/);
    expect(await readdir(target)).toEqual([]);

    const help = await runImport(["--help"], {});
    expect(help.code).toBe(0);
    expect(help.stdout).toMatch(/^usage: node dist\/import-target-eye\.js/);

    for (const [args, message] of [
      [["--map", "nope", source], /--map nope: give FILE=APPLICATION\/ENVIRONMENT/],
      [["--map", "missing.json=a/b", source], /--map names missing\.json, which is not a \.json file of/],
      [["--map", `${files.search}=bad name/prod`, source], /--map .*: application "bad name" is not a valid name/],
      [[join(scratch, "no-such-directory")], /the Target-eye directory .* cannot be read: ENOENT/],
      [[], /give the Target-eye directory/],
      [["--overwrite", source], /unknown option --overwrite/],
      [[source, source], /give one Target-eye directory, not 2/],
    ] as const) {
      const ran = await runImport(args, { FILE_SD_DIRECTORY: target });
      expect(ran.stderr, args.join(" ")).toMatch(message);
      expect(ran.code, args.join(" ")).toBe(2);
    }
    const own = await runImport([source], { FILE_SD_DIRECTORY: source });
    expect(own.stderr).toMatch(/is FILE_SD_DIRECTORY too: give the service a directory of its own/);
    expect(own.code).toBe(2);
    const config = await runImport([source], { FILE_SD_DIRECTORY: target, ETCD_TIMEOUT: "5s" });
    expect(config.stderr).toMatch(/ETCD_TIMEOUT is set but ETCD_ENDPOINTS is not/);
    expect(config.code).toBe(2);
  });

  describe("into etcd", () => {
    let cluster: EtcdCluster;
    const prefix = `/target-eye-${randomUUID()}/`;
    beforeAll(async () => {
      cluster = await startEtcdCluster({ size: 1 });
    });
    afterAll(async () => {
      await cluster?.stop();
    });

    it("imports each group as the service's bytes under groups/, skips what etcd holds, and an instance serves them", async () => {
      const env = { ETCD_ENDPOINTS: cluster.endpoints.join(","), ETCD_PREFIX: prefix, FILE_SD_DIRECTORY: join(scratch, "unused") };
      await cluster.etcdctl(["put", `${prefix}groups/taken@prod`, serializeGroup({ targets: ["theirs:1"], labels: { job: "taken", env: "prod" } })]);
      const ran = await runImport(["--map", `${files.search}=search/prod`, source], env);
      expect(ran.stdout).toMatch(/^imported +.* → billing\/prod-hou$/m);
      expect(ran.stdout).toMatch(/^imported +.* → search\/prod$/m);
      expect(ran.stdout).toMatch(/^skipped +.* → taken\/prod: a different group is registered there already/m);
      expect(ran.lines.at(-1)).toMatch(/→ etcd .* under \/target-eye-.*\/: 5 imported, 0 already there, 0 empty, 3 not imported \(1 registered differently, 1 skipped, 1 invalid, 0 failed, 0 not tried\)$/);
      expect(ran.code).toBe(1);
      const value = await cluster.etcdctl(["get", "--print-value-only", `${prefix}groups/billing@prod-hou`]);
      expect(value.trim()).toBe(serializeGroup({ targets: ["host1:9100", "host2:9100"], labels: { job: "billing", env: "prod-hou", team: "core" } }).trim());
      expect(JSON.parse(await cluster.etcdctl(["get", "--print-value-only", `${prefix}groups/taken@prod`]))).toEqual(group("taken", "prod", ["theirs:1"]));
      expect(await cluster.etcdctl(["get", "--print-value-only", `${prefix}expires/billing@prod-hou`])).toBe("");

      const again = await runImport(["--map", `${files.search}=search/prod`, source], env);
      expect(again.stdout).toMatch(/^unchanged +.* → billing\/prod-hou/m);

      const sd = await startTestService({ env: { ETCD_ENDPOINTS: env.ETCD_ENDPOINTS, ETCD_PREFIX: prefix } });
      try {
        expect((await sd.request("GET", "/search/prod")).body).toEqual(group("search-api", "prod", ["s1:9200"]));
        expect(await sd.fileOf("geo", "prod-zrh")).toEqual(group("geo", "prod-zrh", ["10.3.3.1:15000"], { city: "Zürich" }));
      } finally {
        await sd.close();
      }
    });

    it("with etcd unreachable: the first file fails after ETCD_TIMEOUT, the rest are not tried, exit 1", async () => {
      const ran = await runImport([source], { ETCD_ENDPOINTS: "http://127.0.0.1:1", ETCD_TIMEOUT: "500ms", FILE_SD_DIRECTORY: join(scratch, "unused") });
      expect(ran.lines.filter((text) => text.startsWith("failed"))).toHaveLength(1);
      expect(ran.lines.filter((text) => text.startsWith("not tried")).length).toBeGreaterThan(0);
      expect(ran.lines.at(-1)).toMatch(/etcd stopped answering, run the import again when it does/);
      expect(ran.code).toBe(1);
    });
  });
});
