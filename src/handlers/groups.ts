import type { Context } from "koa";
import { rejectAs, RuleError } from "../errors.js";
import type { Store } from "../store.js";
import type { AppEnv, Change, GroupId, Registration } from "../model.js";
import { etagOf } from "../etag.js";
import { formatOf, parseBody, unsupportedMediaType } from "../parse/body.js";
import { parsePreconditions } from "../parse/preconditions.js";
import { parseTtl } from "../parse/ttl.js";
import { parseAppEnv } from "../parse/values.js";
import { checkPreconditions } from "../rules/preconditions.js";
import { deleteRegistration, postRegistration, putRegistration, type Timing } from "../rules/registration.js";

/** Koa glue for `/<application>/<environment>`: parse → rules → store → answer. */

type Rule = (current: Registration | undefined, change: Change, appEnv: AppEnv, timing: Timing) => Registration | null;

export const GROUP_METHODS = ["GET", "HEAD", "PUT", "POST", "DELETE"] as const;

function idOf(ctx: Context): GroupId {
  const params = (ctx as Context & { params: Record<string, string | undefined> }).params;
  return { kind: "targets", ...rejectAs("bad_name", () => parseAppEnv(params.application ?? "", params.environment ?? "")) };
}

/** The body koa-body read as text (for the types it was told about), as targets and labels. */
function changeOf(ctx: Context): Change {
  const text: unknown = ctx.request.body;
  if (typeof text === "string") {
    const format = formatOf(ctx.get("Content-Type"));
    if (format === undefined) throw unsupportedMediaType(ctx.get("Content-Type"));
    return parseBody(text, format);
  }
  const declaredLength = ctx.get("Content-Length");
  const hasBody = ctx.get("Transfer-Encoding") !== "" || (declaredLength !== "" && declaredLength !== "0");
  if (hasBody) throw unsupportedMediaType(ctx.get("Content-Type") || undefined);
  return {};
}

export function getGroup(store: Store) {
  return (ctx: Context): void => {
    const group = store.get(idOf(ctx));
    if (group !== undefined) ctx.set("ETag", etagOf(group));
    ctx.body = group === undefined ? [] : [group];
  };
}

function mutate(store: Store, rule: Rule, acceptsTtl: boolean) {
  return async (ctx: Context): Promise<void> => {
    const id = idOf(ctx);
    const ttlMs = acceptsTtl ? parseTtl(ctx.query.ttl) : undefined;
    const preconditions = parsePreconditions(ctx.get("If-Match"), ctx.get("If-None-Match"));
    const change = rejectAs("bad_body", () => changeOf(ctx));
    // `now` is the store's clock when the change is applied: a deadline counts from then.
    const { before, after } = await store.update(id, (current, now) => {
      checkPreconditions(current?.group, preconditions);
      return rejectAs("rule", () => rule(current, change, id, { now, ttlMs }));
    });
    if (after !== null) ctx.set("ETag", etagOf(after.group));
    const answer = after?.group ?? before?.group;
    ctx.body = answer === undefined ? [] : [answer];
  };
}

export const putGroup = (store: Store) => mutate(store, putRegistration, true);
export const postGroup = (store: Store) => mutate(store, postRegistration, true);
export const deleteGroup = (store: Store) => mutate(store, (current, change, appEnv) => deleteRegistration(current, change, appEnv), false);

const ENCODINGS = new Set(["gzip", "deflate", "br", "identity"]);

/**
 * Before the body is read: one Content-Encoding the reader knows (names are case-insensitive,
 * RFC 9110 §8.4.1), or a 415 that says which are; the reader itself only says it could not read.
 */
export function supportedEncoding(ctx: Context, next: () => Promise<void>): Promise<void> {
  const given = ctx.get("Content-Encoding").trim();
  if (given === "") return next();
  const coding = given.toLowerCase();
  if (!ENCODINGS.has(coding)) {
    throw new RuleError(
      415,
      `Content-Encoding ${JSON.stringify(given)} is not supported: send the body as it is, or compressed once with gzip, deflate or br`,
      {},
      "media_type",
    );
  }
  ctx.req.headers["content-encoding"] = coding;
  return next();
}

export function methodNotAllowed(ctx: Context): never {
  throw new RuleError(
    405,
    `${ctx.method} is not supported on /<application>/<environment>; use ${GROUP_METHODS.join(", ")}`,
    { Allow: GROUP_METHODS.join(", ") },
  );
}
