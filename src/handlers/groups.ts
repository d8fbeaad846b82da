import type { Context } from "koa";
import { rejectAs, RuleError } from "../errors.js";
import type { Store } from "../store.js";
import type { Change, GroupId, Kind, Registration, TargetGroup } from "../model.js";
import { etagOf } from "../etag.js";
import { formatOf, parseBody, unsupportedMediaType } from "../parse/body.js";
import { parsePreconditions } from "../parse/preconditions.js";
import { parseTtl } from "../parse/ttl.js";
import { parseAppEnv } from "../parse/values.js";
import { checkPreconditions } from "../rules/preconditions.js";
import { deleteRegistration, postRegistration, putRegistration, type Timing } from "../rules/registration.js";
import type { Addressed } from "../rules/rules.js";

/**
 * Koa glue for `/<application>/<environment>` and its probe group
 * `/<application>/<environment>/probes`: parse → rules → store → answer. One set of handlers
 * for both kinds; the kind picks the grammar of the targets and the group's file.
 */

type Rule = (current: Registration | undefined, change: Change, group: Addressed, timing: Timing) => Registration | null;

export const GROUP_METHODS = ["GET", "HEAD", "PUT", "POST", "DELETE"] as const;

/** The route of each kind, as messages show it. */
export const GROUP_ROUTES: Readonly<Record<Kind, string>> = {
  targets: "/<application>/<environment>",
  probes: "/<application>/<environment>/probes",
};

/** The group a request addresses: the names in its path, checked, and the kind of its route. */
export function groupIdOf(ctx: Context, kind: Kind): GroupId {
  const params = (ctx as Context & { params: Record<string, string | undefined> }).params;
  return { kind, ...rejectAs("bad_name", () => parseAppEnv(params.application ?? "", params.environment ?? "")) };
}

/** The body koa-body read as text (for the types it was told about), as targets and labels. */
function changeOf(ctx: Context, kind: Kind): Change {
  const text: unknown = ctx.request.body;
  if (typeof text === "string") {
    const format = formatOf(ctx.get("Content-Type"));
    if (format === undefined) throw unsupportedMediaType(ctx.get("Content-Type"));
    return parseBody(text, format, kind);
  }
  const declaredLength = ctx.get("Content-Length");
  const hasBody = ctx.get("Transfer-Encoding") !== "" || (declaredLength !== "" && declaredLength !== "0");
  if (hasBody) throw unsupportedMediaType(ctx.get("Content-Type") || undefined);
  return {};
}

export function getGroup(store: Store, kind: Kind) {
  return (ctx: Context): void => {
    const group = store.get(groupIdOf(ctx, kind));
    if (group !== undefined) ctx.set("ETag", etagOf(group));
    answerWith(ctx, group);
  };
}

const NO_GROUP = Buffer.from("[]");
/** Groups are never changed in place, so the answer made once for a group object stays true (as its ETag does). */
const answers = new WeakMap<TargetGroup, Buffer>();

/** `[group]`, or `[]` when there is none, as JSON: the bytes made once per group, not once per request. */
function answerWith(ctx: Context, group: TargetGroup | undefined): void {
  ctx.set("Content-Type", "application/json; charset=utf-8");
  ctx.body = group === undefined ? NO_GROUP : answerOf(group);
}

function answerOf(group: TargetGroup): Buffer {
  let bytes = answers.get(group);
  if (bytes === undefined) {
    bytes = Buffer.from(JSON.stringify([group]));
    answers.set(group, bytes);
  }
  return bytes;
}

function mutate(store: Store, kind: Kind, rule: Rule, acceptsTtl: boolean) {
  return async (ctx: Context): Promise<void> => {
    const id = groupIdOf(ctx, kind);
    const ttlMs = acceptsTtl ? parseTtl(ctx.query.ttl) : undefined;
    const preconditions = parsePreconditions(ctx.get("If-Match"), ctx.get("If-None-Match"));
    const change = rejectAs("bad_body", () => changeOf(ctx, kind));
    // `now` is the store's clock when the change is applied: a deadline counts from then.
    const { before, after } = await store.update(id, (current, now) => {
      checkPreconditions(current?.group, preconditions);
      return rejectAs("rule", () => rule(current, change, id, { now, ttlMs }));
    });
    if (after !== null) ctx.set("ETag", etagOf(after.group));
    // A heartbeat leaves the group as it was: its log line is at debug (src/handlers/frame.ts).
    ctx.state.groupUnchanged = before !== undefined && after !== null && after.group === before.group;
    answerWith(ctx, after?.group ?? before?.group);
  };
}

export const putGroup = (store: Store, kind: Kind) => mutate(store, kind, putRegistration, true);
export const postGroup = (store: Store, kind: Kind) => mutate(store, kind, postRegistration, true);
export const deleteGroup = (store: Store, kind: Kind) =>
  mutate(store, kind, (current, change, group) => deleteRegistration(current, change, group), false);

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

export function methodNotAllowed(kind: Kind) {
  return (ctx: Context): never => {
    throw new RuleError(405, `${ctx.method} is not supported on ${GROUP_ROUTES[kind]}; use ${GROUP_METHODS.join(", ")}`, {
      Allow: GROUP_METHODS.join(", "),
    });
  };
}
