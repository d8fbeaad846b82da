import { readdir, readFile } from "node:fs/promises";
import { join } from "node:path";
import type { Namespace } from "etcd3";
import type { EtcdConfig } from "../config.js";
import { parseDeadlines, serializeDeadlines } from "../directory/deadlines-file.js";
import { RenewalJournal, replay, type JournalRecord } from "../filestore/journal.js";
import { parseGroupFile, serializeGroup } from "../directory/group-file.js";
import { deadlinesFileNameOf, fileNameOf, FOLDERS, idOfFileName, KINDS } from "../directory/naming.js";
import { deadlinesOf, idOfKey, keyOf, NO_DEADLINES, type Deadlines, type GroupId, type Kind, type TargetGroup } from "../model.js";
import { beforeDeadline, describeEtcdError } from "./client.js";
import { absentAt, etcdKeyOf, GC, modRevisionOf, NO_DEADLINES_TEXT, valueOf, type KeyValue } from "./keys.js";

export type ImportResult = "imported" | "overwritten" | "unchanged" | "empty" | "expired" | "exists" | "invalid" | "failed";

export interface ImportSummary {
  readonly counts: Readonly<Record<ImportResult, number>>;
  /** Expiring targets whose deadlines went into etcd with them. */
  readonly deadlinesCarried: number;
  /** Targets whose deadline had passed: applied (left out), not imported. */
  readonly alreadyExpired: number;
  /** Every group is in etcd as the directory has it (or the file registered nothing). */
  readonly allIn: boolean;
}

/**
 * Copies every managed file of `directory` into etcd (moving from one instance
 * to several), each with its deadlines (`<application>@<environment>.expires`):
 * a target whose deadline has passed is left out, as the service would have
 * removed it, and a group whose every target expired is not imported. A group
 * etcd already holds is left alone unless `overwrite`. Each group is one
 * transaction that compares what it read, with the same rules as the service's
 * own changes (src/etcdstore/keys.ts), so a group another instance registers
 * meanwhile is never overwritten by accident. Reports one line per group.
 */
export async function importDirectory(options: {
  readonly directory: string;
  readonly namespace: Namespace;
  readonly config: EtcdConfig;
  readonly overwrite: boolean;
  readonly print: (line: string) => void;
  readonly now?: number;
}): Promise<ImportSummary> {
  const { directory, namespace, config, overwrite, print } = options;
  const now = options.now ?? Date.now();
  const counts: Record<ImportResult, number> = { imported: 0, overwritten: 0, unchanged: 0, empty: 0, expired: 0, exists: 0, invalid: 0, failed: 0 };
  let deadlinesCarried = 0;
  let alreadyExpired = 0;
  const ids = await groupFilesIn(directory);
  // Renewals a file-mode service journaled but had not yet folded into the deadlines files (a crash).
  const journal = new Map<string, JournalRecord[]>();
  for (const record of (await RenewalJournal.open(directory)).records) {
    const list = journal.get(record.key);
    if (list === undefined) journal.set(record.key, [record]);
    else list.push(record);
  }
  for (const id of ids) {
    const name = fileNameOf(id);
    let group: TargetGroup | undefined;
    let deadlines: Deadlines;
    let note = "";
    try {
      group = parseGroupFile(await readFile(join(directory, name), "utf8"), id.kind);
      ({ deadlines, note } = await deadlinesBeside(directory, deadlinesFileNameOf(id)));
    } catch (error) {
      counts.invalid++;
      print(`invalid    ${name}: ${(error as Error).message}; not imported`);
      continue;
    }
    if (group === undefined) {
      counts.empty++;
      print(`empty      ${name}: registers nothing; nothing to import`);
      continue;
    }
    deadlines = deadlinesOf(journaled(journal.get(keyOf(id)) ?? [], keyOf(id), deadlines), group.targets);
    const expired = group.targets.filter((target) => (deadlines.get(target) ?? Infinity) <= now);
    if (expired.length === group.targets.length) {
      counts.expired++;
      alreadyExpired += expired.length;
      print(`expired    ${name}: the deadline of every target has passed; not imported`);
      continue;
    }
    const gone = new Set(expired);
    const targets = group.targets.filter((target) => !gone.has(target));
    const kept = deadlinesOf(deadlines, targets);
    // The values are what the service would have written: the same bytes on every instance.
    const texts = { group: serializeGroup({ targets, labels: group.labels }), expires: kept.size === 0 ? undefined : serializeDeadlines(kept) };
    const detail = [
      kept.size > 0 ? `${kept.size} expiring target${kept.size === 1 ? "" : "s"} with ${kept.size === 1 ? "its deadline" : "their deadlines"}` : "",
      expired.length > 0 ? `${expired.length} already expired and left out: ${expired.join(", ")}` : "",
      note,
    ].filter((part) => part !== "");
    const suffix = detail.length === 0 ? "" : ` (${detail.join("; ")})`;
    try {
      const result = await importOne(namespace, config, keyOf(id), texts, overwrite);
      counts[result]++;
      if (result === "imported" || result === "overwritten") {
        deadlinesCarried += kept.size;
        alreadyExpired += expired.length;
      }
      print(
        result === "imported" ? `imported   ${name}${suffix}`
        : result === "overwritten" ? `overwrote  ${name}: etcd held a different group${suffix}`
        : result === "unchanged" ? `unchanged  ${name}: etcd already holds the same group`
        : `skipped    ${name}: etcd already holds a different group for it; --overwrite replaces it`,
      );
    } catch (error) {
      counts.failed++;
      print(`failed     ${name}: ${describeEtcdError(error)}`);
    }
  }
  const summary =
    `${ids.length} groups in ${directory}: ${counts.imported} imported, ${counts.overwritten} overwritten, ` +
    `${counts.unchanged} already in etcd, ${counts.empty} empty, ${counts.expired} expired, ${counts.exists} skipped (different in etcd), ` +
    `${counts.invalid} invalid, ${counts.failed} failed; ${deadlinesCarried} deadlines carried, ${alreadyExpired} expired targets left out`;
  print(summary);
  return { counts, deadlinesCarried, alreadyExpired, allIn: counts.exists + counts.invalid + counts.failed === 0 };
}

