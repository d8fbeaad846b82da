import { execFile } from "node:child_process";
import { mkdir, open, readdir, readFile, rm, rmdir, unlink, writeFile } from "node:fs/promises";
import { join } from "node:path";
import { promisify } from "node:util";
import { afterAll, beforeAll, describe, expect, it, vi } from "vitest";
import { isLeftoverTempFile } from "../../src/directory/naming.js";
import { type Answer, filesIn, makeTempDir, removeDir, startTestService, type TestService } from "../helpers.js";

/**
 * A write the disk refuses answers 5xx with a JSON message and changes
 * nothing: not the file Prometheus reads, not what GET answers. The next write
 * after the fault clears succeeds.
 *
 * The faults are real where this machine allows it (the tests run as root, so
 * permission bits prove nothing): a full 64 KiB tmpfs (ENOSPC), a read-only
 * bind mount (EROFS), an immutable file (EPERM), a directory where the file
 * belongs (EISDIR). Where mounting or chattr is not permitted, the same errno
 * is injected at the file store's boundary (its atomic write and unlink), and
 * the test's name says so. DISK_FAULTS=inject forces the injected variants.
 */

const run = promisify(execFile);

/** What the file store calls; pass-through unless a test arms a fault. */
const injected = vi.hoisted(() => ({ write: undefined as string | undefined, unlink: undefined as string | undefined }));

function errnoError(code: string, syscall: string, path: string): NodeJS.ErrnoException {
  const error: NodeJS.ErrnoException = new Error(`${code}: injected fault, ${syscall} '${path}'`);
  error.code = code;
  error.syscall = syscall;
  error.path = path;
  return error;
}

vi.mock("../../src/directory/atomic-write.js", async (importOriginal) => {
  const actual = await importOriginal<typeof import("../../src/directory/atomic-write.js")>();
  return {
    ...actual,
    writeFileAtomically: (...args: Parameters<typeof actual.writeFileAtomically>): Promise<void> =>
      injected.write === undefined ? actual.writeFileAtomically(...args) : Promise.reject(errnoError(injected.write, "open", args[0])),
  };
});

vi.mock("node:fs/promises", async (importOriginal) => {
  const actual = await importOriginal<typeof import("node:fs/promises")>();
  const unlinkOrFault = (path: Parameters<typeof actual.unlink>[0]): Promise<void> =>
    injected.unlink !== undefined && String(path).endsWith(".json")
      ? Promise.reject(errnoError(injected.unlink, "unlink", String(path)))
      : actual.unlink(path);
  return { ...actual, default: { ...actual, unlink: unlinkOrFault }, unlink: unlinkOrFault };
});

const forceInjection = process.env.DISK_FAULTS === "inject";

/** Whether `mount` works here (root in a container may still lack CAP_SYS_ADMIN). */
async function mountPermitted(): Promise<boolean> {
  if (forceInjection) return false;
  const probe = await makeTempDir("file-sd-mount-probe-");
  try {
    await run("mount", ["-t", "tmpfs", "-o", "size=64k", "tmpfs", probe]);
    await run("umount", [probe]);
    return true;
  } catch {
    return false;
  } finally {
    await removeDir(probe);
  }
}

/** Whether `chattr +i` works on files in the temporary directory (not on tmpfs or some overlays). */
async function chattrPermitted(): Promise<boolean> {
  if (forceInjection) return false;
  const probe = await makeTempDir("file-sd-chattr-probe-");
  const file = join(probe, "probe");
  await writeFile(file, "");
  try {
    await run("chattr", ["+i", file]);
    const refused = await unlink(file).then(
      () => false,
      () => true,
    );
    await run("chattr", ["-i", file]);
    return refused;
  } catch {
    return false;
  } finally {
    await removeDir(probe);
  }
}

const canMount = await mountPermitted();
const canChattr = await chattrPermitted();
const how = (real: boolean, mechanism: string, why: string): string =>
  real ? `real: ${mechanism}` : `injected at the file-store boundary: ${forceInjection ? "DISK_FAULTS=inject" : why}`;

interface Snapshot {
  readonly file: string | undefined;
  readonly served: unknown;
}

