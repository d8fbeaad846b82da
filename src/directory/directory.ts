import { closeSync, constants, fstatSync, openSync, readFileSync } from "node:fs";
import { access, mkdir, readdir, stat, unlink, writeFile } from "node:fs/promises";
import { join, resolve } from "node:path";
import type { Logger } from "pino";
import { StoreError } from "../errors.js";
import { keyOf, type GroupId, type Kind } from "../model.js";
import { writeFileAtomically, type FileMode } from "./atomic-write.js";
import { DirectorySync } from "./directory-sync.js";
import { errorOf, FileWorker, FileWorkerGone } from "./file-worker.js";
import { MAX_COMBINED_NAME_LENGTH } from "../parse/values.js";
import { deadlinesFileNameOf, fileNameOf, FOLDERS, idOfDeadlinesFileName, idOfFileName, isLeftoverTempFile, isOverLongFileName, KINDS } from "./naming.js";

/** Hooks for metrics; every one is optional. */
export interface DirectoryObserver {
  fileWritten?(fileName: string, seconds: number): void;
  fileRemoved?(fileName: string): void;
  writeFailed?(fileName: string): void;
  leftoverRemoved?(fileName: string): void;
}

/** A managed file's text and modification time, or why it could not be read. */
export type FileRead = { readonly text: string; readonly changedAt: Date } | { readonly error: NodeJS.ErrnoException };

/**
 * What one change leaves on disk for a group, written in the crash order (see
 * `replace`). Texts are the files' bytes; undefined means no such file.
 */
export interface Replacement {
  /** The group file's new text; undefined: the group goes. */
  readonly group: string | undefined;
  /** false: the group file stays as it is (a heartbeat that only renews deadlines). */
  readonly writeGroup: boolean;
  /** The deadlines file while the group file changes: the new deadlines, and the old ones of targets leaving. */
  readonly deadlinesWhile: string | undefined;
  /** The deadlines file once the group file is durable: only the group's own. */
  readonly deadlinesAfter: string | undefined;
}

/** rw-r--r--: Prometheus, often another user in another container, must be able to read every file. */
const FILE_MODE = 0o644;

/**
 * FILE_SD_DIRECTORY: the files Prometheus reads, and everything that touches
 * them. It knows names, the atomic writer, the crash order of a group's files
 * and what the deadlines files hold; it knows nothing of the rules or of which
 * registry it serves (src/filestore/store.ts in file mode, the view of
 * src/directory/view.ts in etcd mode).
 */
export class Directory {
  readonly path: string;
  private fileMode: FileMode = { bits: FILE_MODE, umaskStripsBits: true };
  private readonly syncs: Readonly<Record<Kind, DirectorySync>>;
  /**
   * The text of each deadlines file on disk. It may list targets the group no
   * longer has (see `replace`: the crash order), so it is kept apart from the registry's deadlines.
   */
  private readonly deadlinesOnDisk = new Map<string, string>();
  /** The thread that makes the view's calls (etcd mode); started at the first. */
  readonly worker = new FileWorker();

  private constructor(
    path: string,
    private readonly logger: Logger,
    private readonly observer: DirectoryObserver,
  ) {
    this.path = resolve(path);
    this.syncs = { targets: new DirectorySync(this.folder("targets")), probes: new DirectorySync(this.folder("probes")) };
  }

  /** Creates the directory and its probes/ folder if needed and checks they are writable. */
  static async open(path: string, logger: Logger, observer: DirectoryObserver = {}): Promise<Directory> {
    const directory = new Directory(path, logger, observer);
    await directory.prepare();
    return directory;
  }

  folder(kind: Kind): string {
    return join(this.path, FOLDERS[kind]);
  }

