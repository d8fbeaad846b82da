import { RuleError } from "../errors.js";
import { own, type AppEnv, type Change, type Kind, type Labels, type TargetGroup } from "../model.js";
import { parseDuration } from "../parse/duration.js";

/**
 * docs/api.md as pure functions: (current group, request) → new group, or a RuleError
 * with the message a curl user will see. No IO here; the file store applies the
 * result. `undefined` means nothing is registered; `null` means "delete the group".
 */

const DEFAULT_LABELS = ["job", "env"] as const;

/**
 * What the rules address: an application/environment and, for a probe group, its kind. The
 * rules are the same for both kinds; only the messages say which group they mean.
 */
export type Addressed = AppEnv & { readonly kind?: Kind };

/**
 * `job` and `env` first (defaulting to application and environment), then the rest in order;
 * with scrape settings Prometheus would take (checkScrapeSettings).
 */
export function withDefaults(labels: Labels, { application, environment }: AppEnv): Labels {
  const rest = Object.entries(labels).filter(([name]) => name !== "job" && name !== "env");
  const complete = Object.fromEntries([
    ["job", own(labels, "job") ?? application],
    ["env", own(labels, "env") ?? environment],
    ...rest,
  ]);
  checkScrapeSettings(complete);
  return complete;
}

/**
 * `__scrape_interval__` and `__scrape_timeout__` as Prometheus reads them: durations, and a
 * timeout no longer than the interval. Prometheus drops a target that breaks this and says so
 * only in its log, where the status endpoint shows nothing but `missing`.
 */
function checkScrapeSettings(labels: Labels): void {
  const durationOf = (name: "__scrape_interval__" | "__scrape_timeout__"): number | undefined => {
    const given = own(labels, name);
    if (given === undefined) return undefined;
    const ms = parseDuration(given);
    if (ms === undefined || ms === 0 || !Number.isFinite(ms)) {
      throw new RuleError(400, `label ${JSON.stringify(name)} is ${JSON.stringify(given)}: give a Prometheus duration such as 15s or 1m`);
    }
    return ms;
  };
  const interval = durationOf("__scrape_interval__");
  const timeout = durationOf("__scrape_timeout__");
  if (interval !== undefined && timeout !== undefined && timeout > interval) {
    throw new RuleError(
      400,
      `__scrape_timeout__ (${own(labels, "__scrape_timeout__")}) is longer than __scrape_interval__ (${own(labels, "__scrape_interval__")}): ` +
        "Prometheus would drop the target; make the timeout at most the interval",
    );
  }
}

function describe({ application, environment, kind }: Addressed): string {
  return kind === "probes" ? `the probes of ${application}/${environment}` : `${application}/${environment}`;
}

function requireSomething(method: string, change: Change): void {
  if (change.targets === undefined && change.labels === undefined) {
    throw new RuleError(400, `${method} needs "targets", "labels" or both in the body`);
  }
}

function requireDistinctTargets(method: string, targets: readonly string[]): void {
  if (targets.length === 0) {
    throw new RuleError(400, `${method} with "targets" needs at least one target`);
  }
  const seen = new Set<string>();
  const duplicates = targets.filter((target) => seen.size === seen.add(target).size);
  if (duplicates.length > 0) {
    throw new RuleError(400, `target ${JSON.stringify(duplicates[0])} is listed twice; list each target once`);
  }
}

function requireTargetsToCreate(method: string, appEnv: Addressed): never {
  throw new RuleError(
    400,
    `nothing is registered for ${describe(appEnv)} yet: a ${method} that creates it needs "targets"`,
  );
}

function quoteList(items: readonly string[]): string {
  return items.map((item) => JSON.stringify(item)).join(", ");
}

/** PUT replaces the parts it names. */
export function applyPut(current: TargetGroup | undefined, change: Change, appEnv: Addressed): TargetGroup {
  requireSomething("PUT", change);
  if (change.targets !== undefined) requireDistinctTargets("PUT", change.targets);
  if (current === undefined && change.targets === undefined) requireTargetsToCreate("PUT", appEnv);

  const targets = change.targets ?? current?.targets ?? [];
  const labels = change.labels ?? current?.labels ?? {};
  return { targets: [...targets], labels: withDefaults(labels, appEnv) };
}

