import { RuleError } from "../errors.js";
import { deadlinesOf, NO_DEADLINES, own, type Change, type Deadlines, type Registration } from "../model.js";
import { applyDelete, applyPost, applyPut, type Addressed } from "./rules.js";

/**
 * `?ttl=` (docs/api.md) on top of the method rules: the group rules of rules.ts decide the group, these
 * decide the deadlines. Pure: the time comes in as `now`, so property tests can
 * drive a clock. A deadline is kept only for a target of the group.
 */

/** When the request was applied, and its `?ttl=` in milliseconds (undefined: no ttl). */
export interface Timing {
  readonly now: number;
  readonly ttlMs?: number;
}

function requireTargetsForTtl(method: string, change: Change, ttlMs: number | undefined): void {
  if (ttlMs !== undefined && change.targets === undefined) {
    throw new RuleError(400, `${method} with ?ttl= needs "targets": the ttl applies to the targets the request names`);
  }
}

/** The named targets get `now + ttl`, or become permanent without a ttl; the rest keep theirs. */
function withNamed(expires: Deadlines, targets: readonly string[], { now, ttlMs }: Timing): Deadlines {
  const next = new Map(expires);
  for (const target of targets) {
    if (ttlMs === undefined) next.delete(target);
    else next.set(target, now + ttlMs);
  }
  return next;
}

/** PUT: a new target list replaces the deadlines too; labels alone leave them as they are. */
export function putRegistration(current: Registration | undefined, change: Change, appEnv: Addressed, timing: Timing): Registration {
  requireTargetsForTtl("PUT", change, timing.ttlMs);
  const group = applyPut(current?.group, change, appEnv);
  const expires = change.targets === undefined ? (current?.expires ?? NO_DEADLINES) : deadlinesOf(withNamed(NO_DEADLINES, change.targets, timing), group.targets);
  return { group, expires };
}

/**
 * POST as in rules.ts; with a ttl it is a heartbeat: targets already registered are
 * renewed instead of refused, new ones are added, and labels that already hold
 * the values given are not an error (the renewal is the change).
 */
export function postRegistration(current: Registration | undefined, change: Change, appEnv: Addressed, timing: Timing): Registration {
  requireTargetsForTtl("POST", change, timing.ttlMs);
  if (timing.ttlMs === undefined || change.targets === undefined) {
    const group = applyPost(current?.group, change, appEnv);
    const expires = change.targets === undefined ? (current?.expires ?? NO_DEADLINES) : withNamed(current?.expires ?? NO_DEADLINES, change.targets, timing);
    return { group, expires: deadlinesOf(expires, group.targets) };
  }
  const registered = new Set(current?.group.targets ?? []);
  const added = change.targets.filter((target) => !registered.has(target));
  const labels = change.labels;
  const labelsChange =
    labels !== undefined && (Object.keys(labels).length === 0 || current === undefined || Object.entries(labels).some(([name, value]) => own(current.group.labels, name) !== value));
  // applyPost checks the list (empty, duplicates) even when every target is a renewal.
  const duplicateCheck = change.targets.length === 0 || new Set(change.targets).size !== change.targets.length;
  const group =
    added.length > 0 || labelsChange || duplicateCheck || current === undefined
      ? applyPost(current?.group, { targets: duplicateCheck ? change.targets : added.length > 0 ? added : undefined, labels: labelsChange ? labels : undefined }, appEnv)
      : current.group;
  return { group, expires: deadlinesOf(withNamed(current?.expires ?? NO_DEADLINES, change.targets, timing), group.targets) };
}

/** DELETE: the removed targets' deadlines go with them. */
export function deleteRegistration(current: Registration | undefined, change: Change, appEnv: Addressed): Registration | null {
  const group = applyDelete(current?.group, change, appEnv);
  if (group === null) return null;
  return { group, expires: deadlinesOf(current?.expires ?? NO_DEADLINES, group.targets) };
}

/**
 * Expiry: every target whose deadline is `now` or earlier is removed, as a
 * DELETE of those targets would, except that the last target going takes the
 * group with it whatever labels it has. `current` itself when nothing is due
 * (no change, nothing written); null when nothing remains.
 */
export function expireRegistration(current: Registration | undefined, now: number): Registration | null {
  if (current === undefined) return null;
  const due = new Set(current.group.targets.filter((target) => (current.expires.get(target) ?? Infinity) <= now));
  if (due.size === 0) return current;
  const targets = current.group.targets.filter((target) => !due.has(target));
  if (targets.length === 0) return null;
  return { group: { targets, labels: current.group.labels }, expires: deadlinesOf(current.expires, targets) };
}
