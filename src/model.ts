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

/** One application/environment: the unit the API addresses and the store keeps one file for. */
export interface AppEnv {
  readonly application: string;
  readonly environment: string;
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

export function appEnvKey({ application, environment }: AppEnv): string {
  return `${application}@${environment}`;
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
