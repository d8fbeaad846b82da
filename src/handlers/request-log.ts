import { randomUUID } from "node:crypto";
import type { Middleware } from "koa";
import type { Logger } from "pino";

const REQUEST_ID = /^[A-Za-z0-9._:-]{1,128}$/;

/**
 * One log line per request, tagged with an X-Request-Id taken from the client or
 * made up here, and with the name of the token that was used, if any. One plain
 * call per request: a pino child logger per request cost more than the line itself.
 */
export function requestLog(logger: Logger): Middleware {
  return async (ctx, next) => {
    const started = process.hrtime.bigint();
    const given = ctx.get("X-Request-Id");
    const requestId = REQUEST_ID.test(given) ? given : randomUUID();
    ctx.set("X-Request-Id", requestId);
    ctx.state.requestId = requestId;
    try {
      await next();
    } finally {
      const durationMs = Number(process.hrtime.bigint() - started) / 1e6;
      logger.info(
        {
          requestId,
          token: ctx.state.tokenName as string | undefined,
          method: ctx.method,
          path: ctx.path,
          status: ctx.status,
          durationMs: Math.round(durationMs * 1000) / 1000,
        },
        "request",
      );
    }
  };
}
