import { lstat, mkdir, readFile, symlink, writeFile } from "node:fs/promises";
import { join } from "node:path";
import { afterEach, describe, expect, it } from "vitest";
import { makeTempDir, removeDir, startTestService, type TestService } from "../helpers.js";
import { ROOT } from "./support.js";

/** docs/design.md's "Dependencies and why" stays true: every package is in it, and its safety claim holds. */

async function readmeSection(heading: string): Promise<string> {
  const readme = await readFile(join(ROOT, "docs", "design.md"), "utf8");
  const start = readme.indexOf(`\n## ${heading}\n`);
  expect(start, `docs/design.md has no "## ${heading}"`).toBeGreaterThan(0);
  const end = readme.indexOf("\n## ", start + 1);
  return readme.slice(start, end < 0 ? undefined : end);
}

describe("docs/design.md: Dependencies and why", () => {
  let scratch = "";
  let service: TestService | undefined;
  afterEach(async () => {
    await service?.close();
    service = undefined;
    if (scratch !== "") await removeDir(scratch);
  });

  it("lists every dependency of package.json, with its kind, and write-file-atomic as not used", async () => {
    const manifest = JSON.parse(await readFile(join(ROOT, "package.json"), "utf8")) as {
      dependencies: Record<string, string>;
      devDependencies: Record<string, string>;
    };
    const section = await readmeSection("Dependencies and why");
    const rows = new Map<string, string>();
    for (const [, names = "", kind = ""] of section.matchAll(/^\| (`[^|]+`) \| ([a-z ]+) \|/gm)) {
      for (const [, name = ""] of names.matchAll(/`([^`]+)`/g)) rows.set(name, kind);
    }
    const expected = [
      ...Object.keys(manifest.dependencies).map((name) => [name, "runtime"]),
      ...Object.keys(manifest.devDependencies).map((name) => [name, "dev"]),
      ["write-file-atomic", "not used"],
    ];
    expect(expected.filter(([name, kind]) => rows.get(name ?? "") !== kind)).toEqual([]);
    expect(Object.keys(manifest.dependencies)).not.toContain("write-file-atomic");
  });

  it("a symlink planted at a managed name is replaced by the next write, never written through", async () => {
    scratch = await makeTempDir("contrib-symlink-");
    const directory = join(scratch, "file_sd");
    const elsewhere = join(scratch, "elsewhere.json");
    await mkdir(directory);
    await writeFile(elsewhere, "not yours\n");
    await symlink(elsewhere, join(directory, "billing@prod.json"));

    service = await startTestService({ directory });
    const put = await service.request("PUT", "/billing/prod", { body: "targets=host1:9100" });
    expect(put.status).toBe(200);

    expect(await readFile(elsewhere, "utf8")).toBe("not yours\n");
    expect((await lstat(join(directory, "billing@prod.json"))).isSymbolicLink()).toBe(false);
    expect(await service.fileOf("billing", "prod")).toEqual([{ targets: ["host1:9100"], labels: { job: "billing", env: "prod" } }]);
  });
});
