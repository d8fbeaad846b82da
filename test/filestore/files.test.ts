import { execFile } from "node:child_process";
import { mkdir, readFile, rm, stat, writeFile } from "node:fs/promises";
import { join } from "node:path";
import { promisify } from "node:util";
import { afterEach, describe, expect, it } from "vitest";
import { loadConfig } from "../../src/config.js";
import { StoreError } from "../../src/errors.js";
import { startService } from "../../src/server.js";
import { eventually, filesIn, makeTempDir, removeDir, silentLogger, startTestService, type TestService } from "../helpers.js";

const run = promisify(execFile);

/** docs/design.md, against a real directory. */
describe("files (docs/design.md)", () => {
  const running: TestService[] = [];
  const start = async (directory?: string): Promise<TestService> => {
    const sd = await startTestService(directory === undefined ? {} : { directory });
    running.push(sd);
    return sd;
  };
  const directories: string[] = [];
  const tempDir = async (): Promise<string> => {
    const directory = await makeTempDir();
    directories.push(directory);
    return directory;
  };
  afterEach(async () => {
    await Promise.all(running.splice(0).map((sd) => sd.close()));
    await Promise.all(directories.splice(0).map(removeDir));
  });

  it("creates the directory at start when it is missing", async () => {
    const directory = join(await tempDir(), "nested", "file_sd");
    await start(directory);
    expect((await stat(directory)).isDirectory()).toBe(true);
  });

  it("refuses to start on a directory it cannot write, saying which", async () => {
    const parent = await tempDir();
    await writeFile(join(parent, "not-a-dir"), "");
    const config = loadConfig({ BIND: "127.0.0.1:0", FILE_SD_DIRECTORY: join(parent, "not-a-dir", "file_sd") });
    await expect(startService(config, silentLogger)).rejects.toThrowError(StoreError);
    await expect(startService(config, silentLogger)).rejects.toThrowError(/FILE_SD_DIRECTORY .*not-a-dir.* is not a writable directory/);
  });

  it("writes <application>@<environment>.json holding exactly one group, readable by others", async () => {
    const sd = await start();
    await sd.request("PUT", "/billing/prod-hou", { body: "targets=a:1" });
    expect(await filesIn(sd.directory)).toEqual(["billing@prod-hou.json"]);
    const text = await readFile(join(sd.directory, "billing@prod-hou.json"), "utf8");
    expect(JSON.parse(text)).toEqual([{ targets: ["a:1"], labels: { job: "billing", env: "prod-hou" } }]);
    expect((await stat(join(sd.directory, "billing@prod-hou.json"))).mode & 0o777).toBe(0o644);
  });

  it("state survives a restart; an overridden job is still found under its file and the next write goes there", async () => {
    const first = await start(await tempDir());
    await first.request("PUT", "/billing/prod-hou", { body: "targets=a:1&job=node&team=core" });
    await first.close();

    const second = await start(first.directory);
    const expected = [{ targets: ["a:1"], labels: { job: "node", env: "prod-hou", team: "core" } }];
    expect((await second.request("GET", "/billing/prod-hou")).body).toEqual(expected);
    expect((await second.request("GET", "/node/prod-hou")).body).toEqual([]);
    await second.request("POST", "/billing/prod-hou", { body: "targets=b:2" });
    expect(await filesIn(second.directory)).toEqual(["billing@prod-hou.json"]);
    expect(await second.fileOf("billing", "prod-hou")).toEqual([{ ...expected[0], targets: ["a:1", "b:2"] }]);
  });

  it("leaves corrupt and foreign files as they are; a corrupt one counts as not registered until a PUT replaces it", async () => {
    const directory = await tempDir();
    const files: Record<string, string> = {
      "broken@prod.json": "[{not json",
      "twogroups@prod.json": JSON.stringify([{ targets: ["a:1"] }, { targets: ["b:2"] }]),
      "nolist@prod.json": JSON.stringify({ targets: ["a:1"] }),
      "badtarget@prod.json": JSON.stringify([{ targets: ["not a target"], labels: {} }]),
      "handwritten.json": JSON.stringify([{ targets: ["x:1"] }]),
      "notes.txt": "hello",
      "other@prod.yaml": "- targets: [a:1]",
    };
    for (const [name, text] of Object.entries(files)) await writeFile(join(directory, name), text);
    const sd = await start(directory);

    for (const application of ["broken", "twogroups", "nolist", "badtarget"]) {
      expect((await sd.request("GET", `/${application}/prod`)).body).toEqual([]);
      expect((await sd.request("DELETE", `/${application}/prod`)).status).toBe(404);
    }
    for (const [name, text] of Object.entries(files)) expect(await readFile(join(directory, name), "utf8")).toBe(text);

    expect((await sd.request("PUT", "/broken/prod", { body: "targets=a:1" })).status).toBe(200);
    expect(await sd.fileOf("broken", "prod")).toEqual([{ targets: ["a:1"], labels: { job: "broken", env: "prod" } }]);
  });

  it("a file whose pair is over today's limit (an earlier version took 238) is left alone and not served", async () => {
    const directory = await tempDir();
    const name = `${"a".repeat(118)}@${"e".repeat(120)}.json`;
    const text = JSON.stringify([{ targets: ["old:1"], labels: { job: "a", env: "e" } }]);
    await writeFile(join(directory, name), text);
    const sd = await start(directory);
    expect(((await sd.request("GET", "/")).body as { groups: unknown[] }).groups).toEqual([]);
    expect((await sd.request("GET", `/${"a".repeat(118)}/${"e".repeat(120)}`)).status).toBe(400);
    expect(await readFile(join(directory, name), "utf8")).toBe(text);
  });

  it("a FIFO at a managed name neither blocks start-up nor the service, and is left alone", async () => {
    const directory = await tempDir();
    await run("mkfifo", [join(directory, "pipe@prod.json")]);
    const sd = await start(directory);
    expect((await sd.request("GET", "/pipe/prod")).body).toEqual([]);
    await run("mkfifo", [join(directory, "later@prod.json")]);
    await new Promise((resolve) => setTimeout(resolve, 300));
    expect((await sd.request("GET", "/-/healthy")).status).toBe(200);
    expect((await sd.request("GET", "/later/prod")).body).toEqual([]);
    expect((await stat(join(directory, "pipe@prod.json"))).isFIFO()).toBe(true);
  });

  it("removes temporary files left by a crash, and only those", async () => {
    const directory = await tempDir();
    await writeFile(join(directory, "billing@prod.json.123456789"), "[{half");
    await writeFile(join(directory, "billing@prod.json"), JSON.stringify([{ targets: ["a:1"], labels: { job: "billing", env: "prod" } }]));
    await writeFile(join(directory, "someone-else.json.42"), "keep me");
    const sd = await start(directory);
    expect((await filesIn(directory)).sort()).toEqual(["billing@prod.json", "someone-else.json.42"]);
    expect((await sd.request("GET", "/billing/prod")).body).toEqual([{ targets: ["a:1"], labels: { job: "billing", env: "prod" } }]);
  });

  it("never leaves anything but managed .json files behind after a run of writes", async () => {
    const sd = await start();
    await Promise.all(
      Array.from({ length: 40 }, (_, i) => sd.request("POST", `/app${i % 4}/prod`, { body: `targets=h${i}:1` })),
    );
    expect((await filesIn(sd.directory)).sort()).toEqual(["app0@prod.json", "app1@prod.json", "app2@prod.json", "app3@prod.json"]);
  });

  it("picks up a file someone else creates, edits and removes, within a second", async () => {
    const sd = await start();
    const file = join(sd.directory, "outside@prod.json");
    const group = (targets: string[]) => [{ targets, labels: { job: "outside", env: "prod" } }];
    const served = async (expected: unknown) => JSON.stringify((await sd.request("GET", "/outside/prod")).body) === JSON.stringify(expected);

    await writeFile(file, JSON.stringify(group(["a:1"])));
    await eventually(() => served(group(["a:1"])), 1000, "outside create");
    await writeFile(file, JSON.stringify(group(["a:1", "b:2"])));
    await eventually(() => served(group(["a:1", "b:2"])), 1000, "outside edit");

    expect((await sd.request("POST", "/outside/prod", { body: "targets=c:3" })).status).toBe(200);
    expect(await sd.fileOf("outside", "prod")).toEqual(group(["a:1", "b:2", "c:3"]));

    await rm(file);
    await eventually(() => served([]), 1000, "outside removal");
    expect((await sd.request("DELETE", "/outside/prod")).status).toBe(404);
  });

  it("applies requests for one application/environment one at a time, in arrival order", async () => {
    const sd = await start();
    const targets = Array.from({ length: 100 }, (_, i) => `host${i}:9100`);
    const answers = await Promise.all(targets.map((target) => sd.request("POST", "/serial/prod", { body: `targets=${target}` })));
    expect(answers.every((answer) => answer.status === 200)).toBe(true);
    const written = (await sd.fileOf("serial", "prod")) as [{ targets: string[] }];
    expect([...written[0].targets].sort()).toEqual([...targets].sort());
    expect((await sd.request("GET", "/serial/prod")).body).toEqual(written);
  });

  it("a failed write answers 500 and changes neither the file nor GET; the next write after the fault succeeds", async () => {
    const sd = await start();
    await sd.request("PUT", "/billing/prod", { body: "targets=a:1" });
    // A non-empty directory where the file should be: the atomic rename fails (EISDIR).
    const file = join(sd.directory, "billing@prod.json");
    await rm(file);
    await mkdir(file);
    await writeFile(join(file, "keep"), "x");
    const before = (await sd.request("GET", "/billing/prod")).body;

    const answer = await sd.request("PUT", "/billing/prod", { body: "targets=b:2" });
    expect(answer.status).toBe(500);
    expect(answer.body).toEqual({ message: expect.stringMatching(/could not write billing@prod\.json: .*the change was not applied/) });
    expect((await sd.request("GET", "/billing/prod")).body).toEqual(before);
    expect(await readFile(join(file, "keep"), "utf8")).toBe("x");
    expect(await filesIn(sd.directory)).toEqual(["billing@prod.json"]);

    await rm(file, { recursive: true });
    expect((await sd.request("PUT", "/billing/prod", { body: "targets=b:2" })).status).toBe(200);
    expect(await sd.fileOf("billing", "prod")).toEqual([{ targets: ["b:2"], labels: { job: "billing", env: "prod" } }]);
  });
});
