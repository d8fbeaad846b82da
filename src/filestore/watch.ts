import { basename } from "node:path";
import { watch, type FSWatcher } from "chokidar";
import type { Logger } from "pino";
import { appEnvOfFileName } from "./naming.js";
import type { FileStore } from "./store.js";

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

  const onEvent = (path: string): void => {
    const appEnv = appEnvOfFileName(basename(path));
    if (appEnv !== undefined) void store.reload(appEnv);
  };
  watcher.on("add", onEvent).on("change", onEvent).on("unlink", onEvent);
  watcher.on("error", (error) => logger.error({ err: error, directory }, "directory watch error"));

  await new Promise<void>((resolve) => watcher.once("ready", resolve));
  logger.info({ directory }, "watching file_sd directory for outside changes");
  return { close: () => watcher.close() };
}
