import type { Context } from "koa";
import { RuleError } from "../errors.js";
import type { Entry } from "../filestore/store.js";
import { isValidName } from "../parse/values.js";

/**
 * `?application=` and `?environment=` for the index and http_sd: exact names,
 * each may be repeated to mean "any of these". Absent means no filter.
 */
export function groupFilter(ctx: Context): (entry: Entry) => boolean {
  const applications = namesOf(ctx, "application");
  const environments = namesOf(ctx, "environment");
  return ({ appEnv }) =>
    (applications === undefined || applications.has(appEnv.application)) &&
    (environments === undefined || environments.has(appEnv.environment));
}

export function isFiltered(ctx: Context): boolean {
  return ctx.query.application !== undefined || ctx.query.environment !== undefined;
}

function namesOf(ctx: Context, parameter: "application" | "environment"): ReadonlySet<string> | undefined {
  const given = ctx.query[parameter];
  if (given === undefined) return undefined;
  const names = typeof given === "string" ? [given] : given;
  for (const name of names) {
    if (!isValidName(name)) {
      throw new RuleError(
        400,
        `?${parameter}=${JSON.stringify(name)} is not a valid name: use 1-128 characters from [A-Za-z0-9_.-], ` +
          "starting with a letter, digit or underscore",
        {},
        "bad_name",
      );
    }
  }
  return new Set(names);
}

/** Registered groups that pass the filter, by application then environment (code-unit order, not locale). */
export function sortedEntries(entries: Iterable<Entry>, keep: (entry: Entry) => boolean): Entry[] {
  const kept: Entry[] = [];
  for (const entry of entries) if (keep(entry)) kept.push(entry);
  return kept.sort(
    (a, b) =>
      compare(a.appEnv.application, b.appEnv.application) || compare(a.appEnv.environment, b.appEnv.environment),
  );
}

function compare(a: string, b: string): number {
  return a < b ? -1 : a > b ? 1 : 0;
}
