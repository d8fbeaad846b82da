import { readFile } from "node:fs/promises";
import { join, resolve } from "node:path";
import type { Namespace } from "etcd3";
import type { EtcdConfig } from "../config.js";
import { DeadlineError, describeEtcdError } from "../etcdstore/client.js";
import { importOne } from "../etcdstore/import.js";
import { writeFileAtomically } from "../directory/atomic-write.js";
import { DirectorySync } from "../directory/directory-sync.js";
import { fileNameOf } from "../directory/naming.js";
import { keyOf, type AppEnv } from "../model.js";

/** Where imported groups go: this service's directory (file mode), or etcd (ETCD_ENDPOINTS). */
export interface Destination {
  /** For the summary: `directory /var/lib/file-sd-writer`, `etcd http://etcd-1:2379 under /file-sd-writer/`. */
  readonly description: string;
  /** Adds the group unless the pair already has one; the same bytes count as already there. */
  add(appEnv: AppEnv, text: string): Promise<"imported" | "unchanged" | "exists">;
}

/**
 * The service's directory: `<application>@<environment>.json`, written with the service's own
 * atomic writer (temporary file, fsync, rename) and the directory fsync'd before the line that
 * says so, so an imported group survives a power cut. A running service on the directory picks
 * the new file up through its watch. The check for an existing file and the rename are two steps:
 * import while nothing else registers those pairs (docs/target-eye.md).
 */
export function intoDirectory(directory: string): Destination {
  const sync = new DirectorySync(resolve(directory));
  return {
    description: `directory ${resolve(directory)}`,
    async add(appEnv, text) {
      const path = join(directory, fileNameOf({ kind: "targets", ...appEnv }));
      const existing = await readFile(path, "utf8").catch((error: NodeJS.ErrnoException) => {
        if (error.code === "ENOENT") return undefined;
        throw error;
      });
      if (existing !== undefined) return existing === text ? "unchanged" : "exists";
      await writeFileAtomically(path, text, { bits: 0o644, umaskStripsBits: true });
      await sync.sync();
      return "imported";
    },
  };
}

/**
 * etcd: the import's own transaction (src/etcdstore/import.ts, importOne), which compares
 * what it read, never overwrites a group etcd holds, and writes the bytes the service would.
 * No deadlines: Target-eye had no `?ttl=`.
 */
export function intoEtcd(namespace: Namespace, config: EtcdConfig): Destination {
  return {
    description: `etcd ${config.endpoints.join(",")} under ${config.prefix}`,
    async add(appEnv, text) {
      const result = await importOne(namespace, config, keyOf({ kind: "targets", ...appEnv }), { group: text, expires: undefined }, false);
      if (result === "overwritten") throw new Error("overwrote a group, which an import without --overwrite never does: a bug");
      return result;
    },
  };
}

/** etcd did not answer at all: the next file would only wait as long again. */
export function isUnanswered(error: unknown): boolean {
  return error instanceof DeadlineError || /UNAVAILABLE|DEADLINE_EXCEEDED|every endpoint failed/.test(describeEtcdError(error));
}
