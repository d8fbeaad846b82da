import type { Context } from "koa";
import { OPENAPI } from "../openapi.js";

export function openapi(ctx: Context): void {
  ctx.body = OPENAPI;
}
