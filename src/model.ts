/**
 * Keys from clients. Applications, environments, targets, label names and
 * header values are strings a client chose, and `constructor`, `toString` and
 * `__proto__` are valid ones. Such a string is only ever a key of a `Map`, or
 * of a plain object that is built with `Object.fromEntries` (or spread, or
 * JSON.parse, which define their keys) and read with `Object.entries` or
 * `own`: never `object[key]`, never `for…in`, never `key in object`. On an
 * ordinary object `expires["constructor"]` finds `Object` and
 * `labels["__proto__"] = "x"` is silently dropped. The lint rule
 * eslint/client-keys.js holds src/ and ui/ to this.
 */
export function own<T>(object: Readonly<Record<string, T>>, key: string): T | undefined {
  // eslint-disable-next-line local/client-keys -- the one read of a client key on an object, behind Object.hasOwn
  return Object.hasOwn(object, key) ? object[key] : undefined;
}

/** One application/environment, as the API addresses it. */
export interface AppEnv {
  readonly application: string;
  readonly environment: string;
}

/**
 * What a group is for: targets Prometheus scrapes, or URLs and hosts it probes
 * through blackbox_exporter. A second kind of group, not a second service: the
 * kind decides the file's folder and the target grammar, nothing else.
 */
export type Kind = "targets" | "probes";

/** Both kinds, scrape targets first: the order of every listing by kind. */
export const KINDS: readonly Kind[] = ["targets", "probes"];

/** One group the registry keeps: an application/environment and its kind. */
export interface GroupId extends AppEnv {
  readonly kind: Kind;
}

/**
 * The group's key, and the stem of its file names in the directory (and of its
 * etcd keys): `<application>@<environment>` for targets, `probes/<application>@<environment>`
 * for probes. Names cannot contain `@` or `/`, so it reads back unambiguously.
 */
export function keyOf({ kind, application, environment }: GroupId): string {
  return kind === "probes" ? `probes/${application}@${environment}` : `${application}@${environment}`;
}

/** A key of keyOf back, unchecked: the names are whatever stands around the `@`. */
export function idOfKey(key: string): GroupId | undefined {
  const kind: Kind = key.startsWith("probes/") ? "probes" : "targets";
  const stem = kind === "probes" ? key.slice("probes/".length) : key;
  const at = stem.indexOf("@");
  if (at <= 0 || at !== stem.lastIndexOf("@") || at === stem.length - 1 || stem.includes("/")) return undefined;
  return { kind, application: stem.slice(0, at), environment: stem.slice(at + 1) };
}

/** Label name → value, as Prometheus reads it from a file: a plain object (read it with `own`). */
export type Labels = Readonly<Record<string, string>>;

/** A file_sd target group, exactly as Prometheus reads it. */
export interface TargetGroup {
  readonly targets: readonly string[];
  readonly labels: Labels;
}

/**
 * When targets expire: target → deadline in milliseconds since the epoch. A
 * target of the group that is not listed is permanent; a listed target that
 * is not in the group means nothing.
 */
export type Deadlines = ReadonlyMap<string, number>;

/** What the registry keeps for one application/environment: the group Prometheus reads, and its deadlines. */
export interface Registration {
  readonly group: TargetGroup;
  readonly expires: Deadlines;
}

export const NO_DEADLINES: Deadlines = new Map();

/** What a request body carries once parsed: either part may be absent. */
export interface Change {
  readonly targets?: readonly string[];
  readonly labels?: Labels;
}


/** Only the deadlines of `targets` (the group's): a deadline of a target that left means nothing. */
export function deadlinesOf(expires: Deadlines, targets: readonly string[]): Deadlines {
  let kept: Map<string, number> | undefined;
  for (const target of targets) {
    const deadline = expires.get(target);
    if (deadline !== undefined) (kept ??= new Map()).set(target, deadline);
  }
  return kept ?? NO_DEADLINES;
}
