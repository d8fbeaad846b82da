import { createServer, type Server } from "node:http";
import type { AddressInfo } from "node:net";
import { readFile, rename, unlink, writeFile } from "node:fs/promises";
import { join } from "node:path";
import { setTimeout as sleep } from "node:timers/promises";
import { pino } from "pino";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { createApp } from "../../src/app.js";
import { FileStore } from "../../src/filestore/store.js";
import { watchDirectory, type DirectoryWatch } from "../../src/directory/watch.js";
import { eventually, makeTempDir, removeDir, request, type Answer } from "../helpers.js";
import type { LogLine } from "../support/child-service.js";

/**
 * Someone else edits the directory: a config-management run, an operator with
 * an editor, a half-finished copy. The service wires the store with an
 * observer here, to check that every bad file is counted as well as logged.
 */

interface ObservedService {
  readonly url: string;
  readonly directory: string;
  readonly readFailed: string[];
  readonly outsideChanges: string[];
  readonly logs: LogLine[];
  close(): Promise<void>;
}

async function startObservedService(directory: string): Promise<ObservedService> {
  const logs: LogLine[] = [];
  const logger = pino({ level: "info" }, { write: (line: string) => void logs.push(JSON.parse(line) as LogLine) });
  const readFailed: string[] = [];
  const outsideChanges: string[] = [];
  const store = await FileStore.open({
    directory,
    logger,
    observer: {
      readFailed: (fileName) => readFailed.push(fileName),
      outsideChange: (fileName) => outsideChanges.push(fileName),
    },
  });
  const watch: DirectoryWatch = await watchDirectory(store.directory, (id) => void store.reload(id), logger);
  const server: Server = createServer(createApp({ store, logger, maxBodyBytes: 1024 * 1024 }).callback());
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
  const { port } = server.address() as AddressInfo;
  return {
    url: `http://127.0.0.1:${port}`,
    directory,
    readFailed,
    outsideChanges,
    logs,
    close: async () => {
      await new Promise<void>((resolve) => server.close(() => resolve()));
      await store.idle();
      await watch.close();
    },
  };
}

const groupFile = (targets: string[], labels: Record<string, string>): string =>
  `${JSON.stringify([{ targets, labels }], null, 2)}\n`;