/** Every group file of both kinds (probes/ may be missing: a directory from before probes), sorted by name. */
async function groupFilesIn(directory: string): Promise<GroupId[]> {
  const ids: GroupId[] = [];
  for (const kind of KINDS) {
    const names = await readdir(join(directory, FOLDERS[kind])).catch((error: NodeJS.ErrnoException) => {
      if (kind === "probes" && error.code === "ENOENT") return [];
      throw error;
    });
    for (const name of names.sort()) {
      const id = idOfFileName(kind, name);
      if (id !== undefined) ids.push(id);
    }
  }
  return ids;
}

/** The deadlines file beside a group, if any. One that does not parse leaves the targets permanent, as the service would. */
async function deadlinesBeside(directory: string, name: string): Promise<{ deadlines: Deadlines; note: string }> {
  let text: string;
  try {
    text = await readFile(join(directory, name), "utf8");
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code === "ENOENT") return { deadlines: NO_DEADLINES, note: "" };
    throw error;
  }
  try {
    return { deadlines: parseDeadlines(text), note: "" };
  } catch (error) {
    return { deadlines: NO_DEADLINES, note: `${name} is not valid (${(error as Error).message}): its targets are imported as permanent` };
  }
}

/**
 * One group into etcd: read its keys, then one transaction that compares them
 * (and `gc` when the group's key is absent) and writes the group and its
 * deadlines. A key holding `[]` (a deleted group) is free.
 */
export async function importOne(
  namespace: Namespace,
  config: EtcdConfig,
  key: string,
  texts: { readonly group: string; readonly expires: string | undefined },
  overwrite: boolean,
): Promise<"imported" | "overwritten" | "unchanged" | "exists"> {
  const deadline = Date.now() + config.timeoutMs;
  const keys = { group: etcdKeyOf("group", key), expires: etcdKeyOf("expires", key), commits: etcdKeyOf("commits", key) };
  const read = await beforeDeadline(deadline, (grpcDeadline) =>
    namespace
      .if(GC, "Mod", "<", 0)
      .else(namespace.get(keys.group), namespace.get(keys.expires), namespace.get(keys.commits), namespace.get(GC))
      .options({ deadline: grpcDeadline })
      .commit(),
  );
  const revision = Number(read.header.revision);
  const at = (index: number): KeyValue => {
    const kv = read.responses[index]?.response_range?.kvs[0];
    return kv === undefined ? absentAt(revision) : valueOf(kv);
  };
  const [group, expires, commits, gc] = [at(0), at(1), at(2), at(3)];
  const registered = group.present && registersSomething(group.text, idOfKey(key)?.kind ?? "targets");
  if (registered && group.text === texts.group && (expires.text ?? NO_DEADLINES_TEXT) === (texts.expires ?? NO_DEADLINES_TEXT)) return "unchanged";
  if (registered && !overwrite) return "exists";

  let txn = namespace.if(keys.group, "Mod", "==", modRevisionOf(group)).and(keys.expires, "Mod", "==", modRevisionOf(expires)).and(keys.commits, "Mod", "==", modRevisionOf(commits));
  if (!group.present) txn = txn.and(GC, "Mod", "==", modRevisionOf(gc));
  const expiresText = texts.expires ?? (expires.present ? NO_DEADLINES_TEXT : undefined);
  const puts = [namespace.put(keys.group).value(texts.group), ...(expiresText === undefined ? [] : [namespace.put(keys.expires).value(expiresText)])];
  const written = await beforeDeadline(deadline, (grpcDeadline) => txn.then(...puts).options({ deadline: grpcDeadline }).commit());
  if (!written.succeeded) throw new Error("the group changed in etcd while it was being imported (another instance registered it?); run the import again");
  return registered ? "overwritten" : "imported";
}

/** Only `[]` (a deleted group's key) registers nothing; a value that is not a group is someone's, and left alone. */
function registersSomething(text: string, kind: Kind): boolean {
  try {
    return parseGroupFile(text, kind) !== undefined;
  } catch {
    return true;
  }
}

/** A group's deadlines with the journal's records replayed over them, as the service does at start. */
function journaled(records: readonly JournalRecord[], key: string, deadlines: Deadlines): Deadlines {
  if (records.length === 0) return deadlines;
  const persisted = new Map([[key, new Map(deadlines)]]);
  replay(records, persisted);
  return persisted.get(key)!;
}
