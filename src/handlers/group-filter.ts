import type { Context } from "koa";
import { RuleError } from "../errors.js";
import type { Kind } from "../model.js";
import type { Entry } from "../store.js";
import { isValidName } from "../parse/values.js";

/**
 * `?application=` and `?environment=` for the index and http_sd: exact names,
 * each may be repeated to mean "any of these". Absent means no filter.
 */
function groupFilter(ctx: Context): (entry: Entry) => boolean {
  const applications = namesOf(ctx, "application");
  const environments = namesOf(ctx, "environment");
  return ({ id }) =>
    (applications === undefined || applications.has(id.application)) && (environments === undefined || environments.has(id.environment));
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

/** `?kind=targets` (the default) or `?kind=probes`: which kind of group an endpoint lists. */
export function kindOf(ctx: Context): Kind {
  const given = ctx.query.kind;
  if (given === undefined || given === "targets") return "targets";
  if (given === "probes") return "probes";
  throw new RuleError(
    400,
    `?kind=${JSON.stringify(given)} is not a kind of group: give ?kind=targets (scrape targets, the default) or ?kind=probes (blackbox_exporter's), once`,
    {},
    "bad_request",
  );
}

/** The registered groups of `kind` a request's filter selects, in the store's order. */
export function selectedEntries(ctx: Context, entries: Iterable<Entry>, kind: Kind = "targets"): Entry[] {
  const keep = groupFilter(ctx);
  const kept: Entry[] = [];
  for (const entry of entries) if (entry.id.kind === kind && keep(entry)) kept.push(entry);
  return kept;
}
