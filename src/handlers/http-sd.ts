import type { Context } from "koa";
import { RuleError } from "../errors.js";
import type { Entry, Store } from "../store.js";
import type { TargetGroup } from "../model.js";
import { EVERY_GROUP, type GroupSelector } from "../etcdstore/selector.js";
import { kindOf, selectedEntries } from "./group-filter.js";
import { GroupListJson } from "./group-list-json.js";

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
 * that does not share the directory can use `http_sd_configs` instead.
 * `?kind=probes`: the probe groups instead, for the job that talks to blackbox_exporter.
 * `?share=all`: every group whatever GROUP_SELECTOR says, as the index lists them (the page's script).
 */
export function httpSd(store: Store, share: GroupSelector = EVERY_GROUP) {
  const json = { targets: new GroupListJson(render), probes: new GroupListJson(render) };
  return (ctx: Context): void => {
    const kind = kindOf(ctx);
    // GROUP_SELECTOR: the same share of the groups as this instance's files, unless every group is asked for.
    const selected = shareOf(ctx) === "all" ? EVERY_GROUP : share;
    const entries = selectedEntries(ctx, store.list(), kind).filter((entry) => selected(entry.group.labels));
    ctx.type = "json";
    ctx.body = json[kind].bytesOf(entries);
  };
}

function shareOf(ctx: Context): "selected" | "all" {
  const given = ctx.query.share;
  if (given === undefined) return "selected";
  if (given === "all") return "all";
  throw new RuleError(
    400,
    `?share=${JSON.stringify(given)}: give ?share=all (every group, whatever GROUP_SELECTOR selects) once, or leave it out (this instance's share)`,
    {},
    "bad_request",
  );
}

function render({ id: appEnv, fileName, group }: Entry): TargetGroup {
  return {
    targets: group.targets,
    labels: {
      ...group.labels,
      [META_LABELS.application]: appEnv.application,
      [META_LABELS.environment]: appEnv.environment,
      [META_LABELS.file]: fileName,
    },
  };
}
