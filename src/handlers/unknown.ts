import type { Context, Middleware } from "koa";
import { RuleError } from "../errors.js";
import { closest } from "../parse/suggest.js";

/**
 * What a client asked for that is not there: a query parameter no route
 * takes, a `/-/` endpoint that does not exist, a path no route matches. Each
 * answer names what is there, and the closest one when a typo is likely.
 */

/**
 * The query parameters `route` takes (e.g. `ttl` on PUT and POST); any other is
 * a 400 that names it, so `?tll=60s` never registers a permanent target.
 * `elsewhere` says where a known parameter belongs when this route does not take it.
 */
export function acceptsOnly(route: string, accepted: readonly string[], elsewhere: ReadonlyMap<string, string> = new Map()): Middleware {
  const known = new Set(accepted);
  const takes = accepted.length === 0 ? "takes no query parameters" : `takes ${accepted.map((name) => `?${name}=`).join(", ")}`;
  return (ctx, next) => {
    // Most requests have no query at all: no parse, no list.
    if (ctx.querystring === "") return next();
    // Koa's query is a null-prototype object: its keys are the client's, read only as a list.
    const unknown = Object.keys(ctx.query).filter((name) => !known.has(name));
    if (unknown.length === 0) return next();
    const [name = ""] = unknown;
    const belongs = elsewhere.get(name);
    const guess = belongs === undefined ? closest(name, accepted) : undefined;
    throw new RuleError(
      400,
      `unknown query parameter ${JSON.stringify(name)}${guess !== undefined ? ` (did you mean ?${guess}=?)` : ""}: ${ctx.method} ${route} ${takes}` +
        (belongs !== undefined ? ` (${belongs})` : "") +
        ". Nothing was changed",
      {},
      "bad_request",
    );
  };
}

/** HTTP/1.1 requires a Host header (RFC 9112 §3.2); Node's own refusal is a bare 400, so the app says it. */
export function requireHost(ctx: Context): void {
  if (ctx.req.httpVersionMajor === 1 && ctx.req.httpVersionMinor >= 1 && ctx.get("Host") === "") {
    throw new RuleError(400, "an HTTP/1.1 request needs a Host header, e.g. Host: sd.example.com:12345", {}, "bad_request");
  }
}

/** The service's own endpoints: `/-/` is reserved for them, which is why a name cannot start with `-`. */
export const RESERVED_ENDPOINTS = ["/-/healthy", "/-/ready", "/-/http_sd", "/-/status", "/-/openapi.json", "/-/ui/app.js", "/-/ui/view.js", "/-/ui/app.css", "/-/ui/icon.svg"] as const;

/** Any `/-/…` path that no endpoint answers: a 404 that lists them, never a complaint about the name "-". */
export function reservedNotFound(ctx: Context): never {
  const guess = closest(ctx.path.replace(/\/+$/, ""), RESERVED_ENDPOINTS);
  throw new RuleError(
    404,
    `no endpoint ${ctx.path}${guess === undefined ? "." : `; did you mean ${guess}?`} Paths under /-/ are the service's own: ` +
      `${RESERVED_ENDPOINTS.join(", ")}; targets live at /<application>/<environment>`,
    {},
    "not_found",
  );
}

/** The last middleware: nothing matched. */
export function notFound(ctx: Context): never {
  const guess = closest(ctx.path, ["/", "/metrics", ...RESERVED_ENDPOINTS]);
  throw new RuleError(
    404,
    `no route for ${ctx.method} ${ctx.path}${guess === undefined ? "" : ` (did you mean ${guess}?)`}: ` +
      "targets live at /<application>/<environment>, e.g. /billing/prod-hou, and URLs to probe at /<application>/<environment>/probes",
  );
}
