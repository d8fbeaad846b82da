import { spawn } from "node:child_process";
import { chmod, mkdir, readFile, writeFile } from "node:fs/promises";
import { createServer, type Server } from "node:net";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { makeTempDir, removeDir } from "./helpers.js";
import { MAIN_SCRIPT } from "./support/child-service.js";
import { killOnExit } from "./support/reaper.js";

/**
 * The exit statuses docs/operations.md promises, from the built service: 2 for every setting a
 * person must change (contrib/systemd's unit does not restart after it), 1 for what a restart
 * may fix. Each case must end the process within seconds, before it listens.
 */

const EXIT_TIMEOUT_MS = 15_000;
const NOBODY = 65534;

interface Ended {
  readonly code: number | null;
  readonly output: string;
}

function runService(env: Readonly<Record<string, string>>, options: { uid?: number; args?: readonly string[] } = {}): Promise<Ended> {
  return new Promise((resolvePromise, reject) => {
    const child = spawn(process.execPath, [MAIN_SCRIPT, ...(options.args ?? [])], {
      env: { PATH: process.env.PATH ?? "", BIND: "127.0.0.1:0", ...env },
      stdio: ["ignore", "pipe", "pipe"],
      ...(options.uid === undefined ? {} : { uid: options.uid, gid: options.uid }),
    });
    killOnExit(child);
    let output = "";
    child.stdout.setEncoding("utf8").on("data", (chunk: string) => (output += chunk));
    child.stderr.setEncoding("utf8").on("data", (chunk: string) => (output += chunk));
    const timer = setTimeout(() => {
      child.kill("SIGKILL");
      reject(new Error(`the service did not exit within ${EXIT_TIMEOUT_MS} ms; it should have refused to start:\n${output}`));
    }, EXIT_TIMEOUT_MS);
    child.once("close", (code) => {
      clearTimeout(timer);
      resolvePromise({ code, output });
    });
  });
}

describe("exit codes: 2 for a setting a person must change, 1 for what a restart may fix", () => {
  let scratch = "";
  let directory = "";
  beforeAll(async () => {
    scratch = await makeTempDir("exit-codes-");
    directory = join(scratch, "file_sd");
  });
  afterAll(async () => {
    if (scratch !== "") await removeDir(scratch);
  });

  it("--help prints what it is and where the settings are, and exits 0; any other argument is 2", async () => {
    const help = await runService({ FILE_SD_DIRECTORY: directory }, { args: ["--help"] });
    expect(help.code).toBe(0);
    expect(help.output).toMatch(/^file-sd-writer: register Prometheus scrape targets[\s\S]*docs\/operations\.md/);
    const other = await runService({ FILE_SD_DIRECTORY: directory }, { args: ["--port=1"] });
    expect(other.code).toBe(2);
    expect(other.output).toMatch(/^unexpected argument --port=1/);
  });

  it("the unit's RestartPreventExitStatus is the configuration error's status", async () => {
    const unit = await readFile(join(import.meta.dirname, "..", "contrib", "systemd", "file-sd-writer.service"), "utf8");
    expect(/^RestartPreventExitStatus=(.*)$/m.exec(unit)?.[1]).toBe("2");
  });

  it.each([
    ["a variable that does not parse", { MAX_BODY_BYTES: "1MB" }, /MAX_BODY_BYTES=\\"1MB\\" must be a whole number/],
    ["an etcd setting without ETCD_ENDPOINTS", { ETCD_TIMEOUT: "5s" }, /ETCD_TIMEOUT is set but ETCD_ENDPOINTS is not/],
    ["a missing AUTH_TOKENS_FILE", { AUTH_TOKENS_FILE: "/nonexistent/tokens.yml" }, /AUTH_TOKENS_FILE=\/nonexistent\/tokens.yml cannot be read: ENOENT/],
    ["a CERTFILE that cannot be read", { CERTFILE: "/nonexistent/cert.pem", KEYFILE: "/nonexistent/key.pem" }, /CERTFILE=\/nonexistent\/cert.pem cannot be read/],
    ["an etcd password file that cannot be read", { ETCD_ENDPOINTS: "http://127.0.0.1:1", ETCD_USERNAME: "sd", ETCD_PASSWORD_FILE: "/nonexistent/password" }, /ETCD_PASSWORD_FILE=\/nonexistent\/password cannot be read/],
    ["an etcd CA that cannot be read", { ETCD_ENDPOINTS: "https://127.0.0.1:1", ETCD_CA_FILE: "/nonexistent/ca.pem" }, /ETCD_CA_FILE=\/nonexistent\/ca.pem cannot be read/],
  ])("%s: exit 2 with the variable named", async (_what, env, message) => {
    const ended = await runService({ FILE_SD_DIRECTORY: directory, ...env });
    expect(ended.output).toMatch(message);
    expect(ended.code, ended.output).toBe(2);
  });

  it("an invalid tokens file, and a certificate and key that are not PEM: exit 2", async () => {
    const tokens = join(scratch, "tokens.yml");
    await writeFile(tokens, "tokens:\n  - name: ci\n    sha256: not-a-digest\n");
    const invalid = await runService({ FILE_SD_DIRECTORY: directory, AUTH_TOKENS_FILE: tokens });
    expect(invalid.output).toMatch(/AUTH_TOKENS_FILE .*tokens\.yml is not valid/);
    expect(invalid.code).toBe(2);

    const notPem = join(scratch, "not.pem");
    await writeFile(notPem, "hello\n");
    const tls = await runService({ FILE_SD_DIRECTORY: directory, CERTFILE: notPem, KEYFILE: notPem });
    expect(tls.output).toMatch(/are not a PEM certificate and its private key/);
    expect(tls.code).toBe(2);
  });

  it("a FILE_SD_DIRECTORY that is a file, or that its user may not create: exit 2", async () => {
    const file = join(scratch, "a-file");
    await writeFile(file, "");
    const isFile = await runService({ FILE_SD_DIRECTORY: file });
    expect(isFile.output).toMatch(/FILE_SD_DIRECTORY .*a-file is not a writable directory/);
    expect(isFile.code).toBe(2);

    // Owned by root, mode 0755: another user can neither write in it nor create below it.
    const closed = join(scratch, "closed");
    await mkdir(closed);
    await chmod(closed, 0o755);
    await chmod(scratch, 0o755);
    const denied = await runService({ FILE_SD_DIRECTORY: join(closed, "file_sd") }, { uid: NOBODY });
    expect(denied.output).toMatch(/is not a writable directory: EACCES/);
    expect(denied.code).toBe(2);
  });

  it("BIND on a port already in use: exit 1, since the process holding it may be on its way out", async () => {
    const holder: Server = createServer();
    await new Promise<void>((resolve) => holder.listen(0, "127.0.0.1", resolve));
    const address = holder.address();
    const port = typeof address === "object" && address !== null ? address.port : 0;
    try {
      const ended = await runService({ FILE_SD_DIRECTORY: directory, BIND: `127.0.0.1:${port}` });
      expect(ended.output).toMatch(/EADDRINUSE/);
      expect(ended.code).toBe(1);
    } finally {
      await new Promise<void>((resolve) => holder.close(() => resolve()));
    }
  });
});
