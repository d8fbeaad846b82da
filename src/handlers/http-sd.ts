import type { Context } from "koa";
import type { Entry, FileStore } from "../filestore/store.js";
import type { TargetGroup } from "../model.js";
import { AnswerCache } from "./answer-cache.js";
import { groupFilter, isFiltered, sortedEntries } from "./group-filter.js";

/**
 * Labels naming the source of each group. They start with `__meta_`, so
 * Prometheus offers them to relabelling and drops them afterwards; they are
 * set last, so a registered label of the same name cannot disguise a group.
 */
export const META_LABELS = {
  application: "__meta_filesd_application",
  environment: "__meta_filesd_environment",
  file: "__meta_filesd_file",
} as const;

/**
 * `GET /-/http_sd`: every group in Prometheus' http_sd format, so a Prometheus
 * that does not share the directory can use `http_sd_configs` instead. Every
 * Prometheus asks for everything on each refresh, so that answer is cached.
 */
export function httpSd(store: FileStore) {
  const everything = new AnswerCache();
  return (ctx: Context): void => {
    ctx.type = "json";
    ctx.body = isFiltered(ctx)
      ? JSON.stringify(render(sortedEntries(store.list(), groupFilter(ctx))))
      : everything.answer(store.list(), (entries) => render(sortedEntries(entries, () => true)));
  };
}

function render(entries: readonly Entry[]): TargetGroup[] {
  return entries.map(({ appEnv, fileName, group }) => ({
    targets: group.targets,
    labels: {
      ...group.labels,
      [META_LABELS.application]: appEnv.application,
      [META_LABELS.environment]: appEnv.environment,
      [META_LABELS.file]: fileName,
    },
  }));
}
