import { createHash, randomBytes } from "node:crypto";
import { mkdir, rename, symlink, writeFile } from "node:fs/promises";
import { join } from "node:path";
import { afterEach, describe, expect, it } from "vitest";
import { eventually, makeTempDir, removeDir, startTestService, type TestService } from "../helpers.js";
import { capturingLogger, parseMetrics, sampleValue, writeAtomically } from "./support.js";

const newToken = (): string => randomBytes(32).toString("hex");
const sha256Hex = (token: string): string => createHash("sha256").update(token).digest("hex");
const bearer = (token: string) => ({ Authorization: `Bearer ${token}` });

function tokensFile(tokens: Record<string, string>): string {
  const entries = Object.entries(tokens).map(
    ([name, token]) => `  - name: ${name}\n    sha256: ${sha256Hex(token)}\n    applications: ["*"]\n`,
  );
  return `tokens:\n${entries.join("")}`;
}

const RELOAD_WAIT_MS = 10_000;

const cleanups: (() => Promise<void>)[] = [];
afterEach(async () => {
  for (const cleanup of cleanups.splice(0).reverse()) await cleanup();
});

async function start(
  text: string,
  logger = capturingLogger(),
): Promise<{ service: TestService; path: string; log: ReturnType<typeof capturingLogger> }> {
  const directory = await makeTempDir("file-sd-tokens-");
  const path = join(directory, "tokens.yaml");
  await writeFile(path, text);
  const service = await startTestService({ directory: join(directory, "sd"), env: { AUTH_TOKENS_FILE: path }, logger: logger.logger });
  cleanups.push(() => removeDir(directory), () => service.close());
  return { service, path, log: logger };
}

async function status(service: TestService, token: string): Promise<number> {
  return (await service.request("PUT", "/billing/prod", { body: "targets=a:9100", headers: bearer(token) })).status;
}

async function reloads(service: TestService, result: "ok" | "error"): Promise<number | undefined> {
  const samples = parseMetrics(await (await fetch(`${service.url}/metrics`)).text());
  return sampleValue(samples, "file_sd_tokens_file_reloads_total", { result });
}

describe("reloading AUTH_TOKENS_FILE", () => {
  it("a changed file takes effect without a restart, and requests during the reload are all answered", async () => {
    const [kept, added, removed] = [newToken(), newToken(), newToken()];
    const { service, path } = await start(tokensFile({ kept, removed }));
    expect(await status(service, added)).toBe(401);
    expect(await status(service, removed)).toBe(200);

    // Requests with a token present before and after keep flowing through the reload.
    let stop = false;
    const statuses: number[] = [];
    const traffic = (async () => {
      while (!stop) statuses.push(await status(service, kept));
    })();
    try {
      await writeAtomically(path, tokensFile({ kept, added }));
      await eventually(async () => (await status(service, added)) === 200, RELOAD_WAIT_MS, "the added token to work");
      expect(await status(service, removed)).toBe(401);
    } finally {
      stop = true;
      await traffic;
    }
    expect(statuses.length).toBeGreaterThan(0);
    expect(new Set(statuses)).toEqual(new Set([200]));
    expect(await reloads(service, "ok")).toBe(1);
  });

  it("a file rewritten in place (truncated, then written) is read once it is complete", async () => {
    const [first, second] = [newToken(), newToken()];
    const { service, path } = await start(tokensFile({ first }));
    await writeFile(path, tokensFile({ second }));
    await eventually(async () => (await status(service, second)) === 200, RELOAD_WAIT_MS, "the rewritten file to be read");
    expect(await status(service, first)).toBe(401);
  });

  it("an invalid file keeps the tokens loaded before, logs an error without quoting a token, and counts it", async () => {
    const token = newToken();
    const pasted = newToken();
    const { service, path, log } = await start(tokensFile({ token }));
    await writeAtomically(path, `tokens:\n  - name: oops\n    sha256: ${pasted}-not-a-digest\n`);
    await eventually(async () => (await reloads(service, "error")) === 1, RELOAD_WAIT_MS, "the failed reload to be counted");

    expect(await status(service, token)).toBe(200);
    const errors = log.lines().filter((line) => line.level === 50);
    expect(errors).toMatchObject([{ msg: "tokens file is not valid; keeping the tokens loaded before", file: path }]);
    expect(errors[0]?.reason).toMatch(/^tokens\[0\]\.sha256 \(token "oops"\) must be the 64 hex digits/);
    expect(log.text()).not.toContain(pasted);
    expect(log.text()).not.toContain(token);
  });

  it("a removed file keeps the tokens loaded before", async () => {
    const token = newToken();
    const { service, path } = await start(tokensFile({ token }));
    await rename(path, `${path}.moved`);
    await eventually(async () => (await reloads(service, "error")) === 1, RELOAD_WAIT_MS, "the failed reload to be counted");
    expect(await status(service, token)).toBe(200);
  });

  it("follows a Kubernetes-style secret volume, where a ..data symlink is swapped", async () => {
    const [first, second] = [newToken(), newToken()];
    const directory = await makeTempDir("file-sd-secret-");
    cleanups.push(() => removeDir(directory));
    // What the kubelet does: files are links through ..data to a timestamped directory.
    await mkdir(join(directory, "..v1"));
    await writeFile(join(directory, "..v1", "tokens.yaml"), tokensFile({ first }));
    await symlink("..v1", join(directory, "..data"));
    await symlink(join("..data", "tokens.yaml"), join(directory, "tokens.yaml"));
    const service = await startTestService({
      directory: join(directory, "sd"),
      env: { AUTH_TOKENS_FILE: join(directory, "tokens.yaml") },
    });
    cleanups.push(() => service.close());
    expect(await status(service, first)).toBe(200);

    await mkdir(join(directory, "..v2"));
    await writeFile(join(directory, "..v2", "tokens.yaml"), tokensFile({ second }));
    await symlink("..v2", join(directory, "..data_tmp"));
    await rename(join(directory, "..data_tmp"), join(directory, "..data"));
    await eventually(async () => (await status(service, second)) === 200, RELOAD_WAIT_MS, "the swapped secret to be read");
    expect(await status(service, first)).toBe(401);
  });
});
