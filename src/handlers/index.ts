import type { Context } from "koa";
import type { FileStore } from "../filestore/store.js";
import type { Labels } from "../model.js";
import { groupFilter, sortedEntries } from "./group-filter.js";

/** One line of the index: what is registered for an application/environment, without the target list. */
export interface IndexLine {
  readonly application: string;
  readonly environment: string;
  readonly file: string;
  readonly targets: number;
  readonly labels: Labels;
  /** When the file last changed: our own write, or the file's mtime when loaded or changed from outside. */
  readonly changedAt: string;
}

/** `GET /`: everything registered, sorted by application then environment, optionally filtered. */
export function index(store: FileStore) {
  return (ctx: Context): void => {
    const groups: IndexLine[] = sortedEntries(store.list(), groupFilter(ctx)).map((entry) => ({
      application: entry.appEnv.application,
      environment: entry.appEnv.environment,
      file: entry.fileName,
      targets: entry.group.targets.length,
      labels: entry.group.labels,
      changedAt: entry.changedAt.toISOString(),
    }));
    ctx.body = { groups };
  };
}
