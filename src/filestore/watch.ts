import { watch, type FSWatcher } from "node:fs";
import type { Logger } from "pino";
import { appEnvOfFileName } from "./naming.js";
import type { FileStore } from "./store.js";

/** How long a file must have been quiet before the last, settling re-read. */
const SETTLE_MS = 250;

export interface DirectoryWatch {
  close(): Promise<void>;
}

/**
 * Follows edits made by someone else: every event on a managed file re-reads it
 * through the store's lane for that file, so a re-read never races one of our
 * own writes. Our own writes come back as events too; re-reading them finds
 * what memory already holds and changes nothing.
 *
 * One inotify watch on the directory (node:fs.watch), not chokidar: chokidar
 * also watches every file on its own and re-reads the whole directory, with an
 * lstat per entry, after any event in it. With 10,000 files that cost 0.6 s and
 * 37 MB at start and made every write 3-7x slower (see BENCHMARKS.md). Each
 * event here names the file it concerns, so the work per event is one re-read.
 */
export async function watchDirectory(store: FileStore, logger: Logger): Promise<DirectoryWatch> {
  const directory = store.directory;

  // An event can arrive while a writer is half-way through, and an editor may
  // write in several steps. One more re-read once the file has been quiet for
  // SETTLE_MS sees what it finally holds.
  const settling = new Map<string, NodeJS.Timeout>();
  const onEvent = (fileName: string): void => {
    const appEnv = appEnvOfFileName(fileName);
    if (appEnv === undefined) return;
    void store.reload(appEnv);
    clearTimeout(settling.get(fileName));
    settling.set(
      fileName,
      setTimeout(() => {
        settling.delete(fileName);
        void store.reload(appEnv);
      }, SETTLE_MS),
    );
  };

  const watcher: FSWatcher = watch(directory, (_event, fileName) => {
    // Linux always names the file; other platforms may not, and then there is nothing to re-read.
    if (fileName !== null) onEvent(fileName);
  });
  watcher.on("error", (error) => logger.error({ err: error, directory }, "directory watch error"));
  logger.info({ directory }, "watching file_sd directory for outside changes");
  return {
    close: async () => {
      for (const timer of settling.values()) clearTimeout(timer);
      settling.clear();
      watcher.close();
    },
  };
}
