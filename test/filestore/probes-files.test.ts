import { mkdir, rename, writeFile } from "node:fs/promises";
import { join } from "node:path";
import { afterEach, describe, expect, it } from "vitest";
import { serializeGroup } from "../../src/directory/group-file.js";
import { eventually, filesIn, makeTempDir, removeDir, startTestService, type TestService } from "../helpers.js";

/**
 * The probe groups' files in file mode: what is in probes/ at start is loaded with the probe
 * grammar (URLs are valid there), an outside edit is picked up, and the folder's kind is the
 * file's: a URL in a scrape group's file, or the same file at the top, is not a valid group.
 */

const cleanups: (() => Promise<void>)[] = [];
afterEach(async () => {
  for (const cleanup of cleanups.splice(0).reverse()) await cleanup();
});

async function start(directory: string): Promise<TestService> {
  const service = await startTestService({ directory });
  cleanups.push(() => service.close());
  return service;
}

async function directoryWith(files: Record<string, string>): Promise<string> {
  const directory = await makeTempDir("file-sd-probe-files-");
  cleanups.push(() => removeDir(directory));
  await mkdir(join(directory, "probes"));
  for (const [name, text] of Object.entries(files)) await writeFile(join(directory, name), text);
  return directory;
}

const probes = { targets: ["https://billing.example.com/health?deep=1,2", "db.billing.example.com:5432"], labels: { job: "billing", env: "prod", __param_module: "http_2xx" } };

describe("probes/ in the directory", () => {
  it("is loaded at start with the probe grammar, and a URL outside probes/ is not a group", async () => {
    const directory = await directoryWith({
      "probes/billing@prod.json": serializeGroup(probes),
      // The same URLs as a scrape group: not valid there, so not registered, and left as it is.
      "billing@prod.json": serializeGroup(probes),
    });
    const service = await start(directory);
    expect((await service.request("GET", "/billing/prod/probes")).body).toEqual([probes]);
    expect((await service.request("GET", "/billing/prod")).body).toEqual([]);
    const index = (await service.request("GET", "/")).body as { groups: unknown[]; probes: { file: string; targets: number }[] };
    expect(index.groups).toEqual([]);
    expect(index.probes).toEqual([expect.objectContaining({ application: "billing", environment: "prod", file: "probes/billing@prod.json", targets: 2 })]);
    expect(await filesIn(directory)).toEqual(["billing@prod.json", "probes/billing@prod.json"]);
  });

  it("an outside edit of a probe file is what GET serves next, and the next change applies to it", async () => {
    const directory = await directoryWith({});
    const service = await start(directory);
    expect((await service.request("PUT", "/billing/prod/probes", { body: { targets: ["https://a.example.com/"] } })).status).toBe(200);
    const temporary = join(directory, "probes", "edit.tmp");
    await writeFile(temporary, serializeGroup(probes));
    await rename(temporary, join(directory, "probes", "billing@prod.json"));
    await eventually(async () => JSON.stringify((await service.request("GET", "/billing/prod/probes")).body) === JSON.stringify([probes]), 5000, "the edit to be served");
    const posted = await service.request("POST", "/billing/prod/probes", { body: { targets: ["https://c.example.com/"] } });
    expect(posted.status).toBe(200);
    expect(await service.fileOf("billing", "prod", "probes")).toEqual([{ ...probes, targets: [...probes.targets, "https://c.example.com/"] }]);
  });
});
