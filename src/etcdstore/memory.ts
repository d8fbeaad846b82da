import type { Logger } from "pino";
import type { EtcdConfig } from "../config.js";
import { parseDeadlines } from "../directory/deadlines-file.js";
import { parseGroupFile } from "../directory/group-file.js";
import { fileNameOf, idOfFileName } from "../directory/naming.js";
import type { DirectoryView } from "../directory/view.js";
import { deadlinesOf, idOfKey, keyOf, NO_DEADLINES, type Deadlines, type GroupId } from "../model.js";
import type { Entry } from "../store.js";
import { absentAt, etcdKeyOf, NOTHING_REGISTERED, parseMarkers, type KeyValue, type Markers, type Part } from "./keys.js";
import type { GroupSelector } from "./selector.js";

/**
 * What this instance knows of one application/environment in etcd: its three
 * keys (src/etcdstore/keys.ts), each with the revision that last changed it (a
 * key seen absent is absent at a revision), and what they mean.
 */
export interface Known {
  readonly group: KeyValue;
  readonly expires: KeyValue;
  readonly commits: KeyValue;
  /** The expires key's value, parsed (every target it lists). */
  readonly deadlines: Deadlines;
  readonly markers: Markers;
  /** undefined: no group key, or a value that is not a valid group. */
  readonly entry: Entry | undefined;
  /** When (performance.now()) this instance first saw the group key hold a deleted group's `[]`; for the collector. */
  readonly emptySince: number | undefined;
}

export type Values = { readonly [part in Part]?: KeyValue };

/**
 * This instance's copy of etcd, and its directory kept in step with it. Per
 * key, memory only moves forward: a value is taken only when its revision is
 * newer than the one known, so the watch, this instance's own commits and a
 * resync can arrive in any order.
 */
export class EtcdMemory {
  private readonly known = new Map<string, Known>();
  private readonly entries = new Map<string, Entry>();
  /** The `gc` key; see keys.ts. */
  gc: KeyValue = absentAt(0);
  private readonly warned = new Set<string>();
  /**
   * Renewals this instance answered from memory and has not committed yet, per
   * group: target → deadline. What GET and the index serve is etcd's value with
   * these laid over it (the later deadline wins), so nothing served goes
   * backwards when a newer value of the group arrives before they are committed.
   */
  private readonly pending = new Map<string, Map<string, number>>();

  constructor(
    private readonly config: EtcdConfig,
    private readonly view: DirectoryView,
    private readonly selects: GroupSelector,
    private readonly logger: Logger,
  ) {
    // Until the first sync, the directory's files are what there is to serve (GET keeps answering while etcd is down).
    for (const entry of view.initial) this.entries.set(keyOf(entry.id), entry);
  }

  get(key: string): Known | undefined {
    return this.known.get(key);
  }

  entry(key: string): Entry | undefined {
    return this.entries.get(key);
  }

  list(): IterableIterator<Entry> {
    return this.entries.values();
  }

  get size(): number {
    return this.entries.size;
  }

  /** How many groups' keys this instance keeps, tombstones included (file_sd_etcd_known_groups). */
  get knownSize(): number {
    return this.known.size;
  }

  keys(): IterableIterator<string> {
    return this.known.keys();
  }

  /**
   * Takes the values of a group's keys, each only when it is newer than what is
   * known of that key, and brings the file in step. Resolves once the file is
   * written; when nothing is newer, once the file is as memory says.
   * `parsed`: the deadlines values.expires holds, when the caller has them (it wrote them).
   */
  take(key: string, values: Values, parsed?: Deadlines): Promise<void> {
    const id = validIdOf(key);
    if (id === undefined) {
      this.ignored(key);
      return Promise.resolve();
    }
    const known = this.known.get(key);
    const newer = (part: Part): KeyValue | undefined => {
      const value = values[part];
      const than = known?.[part];
      return value !== undefined && (than === undefined || value.revision > than.revision) ? value : undefined;
    };
    const group = newer("group");
    const expires = newer("expires");
    const commits = newer("commits");
    if (group === undefined && expires === undefined && commits === undefined) return this.view.mirror(id, this.fileTextOf(key));

    let entry = known?.entry;
    let emptySince = known?.emptySince;
    if (group !== undefined) {
      entry = undefined;
      emptySince = group.text === NOTHING_REGISTERED ? (emptySince ?? performance.now()) : undefined;
      const same = this.entries.get(key);
      if (group.present && same?.text === group.text) {
        entry = same;
      } else if (group.present) {
        try {
          const parsed = parseGroupFile(group.text, id.kind);
          if (parsed !== undefined) entry = { id, fileName: fileNameOf(id), group: parsed, expires: NO_DEADLINES, changedAt: new Date(), text: group.text };
        } catch (error) {
          this.logger.warn(
            { key: this.config.prefix + etcdKeyOf("group", key), reason: (error as Error).message },
            "etcd holds a value that is not a valid target group; treated as not registered",
          );
        }
      }
    }
    let deadlines = known?.deadlines ?? NO_DEADLINES;
    if (expires !== undefined) {
      deadlines = NO_DEADLINES;
      if (expires.present && parsed !== undefined) {
        deadlines = parsed;
      } else if (expires.present) {
        try {
          deadlines = parseDeadlines(expires.text);
        } catch (error) {
          this.logger.warn(
            { key: this.config.prefix + etcdKeyOf("expires", key), reason: (error as Error).message },
            "etcd holds deadlines that are not valid; the group's targets are treated as permanent",
          );
        }
      }
    }
    if (entry !== undefined) entry = { ...entry, expires: deadlinesOf(deadlines, entry.group.targets) };
    const served = this.overlaid(key, entry);
    this.known.set(key, {
      group: group ?? known?.group ?? absentAt(0),
      expires: expires ?? known?.expires ?? absentAt(0),
      commits: commits ?? known?.commits ?? absentAt(0),
      deadlines,
      markers: commits === undefined ? (known?.markers ?? new Map()) : parseMarkers(commits),
      entry,
      emptySince,
    });
    if (served === undefined) this.entries.delete(key);
    else this.entries.set(key, served);
    return this.view.mirror(id, this.fileTextOf(key));
  }

