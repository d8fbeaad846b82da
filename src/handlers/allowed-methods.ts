import type { Context } from "koa";
import { RuleError } from "../errors.js";

/** The 405 for a service endpoint that only answers reads (the router adds HEAD to every GET). */
export function onlyGet(ctx: Context): never {
  throw new RuleError(405, `${ctx.method} is not supported on ${ctx.path}; use GET or HEAD`, { Allow: "GET, HEAD" });
}