describe("disk faults", () => {
  const cleanups: (() => Promise<void>)[] = [];
  const mechanisms: string[] = [];

  beforeAll(() => {
    console.log(`disk faults: mount ${canMount ? "permitted" : "not permitted"}, chattr ${canChattr ? "works" : "does not work"}` +
      (forceInjection ? " (DISK_FAULTS=inject)" : ""));
  });
  afterAll(async () => {
    for (const cleanup of cleanups.reverse()) await cleanup().catch(() => undefined);
    console.log(`disk faults:\n  ${mechanisms.join("\n  ")}`);
  });

  async function snapshot(sd: TestService, application: string, environment: string): Promise<Snapshot> {
    const file = await readFile(join(sd.directory, `${application}@${environment}.json`), "utf8").catch(() => undefined);
    return { file, served: (await sd.request("GET", `/${application}/${environment}`)).body };
  }

  /** The request fails with 5xx and a JSON message naming the file, and nothing changes. */
  async function expectRefusedWithoutChange(
    sd: TestService,
    method: string,
    application: string,
    environment: string,
    body?: unknown,
  ): Promise<Answer> {
    const before = await snapshot(sd, application, environment);
    const answer = await sd.request(method, `/${application}/${environment}`, body === undefined ? {} : { body });
    expect(answer.status).toBeGreaterThanOrEqual(500);
    expect(answer.status).toBeLessThan(600);
    expect(answer.headers.get("content-type")).toMatch(/^application\/json/);
    expect((answer.body as { message: string }).message).toContain(`${application}@${environment}.json`);
    expect(await snapshot(sd, application, environment)).toEqual(before);
    const names = await filesIn(sd.directory);
    expect(names.filter((name) => isLeftoverTempFile("targets", name))).toEqual([]);
    return answer;
  }

  async function expectAccepted(sd: TestService, method: string, application: string, environment: string, body?: unknown): Promise<Answer> {
    const answer = await sd.request(method, `/${application}/${environment}`, body === undefined ? {} : { body });
    expect(answer.status, JSON.stringify(answer.body)).toBe(200);
    return answer;
  }

  it(`no space left on the device (${how(canMount, "a full 64 KiB tmpfs", "mounting a tmpfs is not permitted here")})`, async () => {
    const directory = await makeTempDir("file-sd-enospc-");
    cleanups.push(() => removeDir(directory));
    if (canMount) {
      await run("mount", ["-t", "tmpfs", "-o", "size=64k", "tmpfs", directory]);
      cleanups.push(() => run("umount", ["-l", directory]).then(() => undefined));
    }
    const sd = await startTestService({ directory });
    cleanups.push(() => sd.close());
    await expectAccepted(sd, "POST", "full", "disk", { targets: ["a.example:9100"] });

    const filler = join(directory, "filler");
    const fill = async (): Promise<void> => {
      if (!canMount) {
        injected.write = "ENOSPC";
        return;
      }
      const handle = await open(filler, "w");
      try {
        for (;;) await handle.write(Buffer.alloc(4096, 1));
      } catch (error) {
        if ((error as NodeJS.ErrnoException).code !== "ENOSPC") throw error;
      } finally {
        await handle.close();
      }
    };
    const clear = async (): Promise<void> => {
      injected.write = undefined;
      await rm(filler, { force: true });
    };

    try {
      await fill();
      const answer = await expectRefusedWithoutChange(sd, "POST", "full", "disk", { targets: ["b.example:9100"] });
      expect((answer.body as { message: string }).message).toContain("ENOSPC");
      await expectRefusedWithoutChange(sd, "PUT", "full", "disk", { labels: { team: "core" } });
      await expectRefusedWithoutChange(sd, "POST", "new", "group", { targets: ["c.example:9100"] });
    } finally {
      await clear();
    }
    await expectAccepted(sd, "POST", "full", "disk", { targets: ["b.example:9100"] });
    expect(await sd.fileOf("full", "disk")).toEqual([
      { targets: ["a.example:9100", "b.example:9100"], labels: { job: "full", env: "disk" } },
    ]);
    await expectAccepted(sd, "POST", "new", "group", { targets: ["c.example:9100"] });
    mechanisms.push(`ENOSPC: ${how(canMount, "tmpfs size=64k filled up", "mount not permitted")}`);
  });

  it(`a read-only volume refuses writes and removals (${how(canMount, "a read-only bind mount", "mounting is not permitted here")})`, async () => {
    const directory = await makeTempDir("file-sd-erofs-");
    cleanups.push(() => removeDir(directory));
    const sd = await startTestService({ directory });
    cleanups.push(() => sd.close());
    await expectAccepted(sd, "POST", "read", "only", { targets: ["a.example:9100", "b.example:9100"] });

    let mounted = false;
    const makeReadOnly = async (): Promise<void> => {
      if (!canMount) {
        injected.write = "EROFS";
        injected.unlink = "EROFS";
        return;
      }
      await run("mount", ["--bind", directory, directory]);
      mounted = true;
      await run("mount", ["-o", "remount,ro,bind", directory]);
    };
    const makeWritable = async (): Promise<void> => {
      injected.write = undefined;
      injected.unlink = undefined;
      if (mounted) await run("umount", [directory]);
      mounted = false;
    };

    try {
      await makeReadOnly();
      const answer = await expectRefusedWithoutChange(sd, "POST", "read", "only", { targets: ["c.example:9100"] });
      expect((answer.body as { message: string }).message).toContain("EROFS");
      await expectRefusedWithoutChange(sd, "DELETE", "read", "only", { targets: ["a.example:9100"] });
      // A DELETE of the whole group is an unlink, not a write.
      const removal = await expectRefusedWithoutChange(sd, "DELETE", "read", "only");
      expect((removal.body as { message: string }).message).toMatch(/could not remove read@only\.json: .*EROFS/);
    } finally {
      await makeWritable();
    }
    await expectAccepted(sd, "POST", "read", "only", { targets: ["c.example:9100"] });
    await expectAccepted(sd, "DELETE", "read", "only");
    expect(await sd.fileOf("read", "only")).toBeUndefined();
    expect((await sd.request("GET", "/read/only")).body).toEqual([]);
    mechanisms.push(`EROFS (write and unlink): ${how(canMount, "mount --bind + remount,ro", "mount not permitted")}`);
  });

  it(`an immutable file refuses replacement and removal (${how(canChattr, "chattr +i", "chattr +i is not supported on this file system")})`, async () => {
    const directory = await makeTempDir("file-sd-eperm-");
    cleanups.push(() => removeDir(directory));
    const sd = await startTestService({ directory });
    cleanups.push(() => sd.close());
    await expectAccepted(sd, "POST", "locked", "file", { targets: ["a.example:9100"] });
    const path = join(directory, "locked@file.json");

    const lock = async (): Promise<void> => {
      if (!canChattr) {
        injected.write = "EPERM";
        injected.unlink = "EPERM";
        return;
      }
      await run("chattr", ["+i", path]);
      cleanups.push(() => run("chattr", ["-i", path]).then(() => undefined));
    };
    const unlock = async (): Promise<void> => {
      injected.write = undefined;
      injected.unlink = undefined;
      if (canChattr) await run("chattr", ["-i", path]);
    };

    try {
      await lock();
      const answer = await expectRefusedWithoutChange(sd, "POST", "locked", "file", { targets: ["b.example:9100"] });
      expect((answer.body as { message: string }).message).toContain("EPERM");
      await expectRefusedWithoutChange(sd, "DELETE", "locked", "file");
    } finally {
      await unlock();
    }
    await expectAccepted(sd, "POST", "locked", "file", { targets: ["b.example:9100"] });
    await expectAccepted(sd, "DELETE", "locked", "file");
    expect(await sd.fileOf("locked", "file")).toBeUndefined();
    mechanisms.push(`EPERM (rename and unlink): ${how(canChattr, "chattr +i on the file", "chattr not supported")}`);
  });

  it("a directory where the file belongs refuses the write (real: mkdir <application>@<environment>.json)", async () => {
    const directory = await makeTempDir("file-sd-eisdir-");
    cleanups.push(() => removeDir(directory));
    const sd = await startTestService({ directory });
    cleanups.push(() => sd.close());
    const path = join(directory, "in@the-way.json");
    await mkdir(path);

    const answer = await expectRefusedWithoutChange(sd, "POST", "in", "the-way", { targets: ["a.example:9100"] });
    expect((answer.body as { message: string }).message).toContain("EISDIR");
    expect(await readdir(path)).toEqual([]);
    await expectRefusedWithoutChange(sd, "PUT", "in", "the-way", { targets: ["a.example:9100"] });

    await rmdir(path);
    await expectAccepted(sd, "POST", "in", "the-way", { targets: ["a.example:9100"] });
    expect(await sd.fileOf("in", "the-way")).toEqual([{ targets: ["a.example:9100"], labels: { job: "in", env: "the-way" } }]);
    mechanisms.push("EISDIR: real: a directory at <application>@<environment>.json");
  });
});