/** POST adds targets and adds or replaces labels; it never replaces a target. */
export function applyPost(current: TargetGroup | undefined, change: Change, appEnv: Addressed): TargetGroup {
  requireSomething("POST", change);
  if (current === undefined && change.targets === undefined) requireTargetsToCreate("POST", appEnv);

  let targets = current?.targets ?? [];
  if (change.targets !== undefined) {
    requireDistinctTargets("POST", change.targets);
    const registered = new Set(targets);
    const existing = change.targets.filter((target) => registered.has(target));
    if (existing.length > 0) {
      throw new RuleError(
        400,
        `already registered for ${describe(appEnv)}: ${quoteList(existing)}; POST only adds new targets (PUT replaces the list)`,
      );
    }
    targets = [...targets, ...change.targets];
  }

  const currentLabels = current === undefined ? withDefaults({}, appEnv) : current.labels;
  let labels = currentLabels;
  if (change.labels !== undefined) {
    const given = Object.entries(change.labels);
    if (given.length === 0) {
      throw new RuleError(400, 'POST with "labels" needs at least one label');
    }
    if (current !== undefined && given.every(([name, value]) => own(currentLabels, name) === value)) {
      throw new RuleError(400, `none of the labels changes anything for ${describe(appEnv)}: they already have these values`);
    }
    labels = { ...currentLabels, ...change.labels };
  }
  return { targets: [...targets], labels: withDefaults(labels, appEnv) };
}

/**
 * DELETE removes the named targets and labels, or the whole group when the body
 * names neither, or when it removes every target and every label but job and env.
 */
export function applyDelete(current: TargetGroup | undefined, change: Change, appEnv: Addressed): TargetGroup | null {
  if (current === undefined) {
    throw new RuleError(404, `nothing is registered for ${describe(appEnv)}`);
  }
  if (change.targets === undefined && change.labels === undefined) return null;

  let targets = current.targets;
  if (change.targets !== undefined) {
    requireDistinctTargets("DELETE", change.targets);
    const registered = new Set(targets);
    const unknown = change.targets.filter((target) => !registered.has(target));
    if (unknown.length > 0) {
      throw new RuleError(400, `not registered for ${describe(appEnv)}: ${quoteList(unknown)}`);
    }
    const removed = new Set(change.targets);
    targets = targets.filter((target) => !removed.has(target));
  }

  let labels = current.labels;
  if (change.labels !== undefined) {
    const given = Object.entries(change.labels);
    if (given.length === 0) {
      throw new RuleError(400, 'DELETE with "labels" needs at least one label');
    }
    for (const [name, value] of given) {
      if ((DEFAULT_LABELS as readonly string[]).includes(name)) {
        throw new RuleError(400, `label ${JSON.stringify(name)} cannot be deleted; PUT or POST another value instead`);
      }
      const registered = own(labels, name);
      if (registered === undefined) {
        throw new RuleError(400, `label ${JSON.stringify(name)} is not registered for ${describe(appEnv)}`);
      }
      if (registered !== value) {
        throw new RuleError(
          400,
          `label ${JSON.stringify(name)} has the value ${JSON.stringify(registered)}, not ${JSON.stringify(value)}; ` +
            "DELETE removes a label only when the value matches",
        );
      }
    }
    labels = Object.fromEntries(Object.entries(labels).filter(([name]) => !Object.hasOwn(change.labels ?? {}, name)));
  }

  if (targets.length === 0) {
    const onlyDefaults = Object.keys(labels).every((name) => (DEFAULT_LABELS as readonly string[]).includes(name));
    if (!onlyDefaults) {
      throw new RuleError(
        400,
        `this would remove every target of ${describe(appEnv)} but keep labels ` +
          `${quoteList(Object.keys(labels).filter((name) => !(DEFAULT_LABELS as readonly string[]).includes(name)))}: ` +
          "remove those labels in the same request, or DELETE with no body to remove the whole group",
      );
    }
    return null;
  }
  return { targets: [...targets], labels: withDefaults(labels, appEnv) };
}
