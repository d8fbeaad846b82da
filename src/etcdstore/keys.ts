import type { IKeyValue } from "etcd3";

/**
 * What this service keeps in etcd, under ETCD_PREFIX. Per group (`<key>` is
 * `<application>@<environment>` for scrape targets, `probes/<application>@<environment>`
 * for probes; see keyOf in src/model.ts):
 * - `groups/<application>@<environment>` or `probes/<application>@<environment>`:
 *   exactly the bytes of the group's file; `[]` once the group was deleted (a
 *   tombstone, removed later by the collector, see `GC`).
 * - `expires/<key>`: the deadlines of its expiring targets, `{"<target>": "<ISO time>"}`;
 *   `{}` once it has none.
 * - `commits/<key>`: `{"<instance>": {"commit": "<id>", "at": "<ISO time>"}}`, the
 *   last change each instance made to the group. Written in the transaction of
 *   every change, so that an instance whose call failed after reaching etcd can
 *   tell, later, whether that change was applied (see Committer in commit.ts).
 * And once:
 * - `gc`: bumped by every transaction that removes tombstones. A transaction
 *   computed while a group's key was absent compares it, so one delayed in etcd
 *   can never apply after a removal made the key absent again.
 * Every change to a group is one transaction comparing the revisions of all
 * three of its keys.
 */
export const GROUPS = "groups/";
export const PROBES = "probes/";
export const EXPIRES = "expires/";
export const COMMITS = "commits/";
export const GC = "gc";

export type Part = "group" | "expires" | "commits";

/** The part and group of a key under the prefix; undefined for `gc` and anything that is not ours. */
export function partOf(etcdKey: string): { readonly part: Part; readonly key: string } | undefined {
  if (etcdKey.startsWith(GROUPS)) return { part: "group", key: etcdKey.slice(GROUPS.length) };
  if (etcdKey.startsWith(PROBES)) return { part: "group", key: etcdKey };
  if (etcdKey.startsWith(EXPIRES)) return { part: "expires", key: etcdKey.slice(EXPIRES.length) };
  if (etcdKey.startsWith(COMMITS)) return { part: "commits", key: etcdKey.slice(COMMITS.length) };
  return undefined;
}

export function etcdKeyOf(part: Part, key: string): string {
  if (part === "group") return key.startsWith(PROBES) ? key : GROUPS + key;
  return (part === "expires" ? EXPIRES : COMMITS) + key;
}

/** What the group key of a deleted group holds: the file_sd document with no group in it. */
export const NOTHING_REGISTERED = "[]\n";
/** What the deadlines key holds once a group has none left. */
export const NO_DEADLINES_TEXT = "{}\n";

/** One key as this instance knows it: its value and the revision that last changed it; absent at the revision it was seen absent. */
export type KeyValue =
  | { readonly present: true; readonly text: string; readonly revision: number }
  | { readonly present: false; readonly text?: undefined; readonly revision: number };

export function valueOf(kv: IKeyValue): KeyValue {
  return { present: true, text: kv.value.toString("utf8"), revision: Number(kv.mod_revision) };
}

export function absentAt(revision: number): KeyValue {
  return { present: false, revision };
}

/** The revision a transaction compares: a key's mod revision, 0 when absent. */
export function modRevisionOf(value: KeyValue | undefined): number {
  return value?.present === true ? value.revision : 0;
}

/** The last change each instance made to one group: instance → commit id and when. */
export type Markers = ReadonlyMap<string, { readonly commit: string; readonly at: number }>;

/**
 * A marker is needed only while its instance may still retry the change: at
 * most ETCD_TIMEOUT (1 min at most). Ten minutes leaves room for clock skew;
 * what is older is dropped at the next change, so instances that come and go
 * leave nothing behind.
 */
const MARKER_LIFETIME_MS = 10 * 60_000;

export function parseMarkers(value: KeyValue | undefined): Markers {
  if (value?.present !== true) return new Map();
  try {
    const document: unknown = JSON.parse(value.text);
    if (typeof document !== "object" || document === null || Array.isArray(document)) return new Map();
    const markers = new Map<string, { commit: string; at: number }>();
    for (const [instance, marker] of Object.entries(document)) {
      const { commit, at } = (marker ?? {}) as { commit?: unknown; at?: unknown };
      if (typeof commit === "string" && typeof at === "string") markers.set(instance, { commit, at: Date.parse(at) });
    }
    return markers;
  } catch {
    return new Map();
  }
}

/** `markers` with this instance's newest commit, and without the ones too old to matter. */
export function serializeMarkers(markers: Markers, instance: string, commit: string, now: number): string {
  const kept = [...markers].filter(([other, marker]) => other !== instance && now - marker.at < MARKER_LIFETIME_MS);
  const document = Object.fromEntries([
    ...kept.map(([other, marker]) => [other, { commit: marker.commit, at: new Date(marker.at).toISOString() }] as const),
    [instance, { commit, at: new Date(now).toISOString() }] as const,
  ]);
  return `${JSON.stringify(document)}\n`;
}
