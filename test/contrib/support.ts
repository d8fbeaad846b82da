import { execFile } from "node:child_process";
import { dirname, resolve } from "node:path";
import { fileURLToPath } from "node:url";
import { findTool, type Tool } from "../support/tools.js";

/** The repository root and its contrib/ folder, which these tests check. */
export const ROOT = resolve(dirname(fileURLToPath(import.meta.url)), "..", "..");
export const CONTRIB = resolve(ROOT, "contrib");

export const SYSTEMD_ANALYZE: Tool = { name: "systemd-analyze", envVar: "SYSTEMD_ANALYZE_BIN", debianPackage: "systemd" };
export const CURL: Tool = { name: "curl", envVar: "CURL_BIN", debianPackage: "curl" };

export const SYSTEMD_SYSUSERS: Tool = { name: "systemd-sysusers", envVar: "SYSTEMD_SYSUSERS_BIN", debianPackage: "systemd" };

export const findSystemdAnalyze = (): string => findTool(SYSTEMD_ANALYZE);
export const findSystemdSysusers = (): string => findTool(SYSTEMD_SYSUSERS);
export const findCurl = (): string => findTool(CURL);

export interface Run {
  readonly code: number;
  readonly stdout: string;
  readonly stderr: string;
}

/**
 * Runs a program to its end (killed after `timeoutMs`) with only the environment given, plus
 * PATH and HOME, so the caller's shell variables cannot change the result.
 */
export function run(
  file: string,
  args: readonly string[],
  options: { cwd?: string; env?: Readonly<Record<string, string>>; timeoutMs?: number } = {},
): Promise<Run> {
  return new Promise((resolvePromise) => {
    execFile(
      file,
      args,
      {
        cwd: options.cwd ?? ROOT,
        timeout: options.timeoutMs ?? 60_000,
        env: { PATH: process.env.PATH ?? "", HOME: process.env.HOME ?? ROOT, ...options.env },
      },
      (error, stdout, stderr) => {
        const code = error === null ? 0 : typeof error.code === "number" ? error.code : -1;
        resolvePromise({ code, stdout, stderr: error !== null && code === -1 ? `${error.message}\n${stderr}` : stderr });
      },
    );
  });
}

export type Directives = Map<string, string[]>;

/** `[Section]` → key → every value given, in order (systemd keys may repeat). */
export function parseUnit(text: string): Map<string, Directives> {
  const sections = new Map<string, Directives>();
  let current: Directives | undefined;
  for (const raw of text.split("\n")) {
    const line = raw.trim();
    if (line === "" || line.startsWith("#") || line.startsWith(";")) continue;
    const section = /^\[(.+)\]$/.exec(line);
    if (section !== null) {
      current = new Map();
      sections.set(section[1] ?? "", current);
      continue;
    }
    const equals = line.indexOf("=");
    if (current === undefined || equals < 0) throw new Error(`unexpected line in a unit file: ${line}`);
    const key = line.slice(0, equals).trim();
    current.set(key, [...(current.get(key) ?? []), line.slice(equals + 1).trim()]);
  }
  return sections;
}

