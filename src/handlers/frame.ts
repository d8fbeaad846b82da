import { randomUUID } from "node:crypto";
import type { Context, Middleware } from "koa";
import type { Logger } from "pino";
import { RuleError, type RejectReason } from "../errors.js";
import { answerError } from "./errors.js";
import { requireHost } from "./unknown.js";

const REQUEST_ID = /^[A-Za-z0-9._:-]{1,128}$/;

export interface FrameOptions {
  readonly logger: Logger;
  readonly maxBodyBytes: number;
  /** Counts and times the answered request (src/metrics.ts); `reason` is a refusal's, when it gave one. */
  readonly counted: (ctx: Context, seconds: number, reason: RejectReason | undefined) => void;
  /** A bug in a handler, answered 500 (file_sd_internal_errors_total{where="request"}). */
  readonly internalError: (where: "request") => void;
}

/**
 * The outermost middleware, around every request: its X-Request-Id (the client's when it is a
 * plain token, else a new UUID), the Host check, the one place an error becomes an answer, the
 * metrics and the log line. One function rather than a middleware for each: every Koa middleware
 * is a promise and a dispatch per request, and they were a third of a GET's cost (BENCHMARKS.md).
 *
 * The log line is at `info` for what changes something or is refused, at `debug` for what only
 * reads or renews (a GET, a heartbeat that leaves the group as it was): at a fleet's rate those
 * are most requests, and the metrics count them all (docs/operations.md, "Logs").
 */
export function requestFrame({ logger, maxBodyBytes, counted, internalError }: FrameOptions): Middleware {
  return async (ctx, next) => {
    const started = process.hrtime.bigint();
    const given = ctx.get("X-Request-Id");
    const requestId = REQUEST_ID.test(given) ? given : randomUUID();
    ctx.set("X-Request-Id", requestId);
    ctx.state.requestId = requestId;
    let reason: RejectReason | undefined;
    try {
      requireHost(ctx);
      await next();
    } catch (error) {
      if (error instanceof RuleError) reason = error.reason;
      answerError(ctx, error, { logger, maxBodyBytes, internalError, requestId });
    } finally {
      const nanoseconds = Number(process.hrtime.bigint() - started);
      counted(ctx, nanoseconds / 1e9, reason);
      const level = routine(ctx) ? "debug" : "info";
      if (logger.isLevelEnabled(level)) {
        logger[level](
          {
            requestId,
            token: ctx.state.tokenName as string | undefined,
            method: ctx.method,
            path: ctx.path,
            status: ctx.status,
            durationMs: Math.round(nanoseconds / 1000) / 1000,
          },
          "request",
        );
      }
    }
  };
}

/** A read, or a change that left the group as it was (a renewal), that was answered: logged at debug. */
function routine(ctx: Context): boolean {
  if (ctx.status >= 400) return false;
  return ctx.method === "GET" || ctx.method === "HEAD" || ctx.state.groupUnchanged === true;
}
