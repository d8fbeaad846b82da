import { readFile } from "node:fs/promises";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it, vi } from "vitest";
import { startTestService, type TestService } from "../helpers.js";

/**
 * A directory fsync that fails after the rename: no disk on this machine fails
 * fsync on demand, so the fault is injected at the store's DirectorySync.
 */
const fault = vi.hoisted(() => ({ armed: false }));

vi.mock("../../src/directory/directory-sync.js", async (importOriginal) => {
  const actual = await importOriginal<typeof import("../../src/directory/directory-sync.js")>();
  class FailingWhenArmed extends actual.DirectorySync {
    override sync(): Promise<void> {
      if (fault.armed) return Promise.reject(Object.assign(new Error("EIO: i/o error, fsync"), { code: "EIO" }));
      return super.sync();
    }
  }
  return { ...actual, DirectorySync: FailingWhenArmed };
});

describe("a directory fsync that fails after the rename (injected)", () => {
  let sd: TestService;
  beforeAll(async () => {
    sd = await startTestService();
  });
  afterAll(() => sd.close());

  it("answers 500, and GET keeps agreeing with the file Prometheus already reads", async () => {
    await sd.request("PUT", "/billing/prod", { body: "targets=a:1" });
    fault.armed = true;
    const answer = await sd.request("PUT", "/billing/prod", { body: "targets=b:2" });
    fault.armed = false;
    expect(answer.status).toBe(500);
    expect(answer.body).toEqual({ message: expect.stringMatching(/billing@prod\.json was written, but the directory fsync failed \(EIO/) });
    const file = JSON.parse(await readFile(join(sd.directory, "billing@prod.json"), "utf8"));
    expect(file).toEqual([{ targets: ["b:2"], labels: { job: "billing", env: "prod" } }]);
    expect((await sd.request("GET", "/billing/prod")).body).toEqual(file);
    expect((await sd.request("PUT", "/billing/prod", { body: "targets=c:3" })).status).toBe(200);
  });
});
