import type { Logger } from "pino";
import { InternalError } from "../errors.js";
import { Lanes, type LaneJob } from "../lanes.js";
import { keyOf, NO_DEADLINES, type GroupId } from "../model.js";
import type { Entry } from "../store.js";
import type { Directory } from "./directory.js";
import { parseGroupFile } from "./group-file.js";
import { fileNameOf } from "./naming.js";

type ViewJob = LaneJob &
  (
    | { readonly kind: "mirror"; readonly id: GroupId; readonly text: string | undefined; settle(error?: Error): void }
    | { readonly kind: "check"; readonly id: GroupId; settle(changed: boolean): void }
  );

/**
 * The directory in etcd mode: a view of the registry that lives in etcd
 * (src/etcdstore). The registry says what each file should hold (`mirror`);
 * the view writes it when the file does not hold it already, one write at a
 * time per file, the newest value winning. It knows what each file holds, so
 * an event on a file tells it whether someone else changed it (`check`); it
 * never decides what to do about it: whoever watches asks the registry.
 */
export class DirectoryView {
  /** What each managed file holds, as this view last wrote or read it. */
  private readonly texts = new Map<string, string>();
  /** Files known not to hold what `texts` says (unreadable after an outside edit): the next mirror writes them. */
  private readonly differs = new Set<string>();
  private readonly lanes = new Lanes<ViewJob>(
    (key, jobs) => this.runBatch(key, jobs),
    (key, error) => {
      this.logger.error({ file: key, err: error, bug: true }, "internal error in the directory view");
      return new InternalError(`could not bring ${key} in step: ${(error as Error).message}`, { cause: error });
    },
  );

  private constructor(
    readonly directory: Directory,
    private readonly logger: Logger,
    /** The valid groups the directory held at start: what there is to serve until the registry answers. */
    readonly initial: readonly Entry[],
  ) {}

  static async open(directory: Directory, logger: Logger, readFailed?: (fileName: string) => void): Promise<DirectoryView> {
    const { groups } = await directory.scan();
    const initial: Entry[] = [];
    const texts = new Map<string, string>();
    for (const { id, read } of groups) {
      if ("error" in read) continue;
      texts.set(keyOf(id), read.text);
      try {
        const group = parseGroupFile(read.text, id.kind);
        if (group !== undefined) initial.push({ id, fileName: fileNameOf(id), group, expires: NO_DEADLINES, changedAt: read.changedAt, text: read.text });
      } catch (error) {
        readFailed?.(fileNameOf(id));
        logger.warn({ file: fileNameOf(id), reason: (error as Error).message }, "file is not a valid target group; it is replaced once in step with etcd");
      }
    }
    const view = new DirectoryView(directory, logger, initial);
    for (const [key, text] of texts) view.texts.set(key, text);
    return view;
  }

  /** Resolves once every write queued so far is done. */
  idle(): Promise<void> {
    return this.lanes.idle();
  }

  /** How many managed files there are, as far as the view knows. */
  get size(): number {
    return this.texts.size;
  }

  /** Makes the file of `id` hold exactly `text` (undefined: no file), after what was queued for it before. */
  mirror(id: GroupId, text: string | undefined): Promise<void> {
    const key = keyOf(id);
    if (this.texts.get(key) === text && !this.differs.has(key) && !this.lanes.busy(key)) return Promise.resolve();
    return new Promise((resolve, reject) => {
      this.lanes.push(key, { kind: "mirror", id, text, settle: (error) => (error === undefined ? resolve() : reject(error)), fail: reject });
    });
  }

  /** An event on the file of `id`: resolves true when it no longer holds what the view wrote (someone else changed it). */
  check(id: GroupId): Promise<boolean> {
    return new Promise((resolve) => this.lanes.push(keyOf(id), { kind: "check", id, settle: resolve, fail: () => resolve(false) }));
  }

  /** Checks first, once however many events asked, then the newest mirror: the file is written at most once. */
  private async runBatch(key: string, jobs: ViewJob[]): Promise<void> {
    const checks = jobs.filter((job) => job.kind === "check");
    if (checks.length > 0) {
      const changed = this.reread(checks[0]!.id);
      for (const job of checks) job.settle(changed);
    }
    const mirrors = jobs.filter((job) => job.kind === "mirror");
    const newest = mirrors.at(-1);
    if (newest === undefined) return;
    const settle = (error?: Error): void => {
      for (const job of mirrors) job.settle(error);
    };
    if (this.texts.get(key) === newest.text && !this.differs.has(key)) return settle();
    try {
      await this.directory.mirror(newest.id, newest.text);
    } catch (error) {
      return settle(error as Error);
    }
    this.differs.delete(key);
    if (newest.text === undefined) this.texts.delete(key);
    else this.texts.set(key, newest.text);
    settle();
  }

  /** Reads the file again; true when it is not what the view last wrote. */
  private reread(id: GroupId): boolean {
    const key = keyOf(id);
    const read = this.directory.read(id);
    if ("error" in read) {
      if (read.error.code === "ENOENT") {
        const had = this.texts.delete(key);
        this.differs.delete(key);
        return had;
      }
      this.logger.error({ file: fileNameOf(id), err: read.error }, "could not read file");
      this.differs.add(key);
      return true;
    }
    if (this.texts.get(key) === read.text) {
      this.differs.delete(key);
      return false;
    }
    this.texts.set(key, read.text);
    return true;
  }
}
