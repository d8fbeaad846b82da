import { readFile, stat } from "node:fs/promises";
import { join } from "node:path";
import { parseGroupFile } from "../../src/directory/group-file.js";
import { idOfFileName, isLeftoverTempFile } from "../../src/directory/naming.js";
import type { AppEnv } from "../../src/model.js";
import { filesIn } from "../helpers.js";

/**
 * Write load against a running service, and a ledger of what its answers
 * promised. Every writer owns its targets and sends one request at a time, so
 * each target's requests are causally ordered: after a 2xx the target must be
 * present (POST) or absent (DELETE) whatever the other writers did meanwhile.
 * A request that got no answer (the server died) may have gone either way.
 */

type TargetState = "present" | "absent" | "unknown";

export const groupKey = ({ application, environment }: AppEnv): string => `${application}/${environment}`;

export class AckLedger {
  private readonly groups = new Map<string, Map<string, TargetState>>();
  sent = 0;
  acknowledged = 0;
  unanswered = 0;
  /** 503s in etcd mode: not acknowledged, and the targets they named may have gone either way. */
  unavailable = 0;
  readonly unavailableMessages: string[] = [];
  /** Answers that should not happen under this load: any 4xx or 5xx. */
  readonly unexpected: string[] = [];

  expect(group: AppEnv, target: string, state: TargetState): void {
    const key = groupKey(group);
    let targets = this.groups.get(key);
    if (targets === undefined) this.groups.set(key, (targets = new Map()));
    targets.set(target, state);
  }

  groupKeys(): string[] {
    return [...this.groups.keys()];
  }

  /** Everything in `actual` (group key → targets) that contradicts an answer, as readable lines. */
  contradictions(actual: ReadonlyMap<string, readonly string[]>, where: string): string[] {
    const problems: string[] = [];
    for (const [key, targets] of this.groups) {
      const seen = new Set(actual.get(key) ?? []);
      for (const [target, state] of targets) {
        if (state === "present" && !seen.has(target)) problems.push(`${where}: ${key} lost acknowledged POST of ${target}`);
        if (state === "absent" && seen.has(target)) problems.push(`${where}: ${key} still has acknowledged DELETE of ${target}`);
      }
    }
    for (const [key, targets] of actual) {
      const known = this.groups.get(key);
      for (const target of targets) {
        if (known?.has(target) !== true) problems.push(`${where}: ${key} has ${target}, which nobody sent`);
      }
    }
    return problems;
  }

  /** How many acknowledged changes `actual` does not reflect (for the report). */
  lost(actual: ReadonlyMap<string, readonly string[]>): number {
    return this.contradictions(actual, "").filter((line) => line.includes("acknowledged")).length;
  }
}

