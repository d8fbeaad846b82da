import { mkdirSync, writeFileSync } from "node:fs";
import { join } from "node:path";

/** Names, targets and files the scenarios share. */

export interface Group {
  readonly targets: readonly string[];
  readonly labels: Readonly<Record<string, string>>;
}

export function applicationName(index: number): string {
  return `app-${String(index).padStart(5, "0")}`;
}

export function targetsOf(application: number, count: number): string[] {
  return Array.from({ length: count }, (_, index) => `host-${application}-${index}.example.net:9100`);
}

/** The bytes the service writes for a group (mirrors src/directory/group-file.ts serializeGroup). */
export function groupFileText(group: Group): string {
  return `${JSON.stringify([{ targets: group.targets, labels: group.labels }], null, 2)}\n`;
}

/** A `curl -d` body replacing the targets and setting labels. */
export function formBody(targets: readonly string[], labels: Readonly<Record<string, string>>): string {
  return new URLSearchParams([["targets", targets.join(",")], ...Object.entries(labels)]).toString();
}

/**
 * `count` groups of `targetsPerGroup` targets, written straight into the
 * directory as if a previous run of the service had left them there.
 */
export function writeGroups(directory: string, count: number, targetsPerGroup: number): void {
  mkdirSync(directory, { recursive: true });
  for (let index = 0; index < count; index++) {
    const application = applicationName(index);
    const group: Group = {
      targets: targetsOf(index, targetsPerGroup),
      labels: { job: application, env: "prod", team: `team-${index % 37}` },
    };
    writeFileSync(join(directory, `${application}@prod.json`), groupFileText(group));
  }
}