  /**
   * Every group file at start, read, with the deadlines files beside them;
   * crash leftovers are removed, and so are deadlines whose group is gone (a
   * crash between the two removals of `replace`). Synchronous reads on
   * purpose: nothing is served yet, and one thread doing open/fstat/read/close
   * is several times faster than a promise and a trip to the thread pool for
   * each (1.4 s → 0.2 s for 10,000 files).
   */
  async scan(): Promise<{ groups: { id: GroupId; read: FileRead }[]; deadlines: { id: GroupId; read: FileRead }[] }> {
    const groups: { id: GroupId; read: FileRead }[] = [];
    const deadlines: { id: GroupId; read: FileRead }[] = [];
    for (const kind of KINDS) {
      const found = new Set<string>();
      const beside: GroupId[] = [];
      for (const name of await readdir(this.folder(kind))) {
        if (isLeftoverTempFile(kind, name)) {
          await this.removeLeftover(kind, name);
          continue;
        }
        const id = idOfFileName(kind, name);
        if (id !== undefined) {
          groups.push({ id, read: readSync(join(this.folder(kind), name)) });
          found.add(keyOf(id));
        } else if (isOverLongFileName(name)) {
          this.logger.warn(
            { file: join(FOLDERS[kind], name), limit: MAX_COMBINED_NAME_LENGTH },
            "the pair is longer than the API accepts (an earlier version took it): the file is left as it is and not managed; " +
              "register the group again under a shorter pair, then remove this file",
          );
        }
        const owner = idOfDeadlinesFileName(kind, name);
        if (owner !== undefined) beside.push(owner);
      }
      for (const id of beside) {
        if (!found.has(keyOf(id))) {
          await this.removeDeadlines(id, "removed the deadlines of a group that is no longer registered");
          continue;
        }
        const read = readSync(join(this.path, deadlinesFileNameOf(id)));
        if (!("error" in read)) this.deadlinesOnDisk.set(keyOf(id), read.text);
        deadlines.push({ id, read });
      }
    }
    return { groups, deadlines };
  }

  /** Every group file there is now, of both kinds (for a resync). */
  async list(): Promise<GroupId[]> {
    const ids: GroupId[] = [];
    for (const kind of KINDS) {
      for (const name of await readdir(this.folder(kind))) {
        const id = idOfFileName(kind, name);
        if (id !== undefined) ids.push(id);
      }
    }
    return ids;
  }

  /**
   * One group file, read synchronously: every write of ours comes back as an
   * event and the registry waits for this read, and on a file the kernel has
   * just written, four plain system calls cost the event loop less than
   * dispatching five to the thread pool.
   */
  read(id: GroupId): FileRead {
    return readSync(join(this.path, fileNameOf(id)));
  }

  /**
   * One group file, read by the worker thread (the view's re-reads after a watch event: one for
   * every file it writes). When the thread is gone, read here.
   */
  async readOffThread(id: GroupId): Promise<FileRead> {
    const path = join(this.path, fileNameOf(id));
    try {
      const answer = await this.worker.call({ op: "read", path });
      if ("error" in answer) return { error: errorOf(answer.error) };
      return { text: answer.text ?? "", changedAt: new Date(answer.mtimeMs ?? 0) };
    } catch (error) {
      if (!(error instanceof FileWorkerGone)) throw error;
      return readSync(path);
    }
  }

  /**
   * Makes the group file hold `text` (undefined: no file), atomically but not
   * durably: for a view of another registry, rebuilt from it at start, where a
   * rename that keeps every read whole is enough. The calls are the worker
   * thread's (file-worker.ts). Throws a StoreError.
   */
  async mirror(id: GroupId, text: string | undefined): Promise<void> {
    const fileName = fileNameOf(id);
    const path = join(this.path, fileName);
    const started = process.hrtime.bigint();
    try {
      const answer = await this.worker.call(
        text === undefined ? { op: "remove", path } : { op: "write", path, text, bits: this.fileMode.bits, chmod: this.fileMode.umaskStripsBits },
      );
      if ("error" in answer) throw errorOf(answer.error);
    } catch (error) {
      if (text === undefined && (error as NodeJS.ErrnoException).code === "ENOENT") return;
      this.observer.writeFailed?.(fileName);
      this.logger.error({ file: fileName, err: error }, "could not bring the file in step with the registry");
      throw new StoreError(`could not ${text === undefined ? "remove" : "write"} ${fileName}: ${whyNot(error)}`, { cause: error });
    }
    if (text === undefined) {
      this.observer.fileRemoved?.(fileName);
      this.logger.info({ file: fileName }, "file removed");
    } else {
      this.observer.fileWritten?.(fileName, Number(process.hrtime.bigint() - started) / 1e9);
      this.logger.info({ file: fileName }, "file written");
    }
  }

