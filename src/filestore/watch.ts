import { basename } from "node:path";
import { watch, type FSWatcher } from "chokidar";
import type { Logger } from "pino";
import { appEnvOfFileName } from "./naming.js";
import type { FileStore } from "./store.js";

/** Longer than chokidar's 50 ms change throttle and its 100 ms wait for an atomic rename's add. */
const SETTLE_MS = 250;

export interface DirectoryWatch {
  close(): Promise<void>;
}

/**
 * Follows edits made by someone else: every event on a managed file re-reads it
 * through the store's lane for that file, so a re-read never races one of our
 * own writes. Our own writes come back as events too; re-reading them finds
 * what memory already holds and changes nothing.
 */
export async function watchDirectory(store: FileStore, logger: Logger): Promise<DirectoryWatch> {
  const directory = store.directory;
  const watcher: FSWatcher = watch(directory, {
    ignoreInitial: true,
    depth: 0,
    ignored: (path) => path !== directory && appEnvOfFileName(basename(path)) === undefined,
  });

  // chokidar drops a change event that follows another on the same file within
  // 50 ms, so the last edit of a burst may never be reported, and an event can
  // arrive while a writer is half-way through. One more re-read once the file
  // has been quiet for SETTLE_MS sees what it finally holds.
  const settling = new Map<string, NodeJS.Timeout>();
  const onEvent = (path: string): void => {
    const appEnv = appEnvOfFileName(basename(path));
    if (appEnv === undefined) return;
    void store.reload(appEnv);
    clearTimeout(settling.get(path));
    settling.set(
      path,
      setTimeout(() => {
        settling.delete(path);
        void store.reload(appEnv);
      }, SETTLE_MS),
    );
  };
  watcher.on("add", onEvent).on("change", onEvent).on("unlink", onEvent);
  watcher.on("error", (error) => logger.error({ err: error, directory }, "directory watch error"));

  await new Promise<void>((resolve) => watcher.once("ready", resolve));
  logger.info({ directory }, "watching file_sd directory for outside changes");
  return {
    close: async () => {
      for (const timer of settling.values()) clearTimeout(timer);
      settling.clear();
      await watcher.close();
    },
  };
}