describe("outside changes", () => {
  let sd: ObservedService;
  const call = (method: string, path: string, body?: unknown): Promise<Answer> =>
    request(sd.url, method, path, body === undefined ? {} : { body });
  const served = async (path: string): Promise<unknown> => (await call("GET", path)).body;

  beforeAll(async () => {
    sd = await startObservedService(await makeTempDir("file-sd-outside-"));
  });
  afterAll(async () => {
    await sd.close();
    await removeDir(sd.directory);
  });

  const invalidContents: [string, string][] = [
    ["not JSON", "[{\"targets\": [\"half-written"],
    ["an empty file", ""],
    ["a mapping, not a list", '{"targets": ["a:1"], "labels": {}}'],
    ["two groups", `${JSON.stringify([{ targets: ["a:1"], labels: {} }, { targets: ["b:1"], labels: {} }])}`],
    ["a bad target", JSON.stringify([{ targets: ["not a target"], labels: {} }])],
    ["a label that is not a string", JSON.stringify([{ targets: ["a:1"], labels: { port: 9100 } }])],
    ["NUL bytes", "\u0000\u0000\u0000"],
  ];

  it.each(invalidContents)(
    "a file turned into %s is logged and counted; GET keeps the last good group; the next write repairs it",
    async (what, contents) => {
      const environment = `bad-${invalidContents.findIndex(([name]) => name === what)}`;
      const fileName = `outside@${environment}.json`;
      const path = join(sd.directory, fileName);
      expect((await call("POST", `/outside/${environment}`, { targets: ["good.example:9100"] })).status).toBe(200);
      const lastGood = await served(`/outside/${environment}`);

      await writeFile(path, contents);
      await eventually(() => sd.readFailed.includes(fileName), 5_000, `readFailed for ${fileName}`);
      const warning = sd.logs.find((line) => line.file === fileName && line.level === 40);
      expect(warning?.msg).toBe("file is not a valid target group; still serving the last good group");
      expect(typeof warning?.reason).toBe("string");
      expect(await served(`/outside/${environment}`)).toEqual(lastGood);
      expect(await readFile(path, "utf8")).toBe(contents);

      const repaired = await call("POST", `/outside/${environment}`, { targets: ["next.example:9100"] });
      expect(repaired.status).toBe(200);
      const expected = [{ targets: ["good.example:9100", "next.example:9100"], labels: { job: "outside", env: environment } }];
      expect(repaired.body).toEqual(expected);
      expect(JSON.parse(await readFile(path, "utf8"))).toEqual(expected);
    },
  );

  it("a valid outside edit is served and is what the next POST adds to", async () => {
    const path = join(sd.directory, "edited@prod.json");
    expect((await call("POST", "/edited/prod", { targets: ["a.example:9100"] })).status).toBe(200);
    await writeFile(path, groupFile(["b.example:9100"], { job: "edited", env: "prod", team: "ops" }));
    await eventually(
      async () => JSON.stringify(await served("/edited/prod")).includes("b.example"),
      5_000,
      "the outside edit to be served",
    );
    expect(sd.outsideChanges).toContain("edited@prod.json");
    const answer = await call("POST", "/edited/prod", { targets: ["c.example:9100"] });
    expect(answer.body).toEqual([{ targets: ["b.example:9100", "c.example:9100"], labels: { job: "edited", env: "prod", team: "ops" } }]);
  });

  it("a file removed from outside unregisters its group", async () => {
    expect((await call("POST", "/removed/prod", { targets: ["a.example:9100"] })).status).toBe(200);
    await unlink(join(sd.directory, "removed@prod.json"));
    await eventually(async () => JSON.stringify(await served("/removed/prod")) === "[]", 5_000, "GET to answer []");
    expect((await call("DELETE", "/removed/prod")).status).toBe(404);
  });

  /**
   * Editors and config management write in quick bursts; the watcher reports
   * some of those writes late or not at all (chokidar drops a change event that
   * follows another within 50 ms). Whatever the interleaving, the service must
   * end up serving what the file finally holds.
   */
  const bursts: [string, (path: string, contents: string, step: number) => Promise<void>][] = [
    ["in-place writes", (path, contents) => writeFile(path, contents)],
    [
      "atomic renames",
      async (path, contents, step) => {
        await writeFile(`${path}.edit-${step}`, contents);
        await rename(`${path}.edit-${step}`, path);
      },
    ],
    [
      "writes with invalid moments in between",
      async (path, contents, step) => {
        await writeFile(path, step % 2 === 0 ? "[{\"targets\": [" : contents);
        if (step % 2 === 0) await writeFile(path, contents);
      },
    ],
  ];

  it.each(bursts)("a burst of outside edits (%s) converges on the last one", async (what, edit) => {
    const environment = `burst-${bursts.findIndex(([name]) => name === what)}`;
    const path = join(sd.directory, `burst@${environment}.json`);
    expect((await call("POST", `/burst/${environment}`, { targets: ["start.example:9100"] })).status).toBe(200);
    let version = 0;
    let waited = 0;
    for (let burst = 0; burst < 8; burst++) {
      const steps = 5 + burst * 5;
      for (let step = 0; step < steps; step++) {
        version++;
        await edit(path, groupFile([`v${version}.example:9100`], { job: "burst", env: environment }), step);
        if (burst % 2 === 1) await sleep(step % 7);
      }
      const last = [{ targets: [`v${version}.example:9100`], labels: { job: "burst", env: environment } }];
      waited = Math.max(
        waited,
        await eventually(async () => JSON.stringify(await served(`/burst/${environment}`)) === JSON.stringify(last), 5_000,
          `GET to serve version ${version} after a burst of ${steps} ${what}`),
      );
    }
    console.log(`outside changes: ${version} edits by ${what} in 8 bursts converged; slowest took ${waited} ms`);
  });
});
