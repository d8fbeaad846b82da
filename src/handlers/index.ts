import type { Context } from "koa";
import type { Entry, FileStore } from "../filestore/store.js";
import type { Labels } from "../model.js";
import { AnswerCache } from "./answer-cache.js";
import { groupFilter, isFiltered, sortedEntries } from "./group-filter.js";

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
  const everything = new AnswerCache();
  return (ctx: Context): void => {
    ctx.type = "json";
    ctx.body = isFiltered(ctx)
      ? JSON.stringify(render(sortedEntries(store.list(), groupFilter(ctx))))
      : everything.answer(store.list(), (entries) => render(sortedEntries(entries, () => true)));
  };
}

function render(entries: readonly Entry[]): { groups: IndexLine[] } {
  return {
    groups: entries.map((entry) => ({
      application: entry.appEnv.application,
      environment: entry.appEnv.environment,
      file: entry.fileName,
      targets: entry.group.targets.length,
      labels: entry.group.labels,
      changedAt: entry.changedAt.toISOString(),
    })),
  };
}
