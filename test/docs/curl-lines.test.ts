import { execFile } from "node:child_process";
import { randomBytes, createHash } from "node:crypto";
import { copyFile, mkdir, readdir, readFile, writeFile } from "node:fs/promises";
import { dirname, join } from "node:path";
import { parse } from "shell-quote";
import { afterAll, describe, expect, it } from "vitest";
import { makeTempDir, removeDir } from "../helpers.js";
import { startChildService, type ChildService } from "../support/child-service.js";
import { startEtcdCluster, type EtcdCluster } from "../support/etcd.js";
import { codeBlocks, shellCommands, type CodeBlock } from "../support/markdown.js";
import { findTool } from "../support/tools.js";

/**
 * Every `curl` line of README.md and docs/*.md, run against a live service (the built
 * dist/main.js), so the docs cannot drift from the behaviour. Lines are found by pattern in the
 * pages' shell blocks: a new curl line in a doc is run without touching this test.
 *
 * - Each page gets fresh services and a scratch directory of its own; its blocks run in order,
 *   each block in one bash (so `tag=$(curl …)` feeds the next line), with `S` set to the
 *   service and `http(s)://localhost:12345` / `127.0.0.1:12345` pointed at it. Of a block's
 *   other lines only here-documents that write a file (`cat > targets.yml <<'YAML'`) run; the
 *   rest (make, docker, kubectl, etcdctl…) is for the reader.
 * - A line that uses `$TOKEN` runs against a service with a tokens file that accepts it; one with
 *   `https://localhost`, `https://127.0.0.1` or `--cacert` against one with a certificate the test
 *   makes (at the path the line names); the lines of docs/etcd.md against a service in etcd mode on a one-member etcd.
 * - A line fails the test when it exits non-zero (curl, or the pipeline: `set -o pipefail`) or
 *   when any answer it got is a 5xx. A trailing `# → <JSON>` is compared with the line's output,
 *   and `# → <status>` with its last answer's status.
 */

const ROOT = join(import.meta.dirname, "..", "..");
const CURL = findTool({ name: "curl", envVar: "CURL_BIN", debianPackage: "curl" });
// The docs pipe answers into jq; a missing one fails here with how to install it.
findTool({ name: "jq", envVar: "JQ_BIN", debianPackage: "jq" });
const OPENSSL = findTool({ name: "openssl", envVar: "OPENSSL_BIN", debianPackage: "openssl" });

/** The lines that cannot run here, each with why; keep it short. */
const NOT_RUNNABLE: readonly { readonly pattern: RegExp; readonly why: string }[] = [
  {
    pattern: /--fail-with-body "\$S\/billing\/prod\/status\?wait=2m"/,
    why: "the deploy gate waits for $(hostname):9100, a real exporter, to be scraped by a real Prometheus; test/status/prometheus-status.test.ts runs the same ?wait= against two real Prometheus servers",
  },
  {
    pattern: /--fail-with-body "\$S\/billing\/prod\/probes\/status\?wait=2m"/,
    why: "the probes' deploy gate waits for a URL to be probed by a real blackbox_exporter through a real Prometheus; test/probes/blackbox.test.ts runs this very line against both",
  },
];