  /** What the group's deadlines file holds, as last written or read. */
  deadlinesText(id: GroupId): string | undefined {
    return this.deadlinesOnDisk.get(keyOf(id));
  }

  /**
   * Writes what a change leads to, durably, in the crash order, so that a
   * SIGKILL or a power cut between any two steps leaves files that fit
   * together and no target that outlives its deadline:
   * - A group that stays: its deadlines file first, then (after a directory
   *   fsync) the group file. The deadlines file holds the new deadlines and,
   *   for targets leaving the group, their old ones, so it fits the old group
   *   file as well as the new: after a crash between the two, a target that
   *   stays has its new deadline (a renewal or a ttl of a request that was not
   *   answered, never longer than someone asked), and a target that was leaving
   *   still has its old one. The other order would leave a target added with a
   *   ttl permanent. Once the group file is durable, the leaving targets'
   *   deadlines are dropped.
   * - A group that goes: the group file first, then (after a directory fsync)
   *   the deadlines file. A crash between leaves deadlines without a group,
   *   which the next scan removes; the other order would leave the group with
   *   no deadlines, permanent.
   * A deadline for a target the group does not have is ignored at load.
   *
   * Throws a StoreError when a write fails; the deadlines file is then put back
   * as it was, and the group file was never touched. Resolves with the error of
   * the last directory fsync when the files were renamed but may not survive a
   * power cut.
   */
  async replace(id: GroupId, change: Replacement): Promise<Error | undefined> {
    const fileName = fileNameOf(id);
    const before = this.deadlinesText(id);
    const failed = async (error: unknown, what: string): Promise<never> => {
      await this.putDeadlinesBack(id, before);
      this.observer.writeFailed?.(what);
      this.logger.error({ file: what, err: error }, "write failed; nothing changed");
      throw new StoreError(`could not ${change.group === undefined ? "remove" : "write"} ${what}: ${whyNot(error)}; the change was not applied`, { cause: error });
    };
    const started = process.hrtime.bigint();
    if (change.group === undefined) {
      try {
        await removeIfPresent(join(this.path, fileName));
      } catch (error) {
        return failed(error, fileName);
      }
    } else {
      if (change.deadlinesWhile !== before) {
        try {
          await this.putDeadlines(id, change.deadlinesWhile);
          if (change.writeGroup) await this.syncs[id.kind].sync();
        } catch (error) {
          return failed(error, deadlinesFileNameOf(id));
        }
      }
      if (change.writeGroup) {
        try {
          await writeFileAtomically(join(this.path, fileName), change.group, this.fileMode);
        } catch (error) {
          return failed(error, fileName);
        }
      }
    }
    let durability: Error | undefined;
    try {
      await this.syncs[id.kind].sync();
    } catch (error) {
      durability = error as Error;
    }
    if (change.group === undefined) {
      this.observer.fileRemoved?.(fileName);
      // Harmless if it fails: deadlines without a group are ignored, and removed by the next scan.
      if (before !== undefined && durability === undefined) await this.removeDeadlines(id);
    } else if (change.writeGroup) {
      this.observer.fileWritten?.(fileName, Number(process.hrtime.bigint() - started) / 1e9);
      // No hurry for this one to be durable: should it be lost, the file with the leaving targets still fits the group.
      if (durability === undefined && change.deadlinesAfter !== change.deadlinesWhile) {
        await this.putDeadlines(id, change.deadlinesAfter).catch((error: unknown) =>
          this.logger.warn({ file: deadlinesFileNameOf(id), err: error }, "could not drop the deadlines of targets that left the group"),
        );
      }
    }
    if (durability !== undefined) {
      this.observer.writeFailed?.(fileName);
      this.logger.error({ file: fileName, err: durability }, "directory fsync failed after the rename");
    }
    return durability;
  }