  /** Renewals answered from memory: they go into what is served at once, and wait in `pending` for their commit. */
  renew(key: string, expires: Deadlines): void {
    const entry = this.entries.get(key);
    const etcd = this.known.get(key)?.entry;
    if (entry === undefined || etcd === undefined) return;
    const pending = this.pending.get(key) ?? new Map<string, number>();
    for (const [target, deadline] of expires) if (deadline > (etcd.expires.get(target) ?? Infinity) && deadline > (pending.get(target) ?? -Infinity)) pending.set(target, deadline);
    if (pending.size > 0) this.pending.set(key, pending);
    const served = this.overlaid(key, etcd);
    if (served !== undefined) this.entries.set(key, served);
  }

  /** The renewals of a group still to commit (empty when there are none). */
  pendingOf(key: string): Deadlines {
    return this.pending.get(key) ?? NO_DEADLINES;
  }

  /** Groups with renewals still to commit. */
  pendingKeys(): string[] {
    return [...this.pending.keys()];
  }

  /**
   * `entry` (etcd's value) with the pending renewals laid over it. A pending
   * renewal of a target etcd no longer has, or no longer gives a deadline (a
   * DELETE or a PUT on another instance), is dropped: that change wins. One etcd
   * already holds (committed by this instance or another) is done.
   */
  private overlaid(key: string, entry: Entry | undefined): Entry | undefined {
    const pending = this.pending.get(key);
    if (pending === undefined) return entry;
    if (entry === undefined) {
      this.pending.delete(key);
      return entry;
    }
    let expires: Map<string, number> | undefined;
    for (const [target, deadline] of pending) {
      const committed = entry.expires.get(target);
      if (committed === undefined || committed >= deadline) {
        pending.delete(target);
        continue;
      }
      expires ??= new Map(entry.expires);
      expires.set(target, deadline);
    }
    if (pending.size === 0) this.pending.delete(key);
    return expires === undefined ? entry : { ...entry, expires };
  }

  /** A key under the prefix whose names the API would refuse (too long, say: an earlier version's): said once, then left alone. */
  private ignored(key: string): void {
    if (this.warned.has(key) || this.warned.size >= 1000) return;
    this.warned.add(key);
    this.logger.warn(
      { key: this.config.prefix + etcdKeyOf("group", key) },
      "etcd holds a group whose names the API does not accept (longer than the limit?): ignored; register it again under valid names",
    );
  }

  /** The `gc` key, when newer. */
  takeGc(value: KeyValue): void {
    if (value.revision > this.gc.revision) this.gc = value;
  }

  /**
   * A group whose keys are all gone (removed by the collector) is forgotten,
   * unless a change of this instance is still running for it: only that could
   * still bring an older value, and the watch delivers a key's events in order.
   */
  forget(key: string, busy: boolean): void {
    const known = this.known.get(key);
    if (known !== undefined && !known.group.present && !known.expires.present && !known.commits.present && !busy) this.known.delete(key);
  }

  /** Groups served from the directory before the first sync that etcd does not have. */
  dropUnknownEntries(): void {
    for (const key of this.entries.keys()) if (!this.known.has(key)) this.entries.delete(key);
  }

  /** Before the first sync, memory may hold the directory's old files: one key read from etcd replaces it. */
  dropEntryUnlessKnown(key: string): void {
    if (!this.known.has(key)) this.entries.delete(key);
  }

  /** What this instance's file should hold: the group's text when it matches GROUP_SELECTOR. */
  fileTextOf(key: string): string | undefined {
    const entry = this.entries.get(key);
    return entry !== undefined && this.selects(entry.group.labels) ? entry.text : undefined;
  }

  /** Groups deleted at least `ageMs` ago (as this instance saw it), for the collector. */
  *tombstones(ageMs: number): Generator<[string, Known]> {
    const before = performance.now() - ageMs;
    for (const [key, known] of this.known) if (known.emptySince !== undefined && known.emptySince <= before) yield [key, known];
  }
}

/** The group of a key under the prefix, when its names are valid ones (anything else there is not ours). */
export function validIdOf(key: string): GroupId | undefined {
  const id = idOfKey(key);
  return id === undefined ? undefined : idOfFileName(id.kind, `${id.application}@${id.environment}.json`);
}
