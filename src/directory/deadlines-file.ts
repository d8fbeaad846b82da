import type { Deadlines } from "../model.js";

/**
 * The text of a `.expires` file (file mode) and of an `expires/` key (etcd
 * mode): `{"<target>": "<ISO time>"}`, readable by a person at the terminal.
 */
export function serializeDeadlines(expires: Deadlines): string {
  // fromEntries defines each key, so a target named __proto__ stays a key of the document.
  const byTarget = Object.fromEntries([...expires].map(([target, ms]) => [target, new Date(ms).toISOString()]));
  return `${JSON.stringify(byTarget, null, 2)}\n`;
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
