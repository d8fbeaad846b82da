import type { Deadlines } from "../model.js";

/**
 * The text of a `.expires` file (file mode) and of an `expires/` key (etcd
 * mode): `{"<target>": "<ISO time>"}`, readable by a person at the terminal
 * (what `JSON.stringify(…, null, 2)` writes, in the order of the map).
 */
export function serializeDeadlines(expires: Deadlines): string {
  const lines: string[] = [];
  for (const [target, ms] of expires) lines.push(lineOf(target, new Date(ms).toISOString()));
  return textOf(lines);
}

/**
 * serializeDeadlines for the successive versions of each group's deadlines:
 * the ISO time of a target whose deadline has not changed since the group's
 * last text is reused. A flush of renewals rewrites a group's file with a few
 * deadlines moved; formatting every one of them again was most of its cost
 * (BENCHMARKS.md, heartbeats at fleet scale). Kept lean (about 60 bytes a
 * target): the last text's targets, deadlines and times, in the map's order,
 * which a renewal keeps.
 */
export class DeadlinesTexts {
  private readonly groups = new Map<string, { readonly targets: readonly string[]; readonly ms: readonly number[]; readonly times: readonly string[] }>();

  text(key: string, expires: Deadlines): string {
    const known = this.groups.get(key);
    const targets: string[] = [];
    const ms: number[] = [];
    const times: string[] = [];
    const lines: string[] = [];
    for (const [target, deadline] of expires) {
      const i = targets.length;
      const time = known !== undefined && known.targets[i] === target && known.ms[i] === deadline ? known.times[i]! : new Date(deadline).toISOString();
      targets.push(target);
      ms.push(deadline);
      times.push(time);
      lines.push(lineOf(target, time));
    }
    this.groups.set(key, { targets, ms, times });
    return textOf(lines);
  }

  forget(key: string): void {
    this.groups.delete(key);
  }
}

function lineOf(target: string, time: string): string {
  return `  ${JSON.stringify(target)}: "${time}"`;
}

function textOf(lines: readonly string[]): string {
  return lines.length === 0 ? "{}\n" : `{\n${lines.join(",\n")}\n}\n`;
}

/** Throws with the reason when `text` is not such a document. */
export function parseDeadlines(text: string): Deadlines {
  const document: unknown = JSON.parse(text);
  if (typeof document !== "object" || document === null || Array.isArray(document)) throw new Error("not a mapping of target to time");
  const expires = new Map<string, number>();
  for (const [target, time] of Object.entries(document)) {
    const ms = typeof time === "string" ? Date.parse(time) : NaN;
    if (Number.isNaN(ms)) throw new Error(`the deadline of ${JSON.stringify(target)} is not an ISO time: ${JSON.stringify(time)}`);
    expires.set(target, ms);
  }
  return expires;
}