/** `curl` where a command starts: at the line's start (after VAR=value), after `$(`, `|`, `;`, `&&`. */
const CURL_COMMAND = /(?:^\s*(?:[A-Za-z_][A-Za-z0-9_]*=\S*\s+)*|\$\(\s*|[|;&]\s*)curl\s/;
const FILE_HERE_DOCUMENT = /^cat > [\w./-]+ <</;
const LOCAL_SERVICE = /https?:\/\/(?:localhost|127\.0\.0\.1):12345/g;

interface Profile {
  readonly tls: boolean;
  readonly token: boolean;
}

interface Line {
  readonly page: string;
  readonly line: number;
  readonly text: string;
  readonly curl: boolean;
  readonly profile: Profile;
  readonly expected: { readonly json: unknown } | { readonly status: number } | undefined;
}

function expectedOf(text: string): Line["expected"] {
  const comment = parse(text.split("\n")[0] ?? "", (name) => `$${name}`).find((entry): entry is { comment: string } => typeof entry === "object" && entry !== null && "comment" in entry);
  const shown = /^\s*→\s*(.+)$/.exec(comment?.comment ?? "")?.[1]?.trim();
  if (shown === undefined) return undefined;
  if (/^[0-9]{3}$/.test(shown)) return { status: Number(shown) };
  return { json: JSON.parse(shown) as unknown };
}

async function pages(): Promise<{ readonly page: string; readonly blocks: CodeBlock[] }[]> {
  const docs = (await readdir(join(ROOT, "docs"))).filter((name) => name.endsWith(".md")).sort().map((name) => `docs/${name}`);
  return Promise.all(
    ["README.md", ...docs].map(async (page) => ({
      page,
      blocks: codeBlocks(await readFile(join(ROOT, page), "utf8")).filter((block) => ["bash", "sh", ""].includes(block.language)),
    })),
  );
}

function linesOf(page: string, block: CodeBlock): Line[] {
  return shellCommands(block).flatMap(({ text, line }): Line[] => {
    const curl = CURL_COMMAND.test(text);
    if (!curl && !FILE_HERE_DOCUMENT.test(text)) return [];
    if (curl && NOT_RUNNABLE.some(({ pattern }) => pattern.test(text))) return [];
    // HTTPS to the service itself: a probe URL (targets=https://…) is only data.
    const profile = { tls: /https:\/\/(?:localhost|127\.0\.0\.1)[:/]|--cacert/.test(text), token: text.includes("$TOKEN") };
    return [{ page, line, text, curl, profile, expected: curl ? expectedOf(text) : undefined }];
  });
}

/** One service per profile and page, started when a line first needs it. */
class Services {
  private readonly running = new Map<string, ChildService>();
  readonly token = randomBytes(16).toString("hex");
  constructor(
    private readonly scratch: string,
    private readonly etcd: (() => Promise<EtcdCluster>) | undefined,
  ) {}

  async url(profile: Profile): Promise<string> {
    const key = `${profile.tls}-${profile.token}`;
    const known = this.running.get(key);
    if (known !== undefined) return known.url;
    const env: Record<string, string> = {};
    if (profile.tls) {
      const [cert, key] = [join(this.scratch, "service-cert.pem"), join(this.scratch, "service-key.pem")];
      await run(OPENSSL, ["req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1", "-subj", "/CN=localhost", "-addext", "subjectAltName=DNS:localhost,IP:127.0.0.1", "-keyout", key, "-out", cert], this.scratch);
      Object.assign(env, { CERTFILE: cert, KEYFILE: key });
    }
    if (profile.token) {
      const file = join(this.scratch, `tokens-${key}.yml`);
      await writeFile(file, `tokens:\n  - name: docs\n    sha256: ${createHash("sha256").update(this.token).digest("hex")}\n    applications: ["*"]\n`);
      env.AUTH_TOKENS_FILE = file;
    }
    if (this.etcd !== undefined) {
      const cluster = await this.etcd();
      Object.assign(env, { ETCD_ENDPOINTS: cluster.endpoints.join(","), ETCD_PREFIX: `/docs-${randomBytes(6).toString("hex")}/` });
    }
    const service = await startChildService({ directory: join(this.scratch, `file_sd-${key}`), env });
    this.running.set(key, service);
    return service.url;
  }

  /** Where a line's `--cacert <path>` points, relative to the page's directory, gets the service's certificate. */
  async placeCertificates(text: string, cwd: string): Promise<void> {
    for (const [, path = ""] of text.matchAll(/--cacert\s+(\S+)/g)) {
      await mkdir(dirname(join(cwd, path)), { recursive: true });
      await copyFile(join(this.scratch, "service-cert.pem"), join(cwd, path));
    }
  }

  async stop(): Promise<void> {
    for (const service of this.running.values()) await service.stop();
  }
}

function run(file: string, args: readonly string[], cwd: string, env: Readonly<Record<string, string>> = {}): Promise<{ code: number; stdout: string; stderr: string }> {
  return new Promise((resolve) => {
    execFile(file, args, { cwd, timeout: 60_000, env: { PATH: process.env.PATH ?? "", HOME: process.env.HOME ?? cwd, ...env } }, (error, stdout, stderr) => {
      resolve({ code: error === null ? 0 : typeof error.code === "number" ? error.code : -1, stdout, stderr });
    });
  });
}

describe("every curl line of README.md and docs/*.md, against a live service", async () => {
  const all = await pages();
  let cluster: EtcdCluster | undefined;
  afterAll(async () => {
    await cluster?.stop();
  });

  it("finds the curl lines of the pages that show them", () => {
    const counted = all.map(({ page, blocks }) => [page, blocks.flatMap((block) => linesOf(page, block)).filter((line) => line.curl).length] as const);
    expect(Object.fromEntries(counted)).toMatchObject({ "README.md": expect.any(Number), "docs/api.md": expect.any(Number), "docs/etcd.md": expect.any(Number) });
    expect(counted.reduce((sum, [, count]) => sum + count, 0)).toBeGreaterThan(40);
  });

  it.each(all.map(({ page }) => page))("%s", async (page) => {
    const { blocks } = all.find((entry) => entry.page === page)!;
    const scratch = await makeTempDir("docs-curl-");
    const cwd = join(scratch, "cwd");
    await mkdir(cwd);
    const services = new Services(scratch, page === "docs/etcd.md" ? async () => (cluster ??= await startEtcdCluster({ size: 1 })) : undefined);
    const failures: string[] = [];
    try {
      for (const block of blocks) {
        const lines = linesOf(page, block);
        if (lines.length === 0) continue;
        const script = ["set -o pipefail", `curl() { command ${CURL} --write-out '%{stderr}\\nHTTP-STATUS %{http_code}\\n' "$@"; }`];
        for (const [i, line] of lines.entries()) {
          const url = await services.url(line.profile);
          if (line.profile.tls) await services.placeCertificates(line.text, cwd);
          const text = line.text.replace(LOCAL_SERVICE, url);
          script.push(`S=${url}`, `{ ${text}\n} >"${scratch}/out.${i}" 2>"${scratch}/err.${i}"; echo $? >"${scratch}/rc.${i}"`);
        }
        const ran = await run("bash", ["-c", script.join("\n")], cwd, { TOKEN: services.token });
        expect(ran.code, ran.stderr).toBe(0);
        for (const [i, line] of lines.entries()) {
          const where = `${line.page}:${line.line}: ${line.text.split("\n")[0]}`;
          const [rc, out, err] = await Promise.all(["rc", "out", "err"].map((part) => readFile(join(scratch, `${part}.${i}`), "utf8")));
          const statuses = [...(err ?? "").matchAll(/^HTTP-STATUS ([0-9]{3})$/gm)].map((match) => Number(match[1]));
          const message = (reason: string) => `${where}\n  ${reason}\n  output: ${(out ?? "").slice(0, 400)}\n  stderr: ${(err ?? "").slice(0, 400)}`;
          if (Number(rc) !== 0) failures.push(message(`exited ${Number(rc)}`));
          if (statuses.some((status) => status >= 500)) failures.push(message(`answered ${statuses.join(", ")}`));
          if (line.expected !== undefined && "status" in line.expected && statuses.at(-1) !== line.expected.status) {
            failures.push(message(`answered ${statuses.at(-1)}, the doc shows ${line.expected.status}`));
          }
          if (line.expected !== undefined && "json" in line.expected) {
            let got: unknown;
            try {
              got = JSON.parse(out ?? "");
            } catch {
              got = out;
            }
            if (JSON.stringify(got) !== JSON.stringify(line.expected.json)) failures.push(message(`the doc shows ${JSON.stringify(line.expected.json)}`));
          }
        }
      }
    } finally {
      await services.stop();
      await removeDir(scratch);
    }
    expect(failures, failures.join("\n\n")).toEqual([]);
  });
});
