import { readdir, readFile } from "node:fs/promises";
import { join } from "node:path";
import type { Namespace } from "etcd3";
import type { EtcdConfig } from "../config.js";
import { parseGroupFile, serializeGroup } from "../filestore/group-file.js";
import { appEnvOfFileName } from "../filestore/naming.js";
import { beforeDeadline, describeEtcdError, GROUPS } from "./client.js";

export type ImportResult = "imported" | "overwritten" | "unchanged" | "empty" | "exists" | "invalid" | "failed";

export interface ImportSummary {
  readonly counts: Readonly<Record<ImportResult, number>>;
  /** Every group is in etcd as the directory has it (or the file registered nothing). */
  readonly allIn: boolean;
}

/**
 * Copies every managed file of `directory` into etcd (SPEC §9, moving from one
 * instance to several). A key that exists is left alone unless `overwrite`:
 * the check and the write are one transaction, so a group another instance
 * registers meanwhile is never overwritten by accident. Reports one line per
 * group through `print`.
 */
export async function importDirectory(options: {
  readonly directory: string;
  readonly namespace: Namespace;
  readonly config: EtcdConfig;
  readonly overwrite: boolean;
  readonly print: (line: string) => void;
}): Promise<ImportSummary> {
  const { directory, namespace, config, overwrite, print } = options;
  const counts: Record<ImportResult, number> = { imported: 0, overwritten: 0, unchanged: 0, empty: 0, exists: 0, invalid: 0, failed: 0 };
  const names = (await readdir(directory)).filter((name) => appEnvOfFileName(name) !== undefined).sort();
  for (const name of names) {
    const key = GROUPS + name.slice(0, -".json".length);
    let text: string;
    try {
      const group = parseGroupFile(await readFile(join(directory, name), "utf8"));
      if (group === undefined) {
        counts.empty++;
        print(`empty      ${name}: registers nothing; nothing to import`);
        continue;
      }
      // The value is what this service would have written: the same bytes on every instance.
      text = serializeGroup(group);
    } catch (error) {
      counts.invalid++;
      print(`invalid    ${name}: ${(error as Error).message}; not imported`);
      continue;
    }
    try {
      const deadline = Date.now() + config.timeoutMs;
      const created = await beforeDeadline(deadline, (grpcDeadline) =>
        namespace.if(key, "Create", "==", 0).then(namespace.put(key).value(text)).else(namespace.get(key)).options({ deadline: grpcDeadline }).commit(),
      );
      if (created.succeeded) {
        counts.imported++;
        print(`imported   ${name}`);
        continue;
      }
      const held = created.responses[0]?.response_range?.kvs[0];
      const existing = held?.value.toString("utf8");
      if (held !== undefined && registersNothing(existing)) {
        // The key of a deleted group: nothing is registered, so this is not an overwrite.
        const replaced = await beforeDeadline(deadline, (grpcDeadline) =>
          namespace.if(key, "Mod", "==", Number(held.mod_revision)).then(namespace.put(key).value(text)).options({ deadline: grpcDeadline }).commit(),
        );
        if (replaced.succeeded) {
          counts.imported++;
          print(`imported   ${name}`);
          continue;
        }
      }
      if (existing === text) {
        counts.unchanged++;
        print(`unchanged  ${name}: etcd already holds the same group`);
      } else if (overwrite) {
        await beforeDeadline(deadline, (grpcDeadline) => namespace.put(key).value(text).options({ deadline: grpcDeadline }).exec());
        counts.overwritten++;
        print(`overwrote  ${name}: etcd held a different group`);
      } else {
        counts.exists++;
        print(`skipped    ${name}: etcd already holds a different group for it; --overwrite replaces it`);
      }
    } catch (error) {
      counts.failed++;
      print(`failed     ${name}: ${describeEtcdError(error)}`);
    }
  }
  const summary = `${names.length} groups in ${directory}: ${counts.imported} imported, ${counts.overwritten} overwritten, ` +
    `${counts.unchanged} already in etcd, ${counts.empty} empty, ${counts.exists} skipped (different in etcd), ` +
    `${counts.invalid} invalid, ${counts.failed} failed`;
  print(summary);
  return { counts, allIn: counts.exists + counts.invalid + counts.failed === 0 };
}

/** A key that holds `[]` (a deleted group's key) or garbage registers nothing. */
function registersNothing(text: string | undefined): boolean {
  if (text === undefined) return true;
  try {
    return parseGroupFile(text) === undefined;
  } catch {
    return false;
  }
}
