import type { Context } from "koa";
import type { Registry } from "prom-client";

/** The Prometheus text format, for Prometheus to scrape its own sidecar. */
export function metrics(registry: Registry) {
  return async (ctx: Context): Promise<void> => {
    const text = await registry.metrics();
    ctx.type = registry.contentType;
    ctx.body = text;
  };
}
