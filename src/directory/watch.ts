import { watch, type FSWatcher } from "node:fs";
import type { Logger } from "pino";
import type { GroupId } from "../model.js";
import type { Directory } from "./directory.js";
import { idOfFileName, KINDS } from "./naming.js";

/** How long a file must have been quiet before the last, settling re-read. */
const SETTLE_MS = 250;

export interface DirectoryWatch {
  close(): Promise<void>;
}

/**
 * Follows edits made by someone else: every event on a managed group file is
 * handed to `changed` (the registry re-reads the file through its lane for it,
 * so a re-read never races one of its own writes). Our own writes come back
 * as events too; re-reading them finds what memory already holds.
 *
 * One inotify watch per folder (node:fs.watch on the directory and on
 * probes/), not chokidar: chokidar also watches every file on its own and
 * re-reads the whole directory, with an lstat per entry, after any event in
 * it. With 10,000 files that cost 0.6 s and 37 MB at start and made every
 * write 3-7x slower (see BENCHMARKS.md). Each event here names the file it
 * concerns, so the work per event is one re-read.
 */
export async function watchDirectory(directory: Directory, changed: (id: GroupId) => void, logger: Logger): Promise<DirectoryWatch> {
  // An event can arrive while a writer is half-way through, and an editor may
  // write in several steps. One more re-read once the file has been quiet for
  // SETTLE_MS sees what it finally holds.
  const settling = new Map<string, NodeJS.Timeout>();
  const watchers: FSWatcher[] = [];
  for (const kind of KINDS) {
    const folder = directory.folder(kind);
    const watcher = watch(folder, (_event, fileName) => {
      // Linux always names the file; other platforms may not, and then there is nothing to re-read.
      const id = fileName === null ? undefined : idOfFileName(kind, fileName);
      if (id === undefined) return;
      changed(id);
      const timerKey = `${kind}/${fileName}`;
      clearTimeout(settling.get(timerKey));
      settling.set(
        timerKey,
        setTimeout(() => {
          settling.delete(timerKey);
          changed(id);
        }, SETTLE_MS),
      );
    });
    watcher.on("error", (error) => logger.error({ err: error, directory: folder }, "directory watch error"));
    watchers.push(watcher);
  }
  logger.info({ directory: directory.path }, "watching file_sd directory for outside changes");
  return {
    close: async () => {
      for (const timer of settling.values()) clearTimeout(timer);
      settling.clear();
      for (const watcher of watchers) watcher.close();
    },
  };
}
