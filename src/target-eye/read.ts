import { createHash } from "node:crypto";
import { readdir, readFile } from "node:fs/promises";
import { join } from "node:path";
import { RuleError } from "../errors.js";
import { parseGroupFile, serializeGroup } from "../directory/group-file.js";
import { keyOf, own, type AppEnv, type TargetGroup } from "../model.js";
import { parseAppEnv } from "../parse/values.js";

/**
 * Target-eye (FlightAware's original of this API) keeps one file per
 * application/environment in its directory, named by `TargetConfig.filename`:
 * the hex MD5 of the UTF-8 bytes of the application and the environment
 * written one after the other, with nothing between them, and `.json`. The file
 * is `json.dumps([{"targets": [...], "labels": {...}}])`, and the labels always
 * hold `job` and `env`, the application and environment unless a request
 * overrode them. So a file's pair is read from those labels, and trusted only
 * when they hash to the file's name: an overridden label would otherwise move
 * a group to another application. docs/target-eye.md has the rest.
 */
export function targetEyeFileName({ application, environment }: AppEnv): string {
  return `${createHash("md5").update(`${application}${environment}`, "utf8").digest("hex")}.json`;
}

/** What one Target-eye file turned out to be. */
export type Identified =
  | { readonly kind: "group"; readonly file: string; readonly appEnv: AppEnv; readonly group: TargetGroup; readonly text: string; readonly notes: readonly string[] }
  | { readonly kind: "empty"; readonly file: string }
  | { readonly kind: "skipped"; readonly file: string; readonly reason: string }
  | { readonly kind: "invalid"; readonly file: string; readonly reason: string };

/**
 * Every `*.json` of a Target-eye directory (what Prometheus' glob reads there), by name.
 * `maps` gives the pair of a file whose labels do not name it: file name → pair.
 * Two files that would become the same group are both skipped: neither may win silently.
 */
export async function readTargetEyeDirectory(directory: string, maps: ReadonlyMap<string, AppEnv>): Promise<Identified[]> {
  const entries = await readdir(directory, { withFileTypes: true });
  const files = entries.filter((entry) => entry.isFile() && entry.name.endsWith(".json")).map((entry) => entry.name).sort();
  const identified: Identified[] = [];
  for (const file of files) identified.push(identify(file, await readFile(join(directory, file), "utf8"), maps.get(file)));

  const claimed = new Map<string, string[]>();
  for (const item of identified) {
    if (item.kind === "group") claimed.set(keyOf({ kind: "targets", ...item.appEnv }), [...(claimed.get(keyOf({ kind: "targets", ...item.appEnv })) ?? []), item.file]);
  }
  return identified.map((item) => {
    if (item.kind !== "group") return item;
    const others = (claimed.get(keyOf({ kind: "targets", ...item.appEnv })) ?? []).filter((file) => file !== item.file);
    if (others.length === 0) return item;
    return {
      kind: "skipped",
      file: item.file,
      reason: `${others.join(", ")} would be ${item.appEnv.application}/${item.appEnv.environment} too; map one of them elsewhere with --map FILE=APPLICATION/ENVIRONMENT`,
    };
  });
}

/** One file's text → its group and pair, or why it cannot be imported. */
export function identify(file: string, text: string, mapped: AppEnv | undefined): Identified {
  let document: unknown;
  try {
    document = JSON.parse(text);
  } catch (error) {
    return { kind: "invalid", file, reason: `not JSON (${(error as Error).message})` };
  }
  if (!Array.isArray(document) || document.length > 1) {
    return { kind: "invalid", file, reason: "not a list holding one target group, as Target-eye writes" };
  }
  if (document.length === 0) return { kind: "empty", file };
  const entry: unknown = document[0];
  if (typeof entry !== "object" || entry === null || Array.isArray(entry)) return { kind: "invalid", file, reason: "its target group is not a mapping" };
  const targets = own(entry as Record<string, unknown>, "targets");
  const labels = own(entry as Record<string, unknown>, "labels") ?? {};
  if (!Array.isArray(targets) || !targets.every((target) => typeof target === "string")) {
    return { kind: "invalid", file, reason: '"targets" is not a list of strings' };
  }
  if (typeof labels !== "object" || labels === null || Array.isArray(labels) || !Object.values(labels).every((value) => typeof value === "string")) {
    return { kind: "invalid", file, reason: '"labels" is not a mapping of strings' };
  }
  if (targets.length === 0) return { kind: "empty", file };
  const labelMap = new Map(Object.entries(labels as Record<string, string>));

  let appEnv: AppEnv;
  if (mapped !== undefined) {
    appEnv = mapped;
  } else {
    const [job, env] = [labelMap.get("job"), labelMap.get("env")];
    if (job === undefined || env === undefined) {
      return { kind: "skipped", file, reason: `it has no ${job === undefined ? "job" : "env"} label to take the pair from; give --map ${file}=APPLICATION/ENVIRONMENT` };
    }
    const expected = targetEyeFileName({ application: job, environment: env });
    if (expected !== file) {
      return {
        kind: "skipped",
        file,
        reason:
          `its name is not the MD5 of its labels job=${JSON.stringify(job)} env=${JSON.stringify(env)} (that would be ${expected}): ` +
          "a request overrode them, or someone put the file there by hand. " +
          `Give the application/environment it belongs to: --map ${file}=APPLICATION/ENVIRONMENT`,
      };
    }
    appEnv = { application: job, environment: env };
  }
  try {
    parseAppEnv(appEnv.application, appEnv.environment);
  } catch (error) {
    if (!(error instanceof RuleError)) throw error;
    return { kind: "skipped", file, reason: `${error.message}; give it a name this service accepts with --map ${file}=APPLICATION/ENVIRONMENT` };
  }

  // Target-eye's PUT never refused a repeated target; Prometheus scrapes it once anyway.
  const unique = [...new Set(targets as string[])];
  const notes = unique.length < targets.length ? [`${targets.length - unique.length} repeated target${targets.length - unique.length === 1 ? "" : "s"} listed once`] : [];
  // Every group carries job and env; a mapped file without them gets the pair's, as Target-eye's own default.
  if (!labelMap.has("job")) labelMap.set("job", appEnv.application);
  if (!labelMap.has("env")) labelMap.set("env", appEnv.environment);
  const group: TargetGroup = { targets: unique, labels: Object.fromEntries(labelMap) };
  const ours = serializeGroup(group);
  try {
    parseGroupFile(ours, "targets");
  } catch (error) {
    return { kind: "invalid", file, reason: `${(error as Error).message} (this service's rules are stricter than Target-eye's); fix the file, or register the group by hand` };
  }
  return { kind: "group", file, appEnv, group, text: ours, notes };
}
