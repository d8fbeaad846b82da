import type { Deadlines, GroupId, Registration, TargetGroup } from "./model.js";

/**
 * The registry the handlers and the service endpoints talk to. Two
 * implementations, chosen once in src/server.ts from the config:
 * - src/filestore/store.ts: the directory is the registry (the default);
 * - src/etcdstore/etcd-store.ts: etcd is the registry and the directory is a
 *   view of it that this instance keeps in step (ETCD_ENDPOINTS).
 * Both write through src/directory/ (names, the atomic writer, the crash order, the watch).
 * The rules never know which one runs them: a change is a pure Mutation.
 */
export interface Store {
  /** What GET serves: the group as this instance last saw it committed. */
  get(id: GroupId): TargetGroup | undefined;
  /** Every registered group, of both kinds, in no particular order. */
  list(): Iterable<Entry>;
  readonly size: number;
  /**
   * Applies `mutation` to the current group, after every change to the same
   * application/environment queued before it; resolves once the result is
   * committed and in this instance's directory, rejects with the mutation's
   * RuleError or a server-side error (StoreError, StoreUnavailableError).
   */
  update(id: GroupId, mutation: Mutation): Promise<Outcome>;
  /** Resolves once every change queued so far has been answered. */
  idle(): Promise<void>;
}

/** What a registered application/environment looks like in memory. An Entry is never changed in place. */
export interface Entry {
  readonly id: GroupId;
  /** Its file, relative to the directory: `<application>@<environment>.json`, or in `probes/`. */
  readonly fileName: string;
  readonly group: TargetGroup;
  /** The deadlines of the group's expiring targets; empty when every target is permanent. */
  readonly expires: Deadlines;
  readonly changedAt: Date;
  /** The file's text: what this instance last read or wrote, or the value of the group's etcd key. */
  readonly text: string;
}

/** The state before and after one accepted change; `after` is null when the group was deleted. */
export interface Outcome {
  readonly before: Registration | undefined;
  readonly after: Registration | null;
}

/**
 * Computes the next registration from the current one, or throws to refuse (a
 * RuleError). `now` is the store's clock (ms since the epoch) when the change
 * is applied: time is an argument, so the rules stay pure. Must be pure: it
 * may run again (etcd mode, after a conflict). Returning `current` itself
 * means "no change": nothing is written.
 */
export type Mutation = (current: Registration | undefined, now: number) => Registration | null;

/** The earliest deadline of an entry, or undefined when all its targets are permanent. */
export function earliestDeadline(entry: Entry): number | undefined {
  let earliest: number | undefined;
  for (const deadline of entry.expires.values()) if (earliest === undefined || deadline < earliest) earliest = deadline;
  return earliest;
}

/** The order of every list the service answers: application, then environment, by code unit (not the locale's: the same on every machine). */
export function byName(a: Entry, b: Entry): number {
  return compare(a.id.application, b.id.application) || compare(a.id.environment, b.id.environment);
}

function compare(a: string, b: string): number {
  return a < b ? -1 : a > b ? 1 : 0;
}
