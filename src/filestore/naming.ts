import { isValidName } from "../parse/values.js";
import type { AppEnv } from "../model.js";

/**
 * `<application>@<environment>.json`. Names cannot contain `@`, so the split is
 * unambiguous, and Prometheus shows this name to users as `__meta_filepath`.
 */
export function fileNameOf({ application, environment }: AppEnv): string {
  return `${application}@${environment}.json`;
}

export function appEnvOfFileName(fileName: string): AppEnv | undefined {
  const match = /^([^@/]+)@([^@/]+)\.json$/.exec(fileName);
  if (match === null) return undefined;
  const [, application = "", environment = ""] = match;
  return isValidName(application) && isValidName(environment) ? { application, environment } : undefined;
}

/** The application/environment of a key made by appEnvKey (`<application>@<environment>`). */
export function appEnvOfKey(key: string): AppEnv | undefined {
  return appEnvOfFileName(`${key}.json`);
}

/**
 * `<application>@<environment>.expires`: the deadlines of the group's expiring
 * targets (SPEC §10), beside its file. Never ends in `.json`, so Prometheus'
 * `*.json` glob never reads it.
 */
export function deadlinesFileNameOf({ application, environment }: AppEnv): string {
  return `${application}@${environment}.expires`;
}

export function appEnvOfDeadlinesFileName(fileName: string): AppEnv | undefined {
  return fileName.endsWith(".expires") ? appEnvOfFileName(`${fileName.slice(0, -".expires".length)}.json`) : undefined;
}

/**
 * atomic-write.ts writes `<file>.<uint32>` (the pattern write-file-atomic uses)
 * beside the target and renames it.
 * After a crash such a file is ours to remove; it never ends in `.json`, so
 * Prometheus' `*.json` glob never reads one.
 */
export function isLeftoverTempFile(fileName: string): boolean {
  const match = /^(.+)\.[0-9]+$/.exec(fileName);
  return match?.[1] !== undefined && (appEnvOfFileName(match[1]) !== undefined || appEnvOfDeadlinesFileName(match[1]) !== undefined);
}
