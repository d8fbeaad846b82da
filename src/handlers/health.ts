import type { Context } from "koa";

/** What `/-/ready` asks: is the initial load done and is everything that follows outside changes running? */
export interface Readiness {
  /** undefined when ready; otherwise what is still missing, for the 503 message. */
  notReadyBecause(): string | undefined;
}

/** The process is up and answering: Docker's HEALTHCHECK and a liveness probe ask this. */
export function healthy(ctx: Context): void {
  ctx.body = { status: "healthy" };
}

/** 503 until the directory is loaded and watched, and again once shutdown has begun. */
export function ready(readiness: Readiness) {
  return (ctx: Context): void => {
    const reason = readiness.notReadyBecause();
    if (reason === undefined) {
      ctx.body = { status: "ready" };
      return;
    }
    ctx.status = 503;
    ctx.body = { status: "not ready", message: reason };
  };
}
