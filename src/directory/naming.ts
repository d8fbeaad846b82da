import { keyOf, KINDS, type GroupId, type Kind } from "../model.js";
import { isValidName, isValidPair } from "../parse/values.js";

/**
 * The names of a group's files in FILE_SD_DIRECTORY. Scrape groups are
 * `<application>@<environment>.json` at the top, probe groups the same names
 * in `probes/`, so the scrape job's `*.json` glob never reads a URL as an
 * address. Names cannot contain `@` or `/`, so the split is unambiguous, and
 * Prometheus shows the path to users as `__meta_filepath`.
 */

/** The folder of each kind, relative to the directory. */
export const FOLDERS: Readonly<Record<Kind, string>> = { targets: "", probes: "probes" };
export { KINDS };

/** `<application>@<environment>.json`, or `probes/…` : the path Prometheus reads, relative to the directory. */
export function fileNameOf(id: GroupId): string {
  return `${keyOf(id)}.json`;
}

/**
 * `<application>@<environment>.expires`: the deadlines of the group's expiring
 * targets, beside its file. Never ends in `.json`, so Prometheus' `*.json`
 * glob never reads it.
 */
export function deadlinesFileNameOf(id: GroupId): string {
  return `${keyOf(id)}.expires`;
}

/**
 * The group a name in the folder of `kind` belongs to, when it is a group file of ours: names the
 * API accepts, so that every group the service loads is one it can change and remove.
 */
export function idOfFileName(kind: Kind, fileName: string): GroupId | undefined {
  const match = /^([^@/]+)@([^@/]+)\.json$/.exec(fileName);
  if (match === null) return undefined;
  const [, application = "", environment = ""] = match;
  return isValidPair(application, environment) ? { kind, application, environment } : undefined;
}

/**
 * A name shaped like ours whose pair is over the length limit: registered by an earlier version
 * (which took up to 238 characters), left as it is and not managed. The scan says so.
 */
export function isOverLongFileName(fileName: string): boolean {
  const match = /^([^@/]+)@([^@/]+)\.json$/.exec(fileName);
  const [, application = "", environment = ""] = match ?? [];
  return match !== null && isValidName(application) && isValidName(environment) && !isValidPair(application, environment);
}

/** The group a deadlines file in the folder of `kind` belongs to. */
export function idOfDeadlinesFileName(kind: Kind, fileName: string): GroupId | undefined {
  return fileName.endsWith(".expires") ? idOfFileName(kind, `${fileName.slice(0, -".expires".length)}.json`) : undefined;
}

/**
 * atomic-write.ts writes `<file>.<uint32>` (the pattern write-file-atomic uses)
 * beside the target and renames it. After a crash such a file is ours to
 * remove; it never ends in `.json`, so Prometheus' `*.json` glob never reads one.
 */
export function isLeftoverTempFile(kind: Kind, fileName: string): boolean {
  const match = /^(.+)\.[0-9]+$/.exec(fileName);
  return match?.[1] !== undefined && (idOfFileName(kind, match[1]) !== undefined || idOfDeadlinesFileName(kind, match[1]) !== undefined);
}
