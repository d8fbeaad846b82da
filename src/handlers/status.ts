import type { Context } from "koa";
import { RuleError } from "../errors.js";
import { byName } from "../store.js";
import type { Kind } from "../model.js";
import { parseDuration } from "../parse/duration.js";
import type { Registry, StatusService } from "../status/status.js";
import { kindOf, selectedEntries } from "./group-filter.js";
import { groupIdOf } from "./groups.js";

/**
 * Koa glue for docs/api.md and docs/probes.md: `/<application>/<environment>/status`, its
 * probe group's `/<application>/<environment>/probes/status`, and `/-/status`.
 */

export const MAX_WAIT_MS = 10 * 60_000;
const WAIT_FORM = "a Prometheus duration such as 30s, 2m or 1m30s, at most 10m";

/**
 * Without PROMETHEUS_URL there is nothing to ask: a 404 (this instance has no
 * status to give), never a 200, so `curl --fail …/status?wait=2m` cannot let a
 * deploy through unchecked. Not a 5xx: nothing is broken, and the 5xx alert
 * (contrib/prometheus) must not fire because a pipeline asks an instance
 * that was not told about Prometheus.
 */
function notConfigured(ctx: Context): void {
  ctx.status = 404;
  ctx.body = {
    message:
      "the status needs to know which Prometheus to ask: start the service with " +
      "PROMETHEUS_URL=http://prometheus:9090 (comma-separated for several; see docs/api.md, Is it scraped?)",
  };
}


/** `?wait=` in ms; undefined when absent. */
export function waitOf(ctx: Context): number | undefined {
  const given = ctx.query.wait;
  if (given === undefined) return undefined;
  if (typeof given !== "string") throw new RuleError(400, `give ?wait= once, as ${WAIT_FORM}`);
  const ms = parseDuration(given);
  if (ms === undefined) throw new RuleError(400, `?wait=${JSON.stringify(given)} is not ${WAIT_FORM}`);
  if (ms > MAX_WAIT_MS) {
    throw new RuleError(400, `?wait=${JSON.stringify(given)} is longer than a status waits (10m at most); wait again after it answers, e.g. in a loop`);
  }
  return ms;
}

/**
 * `GET /<application>/<environment>/status[?wait=<duration>]`, and the same for the
 * probes (`…/probes/status`, `kind` "probes"). Without `wait`: 200 with the status
 * as it is. With it: held until ready (200) or the time is up (503, same body); a
 * client that hangs up ends the wait, and a shutting-down service answers at once.
 */
export function groupStatus(status: StatusService | undefined, kind: Kind) {
  return async (ctx: Context): Promise<void> => {
    const id = groupIdOf(ctx, kind);
    const waitMs = waitOf(ctx);
    if (status === undefined) return notConfigured(ctx);
    ctx.set("Cache-Control", "no-store");
    if (waitMs === undefined) {
      ctx.body = await status.ofGroup(id);
      return;
    }
    const clientGone = new AbortController();
    const hangUp = (): void => clientGone.abort();
    // The response's close: the request's fires as soon as its (empty) body is read.
    ctx.res.once("close", hangUp);
    try {
      const answer = await status.waitUntilReady(id, waitMs, clientGone.signal);
      ctx.status = answer.ready ? 200 : 503;
      ctx.body = answer;
      // Shutting down: close the connection with this answer, so the drain need not wait for it to idle out.
      if (status.shuttingDown) ctx.set("Connection", "close");
    } finally {
      ctx.res.off("close", hangUp);
    }
  };
}

/**
 * `GET /-/status`: every registered group's status (the page's health dots), with the
 * index' filters; `?kind=probes`: every probe group's results.
 */
export function allStatus(registry: Registry, status: StatusService | undefined) {
  return async (ctx: Context): Promise<void> => {
    const entries = selectedEntries(ctx, registry.list(), kindOf(ctx)).sort(byName);
    if (status === undefined) return notConfigured(ctx);
    ctx.set("Cache-Control", "no-store");
    ctx.body = {
      prometheus: status.servers.map((server) => server.url),
      ...(await status.ofEntries(entries)),
    };
  };
}