  private async putDeadlines(id: GroupId, text: string | undefined): Promise<void> {
    const path = join(this.path, deadlinesFileNameOf(id));
    if (text === undefined) await removeIfPresent(path);
    else await writeFileAtomically(path, text, this.fileMode);
    if (text === undefined) this.deadlinesOnDisk.delete(keyOf(id));
    else this.deadlinesOnDisk.set(keyOf(id), text);
  }

  /** After a failed write, best effort: the deadlines file as it was, so the failed change leaves nothing behind. */
  private async putDeadlinesBack(id: GroupId, text: string | undefined): Promise<void> {
    if (this.deadlinesText(id) === text) return;
    await this.putDeadlines(id, text).catch((error: unknown) =>
      this.logger.error({ file: deadlinesFileNameOf(id), err: error }, "could not put the deadlines file back after a failed write"),
    );
  }

  private async removeDeadlines(id: GroupId, message?: string): Promise<void> {
    const name = deadlinesFileNameOf(id);
    try {
      await this.putDeadlines(id, undefined);
      if (message !== undefined) this.logger.info({ file: name }, message);
    } catch (error) {
      this.logger.warn({ file: name, err: error }, "could not remove the deadlines of a removed group");
    }
  }

  private async removeLeftover(kind: Kind, name: string): Promise<void> {
    const file = join(FOLDERS[kind], name);
    try {
      await unlink(join(this.path, file));
      this.observer.leftoverRemoved?.(file);
      this.logger.info({ file }, "removed temporary file left by a crash");
    } catch (error) {
      this.logger.warn({ file, err: error }, "could not remove temporary file left by a crash");
    }
  }

  private async prepare(): Promise<void> {
    try {
      for (const kind of KINDS) await mkdir(this.folder(kind), { recursive: true });
      await access(this.path, constants.R_OK | constants.W_OK);
      // access() says yes to root on a read-only mount; a real write does not.
      const probe = join(this.path, `.write-probe-${process.pid}`);
      await writeFile(probe, "", { mode: FILE_MODE });
      // The probe also tells whether the umask lets Prometheus (often another user) read what we write.
      this.fileMode = { bits: FILE_MODE, umaskStripsBits: ((await stat(probe)).mode & 0o777) !== FILE_MODE };
      await unlink(probe);
    } catch (error) {
      throw new StoreError(`FILE_SD_DIRECTORY ${this.path} is not a writable directory: ${(error as Error).message}`, { cause: error });
    }
  }
}

/**
 * What a failed file operation says, and where to look: out of descriptors is not the disk's
 * fault, and a message that says "check the disk" would send the reader the wrong way.
 */
export function whyNot(error: unknown): string {
  const { code, message } = error as NodeJS.ErrnoException;
  if (code === "EMFILE" || code === "ENFILE") {
    return `${message} (the service has no file descriptor left: too many connections or open files; raise its open-files limit, e.g. LimitNOFILE= or ulimit -n)`;
  }
  return message;
}

function readSync(path: string): FileRead {
  let fd: number | undefined;
  try {
    // O_NONBLOCK: a FIFO someone put at a managed name must not freeze the service.
    fd = openSync(path, constants.O_RDONLY | constants.O_NONBLOCK);
    const stats = fstatSync(fd);
    if (!stats.isFile()) {
      return { error: Object.assign(new Error(`${path} is not a regular file`), { code: "ENOTREG" }) };
    }
    return { text: readFileSync(fd, "utf8"), changedAt: stats.mtime };
  } catch (error) {
    return { error: error as NodeJS.ErrnoException };
  } finally {
    if (fd !== undefined) closeSync(fd);
  }
}

export async function removeIfPresent(path: string): Promise<void> {
  await unlink(path).catch((error: NodeJS.ErrnoException) => {
    if (error.code !== "ENOENT") throw error;
  });
}