/** A small seeded generator, so a failing round can be replayed with the printed seed. */
export function seededRandom(seed: number): () => number {
  let state = seed >>> 0;
  return () => {
    state = (state + 0x6d2b79f5) >>> 0;
    let t = state;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

export interface WriteLoad {
  readonly url: string;
  readonly groups: readonly AppEnv[];
  readonly writers: number;
  /** Makes every target name unique across rounds. */
  readonly prefix: string;
  readonly ledger: AckLedger;
  readonly random: () => number;
  /** Checked before every request; a writer also stops at its first unanswered request. */
  readonly shouldStop: () => boolean;
  /** Called with the time of every acknowledgement. */
  readonly onAck?: (at: number) => void;
  /** Called with every answer's status and how long it took. */
  readonly onAnswer?: (status: number, ms: number) => void;
  /**
   * etcd mode: a 503 after a transaction reached etcd may have been applied
   * (the answer was lost, not the change), so it counts as no answer at all.
   * In file mode a 5xx changes nothing.
   */
  readonly unavailableMayApply?: boolean;
}

/** Runs `writers` sequential clients until `shouldStop` or until the server stops answering. */
export async function runWriters(load: WriteLoad): Promise<void> {
  await Promise.all(Array.from({ length: load.writers }, (_, index) => runWriter(load, `${load.prefix}-w${index}`)));
}

async function runWriter(load: WriteLoad, name: string): Promise<void> {
  const owned = new Map<string, string[]>();
  let counter = 0;
  while (!load.shouldStop()) {
    const group = load.groups[Math.floor(load.random() * load.groups.length)] as AppEnv;
    const mine = owned.get(groupKey(group)) ?? [];
    owned.set(groupKey(group), mine);
    const deleting = mine.length > 0 && load.random() < 0.35;
    const targets = deleting
      ? mine.splice(Math.floor(load.random() * mine.length), 1)
      : Array.from({ length: 1 + Math.floor(load.random() * 3) }, () => `${name}-${counter++}.load:9100`);
    const method = deleting ? "DELETE" : "POST";
    for (const target of targets) load.ledger.expect(group, target, "unknown");
    load.ledger.sent++;

    let status: number;
    let text: string;
    const sentAt = Date.now();
    try {
      const response = await fetch(`${load.url}/${group.application}/${group.environment}`, {
        method,
        headers: { "content-type": "application/json" },
        body: JSON.stringify({ targets }),
      });
      status = response.status;
      text = await response.text();
    } catch {
      // No answer: the request may or may not have been applied; the ledger says "unknown".
      load.ledger.unanswered++;
      return;
    }
    load.onAnswer?.(status, Date.now() - sentAt);
    if (status === 503 && load.unavailableMayApply === true) {
      // Its targets stay "unknown", and this writer never names them again.
      load.ledger.unavailable++;
      if (load.ledger.unavailableMessages.length < 3) load.ledger.unavailableMessages.push(text);
      continue;
    }
    if (status >= 200 && status < 300) {
      load.ledger.acknowledged++;
      load.onAck?.(Date.now());
      for (const target of targets) load.ledger.expect(group, target, deleting ? "absent" : "present");
      if (!deleting) mine.push(...targets);
    } else {
      // Refused: nothing changed, so the targets are where they were before.
      load.ledger.unexpected.push(`${method} ${groupKey(group)} ${targets.join(",")}: ${status} ${text}`);
      for (const target of targets) load.ledger.expect(group, target, deleting ? "present" : "absent");
      if (deleting) mine.push(...targets);
    }
  }
}

/** What Prometheus would read from `directory`, plus every way the directory is not as it should be. */
export interface DirectoryState {
  /** Group key → targets, for every managed file. */
  readonly groups: Map<string, readonly string[]>;
  /** `<application>@<environment>.json.<n>`: the atomic write's temporary files. */
  readonly leftovers: string[];
  readonly problems: string[];
}

export async function readDirectoryState(directory: string): Promise<DirectoryState> {
  const groups = new Map<string, readonly string[]>();
  const leftovers: string[] = [];
  const problems: string[] = [];
  for (const name of await filesIn(directory)) {
    if (isLeftoverTempFile("targets", name)) {
      leftovers.push(name);
      continue;
    }
    const appEnv = idOfFileName("targets", name);
    if (appEnv === undefined) {
      problems.push(`unexpected file ${name}`);
      continue;
    }
    const path = join(directory, name);
    if (!(await stat(path)).isFile()) {
      problems.push(`${name} is not a regular file`);
      continue;
    }
    try {
      const group = parseGroupFile(await readFile(path, "utf8"), "targets");
      groups.set(groupKey(appEnv), group?.targets ?? []);
    } catch (error) {
      problems.push(`${name} is not a valid group list: ${(error as Error).message}`);
    }
  }
  return { groups, leftovers, problems };
}

/** What the service answers to GET for every group the ledger knows. */
export async function readServedState(url: string, keys: readonly string[]): Promise<Map<string, readonly string[]>> {
  const served = new Map<string, readonly string[]>();
  await Promise.all(
    keys.map(async (key) => {
      const response = await fetch(`${url}/${key}`);
      if (response.status !== 200) throw new Error(`GET /${key} answered ${response.status}: ${await response.text()}`);
      const body = (await response.json()) as { targets: string[] }[];
      if (body.length > 0) served.set(key, body[0]?.targets ?? []);
    }),
  );
  return served;
}
