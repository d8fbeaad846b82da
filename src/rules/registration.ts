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

/** Up to this many targets named, a heartbeat looks each up in the group's list rather than build a set of it. */
const FEW = 8;

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
  const labels = change.labels;
  const labelsChange =
    labels !== undefined && (Object.keys(labels).length === 0 || current === undefined || Object.entries(labels).some(([name, value]) => own(current.group.labels, name) !== value));
  // applyPost checks the list (empty, duplicates) even when every target is a renewal.
  const duplicateCheck = change.targets.length === 0 || new Set(change.targets).size !== change.targets.length;
  if (current !== undefined && !labelsChange && !duplicateCheck && change.targets.length <= FEW && change.targets.every((target) => current.expires.has(target) && current.group.targets.includes(target))) {
    // A heartbeat (a fleet's every request): each named target is registered and already expires, so
    // the group stays as it is, and only their deadlines move (in the group's order still).
    return { group: current.group, expires: withNamed(current.expires, change.targets, timing) };
  }
  const registered = new Set(current?.group.targets ?? []);
  const added = change.targets.filter((target) => !registered.has(target));
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

/** How often a group's renewals acknowledged from memory are persisted: one journal append for every group a second (file mode), one etcd transaction per group (etcd mode, with the default slack). */
export const RENEWAL_FLUSH_MS = 1000;

/**
 * etcd mode's interval for a RENEWAL_SLACK: a quarter of it, from 1 s to 10 s.
 * Each flush rewrites the group's whole deadlines key (about 6 kB for 100
 * targets) on every member, so with a slack made for hosts that renew every
 * 20 s a flush a second would be most of what etcd can write here (BENCHMARKS.md).
 * A host renewing every `p` seconds stays answered from memory while `p` plus
 * the interval is at most the slack: with a quarter, `p` up to three quarters of it.
 */
export function etcdFlushIntervalMs(slackMs: number): number {
  return Math.min(10_000, Math.max(RENEWAL_FLUSH_MS, Math.floor(slackMs / 4)));
}

/**
 * The default of RENEWAL_SLACK (src/config.ts).
 * How far a renewal acknowledged from memory may move a deadline past the one
 * persisted (the deadlines file, or etcd). After a crash the persisted
 * deadlines are all that is left, and each is restored RENEWAL_SLACK_MS later
 * (file mode) or expired only RENEWAL_SLACK_MS + a margin after it (etcd
 * mode), so no renewal that was lost can have promised more: that is what
 * makes a ttl a lower bound across crashes. Two intervals: the persisted value
 * lags memory by up to one interval, and a renewer as fast as the interval
 * moves its deadline by one more.
 */
export const RENEWAL_SLACK_MS = 2 * RENEWAL_FLUSH_MS;

/**
 * etcd mode expires a target only this long after its deadline in etcd. No
 * instance answers a renewal from memory that moves a deadline more than
 * RENEWAL_SLACK_MS past etcd's (coveredBy), so whatever an instance has not
 * committed yet, or lost in a crash, promised no more than that wait covers:
 * a ttl stays a lower bound. The second is for clocks and the transaction.
 * docs/heartbeats.md.
 */
export const EXPIRY_GRACE_MS = expiryGraceMs(RENEWAL_SLACK_MS);

/** The grace for a given slack (RENEWAL_SLACK): the slack, and a second for the transaction. */
export function expiryGraceMs(slackMs: number): number {
  return slackMs + 1000;
}

/**
 * A renewal: the same group (the same targets in the same order, the same
 * labels), the same targets with deadlines, none earlier, at least one later.
 * Anything else (a target added or removed, a label, a ttl given or taken
 * away) is a change to make durable before its answer.
 */
export function isRenewal(before: Registration | undefined, after: Registration | null): boolean {
  if (before === undefined || after === null || before === after) return false;
  if (!sameGroup(before, after)) return false;
  if (before.expires.size !== after.expires.size) return false;
  let later = false;
  for (const [target, deadline] of after.expires) {
    const was = before.expires.get(target);
    if (was === undefined || deadline < was) return false;
    if (deadline > was) later = true;
  }
  return later;
}

function sameGroup(before: Registration, after: Registration): boolean {
  if (before.group === after.group) return true;
  const [a, b] = [before.group, after.group];
  if (a.targets.length !== b.targets.length || a.targets.some((target, index) => b.targets[index] !== target)) return false;
  const names = Object.keys(a.labels);
  return names.length === Object.keys(b.labels).length && names.every((name) => Object.hasOwn(b.labels, name) && own(b.labels, name) === own(a.labels, name));
}

/**
 * Whether every deadline of `expires` is covered by the persisted ones: at
 * most `slackMs` past the persisted deadline of its target (a target without
 * a persisted deadline is not covered). A renewal is acknowledged from memory
 * only when its result is covered.
 */
export function coveredBy(expires: Deadlines, persisted: Deadlines, slackMs: number): boolean {
  for (const [target, deadline] of expires) {
    const was = persisted.get(target);
    if (was === undefined || deadline > was + slackMs) return false;
  }
  return true;
}
