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
    | { readonly kind: "mirror"; settle(error?: Error): void }
    | { readonly kind: "check"; readonly id: GroupId; settle(changed: boolean): void }
  );

/** How soon a file that could not be written is tried again (a full disk, a permission someone fixes). */
const RETRY_MS = 2000;

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
  /** What the registry asked each file to hold, until it is written: the newest ask wins. */
  private readonly wanted = new Map<string, { readonly id: GroupId; readonly text: string | undefined }>();
  /** Files whose last write failed, tried again every RETRY_MS. */
  private readonly retries = new Set<string>();
  private retryTimer: NodeJS.Timeout | undefined;
  private closed = false;
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
    if (this.texts.get(key) === text && !this.differs.has(key) && !this.lanes.busy(key) && !this.wanted.has(key)) return Promise.resolve();
    this.wanted.set(key, { id, text });
    return new Promise((resolve, reject) => {
      this.lanes.push(key, { kind: "mirror", settle: (error) => (error === undefined ? resolve() : reject(error)), fail: reject });
    });
  }

  /** An event on the file of `id`: resolves true when it no longer holds what the view wrote (someone else changed it). */
  check(id: GroupId): Promise<boolean> {
    return new Promise((resolve) => this.lanes.push(keyOf(id), { kind: "check", id, settle: resolve, fail: () => resolve(false) }));
  }

  /** Files that could not be written and are tried again every RETRY_MS, for tests and metrics. */
  get failing(): number {
    return this.retries.size;
  }

  async close(): Promise<void> {
    this.closed = true;
    clearTimeout(this.retryTimer);
    await this.lanes.idle();
    await this.directory.worker.stop();
  }

  /**
   * Checks first, once however many events asked, then what the registry wants now: the file is
   * written at most once, with the newest value, whichever of the queued mirrors asked for it.
   */
  private async runBatch(key: string, jobs: ViewJob[]): Promise<void> {
    const checks = jobs.filter((job) => job.kind === "check");
    if (checks.length > 0) {
      const changed = await this.reread(checks[0]!.id);
      for (const job of checks) job.settle(changed);
    }
    const mirrors = jobs.filter((job) => job.kind === "mirror");
    const wanted = this.wanted.get(key);
    if (mirrors.length === 0 || wanted === undefined) {
      for (const job of mirrors) job.settle();
      return;
    }
    const settle = (error?: Error): void => {
      for (const job of mirrors) job.settle(error);
    };
    if (this.texts.get(key) !== wanted.text || this.differs.has(key)) {
      try {
        await this.directory.mirror(wanted.id, wanted.text);
      } catch (error) {
        // Kept wanted, and tried again: the registry is in step, only this file is behind.
        this.retries.add(key);
        this.scheduleRetry();
        return settle(error as Error);
      }
      this.differs.delete(key);
      if (wanted.text === undefined) this.texts.delete(key);
      else this.texts.set(key, wanted.text);
    }
    this.retries.delete(key);
    if (this.wanted.get(key) === wanted) this.wanted.delete(key);
    settle();
  }

  private scheduleRetry(): void {
    if (this.retryTimer !== undefined || this.closed) return;
    this.retryTimer = setTimeout(() => {
      this.retryTimer = undefined;
      for (const key of this.retries) {
        const wanted = this.wanted.get(key);
        if (wanted === undefined) this.retries.delete(key);
        else void this.mirror(wanted.id, wanted.text).catch(() => undefined);
      }
    }, RETRY_MS);
  }

  /** Reads the file again; true when it is not what the view last wrote. */
  private async reread(id: GroupId): Promise<boolean> {
    const key = keyOf(id);
    const read = await this.directory.readOffThread(id);
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
