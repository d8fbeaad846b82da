import type { Context, Middleware } from "koa";
import { RuleError } from "../errors.js";
import { findToken, mayChange, type Policy, type Token } from "./policy.js";

/** Where the middlewares read the policy in force; TokensFile swaps it on reload. */
export interface PolicySource {
  readonly policy: Policy;
}

export interface Guards {
  /** Before every GET of registered data: lets everyone through when the file says `read: public`. */
  readonly read: Middleware;
  /** Before PUT/POST/DELETE: a known token whose applications include the one in the path. */
  readonly write: Middleware;
}

const REALM = 'Bearer realm="file_sd"';
const BEARER = /^Bearer +([!-~]+) *$/i;

/** Guards that let everything through: what the service does when AUTH_TOKENS_FILE is not set. */
export const OPEN: Guards = {
  read: (_ctx, next) => next(),
  write: (_ctx, next) => next(),
};

export function guards(source: PolicySource): Guards {
  return {
    read: async (ctx, next) => {
      const policy = source.policy;
      if (policy.read === "token") identify(ctx, policy);
      await next();
    },
    write: async (ctx, next) => {
      const token = identify(ctx, source.policy);
      const application = (ctx as Context & { params: Record<string, string | undefined> }).params.application ?? "";
      if (!mayChange(token, application)) {
        const scope = token.applications.length === 0 ? "no application (read only)" : token.applications.join(", ");
        throw new RuleError(
          403,
          `token ${JSON.stringify(token.name)} may not change application ${JSON.stringify(application)}; ` +
            `it may change: ${scope}. Ask for its applications to be extended in AUTH_TOKENS_FILE`,
          { "WWW-Authenticate": `${REALM}, error="insufficient_scope"` },
        );
      }
      await next();
    },
  };
}

/**
 * The token the request carries, or a 401. The token never goes into a message
 * or the log; its name does, on the request's log line.
 */
function identify(ctx: Context, policy: Policy): Token {
  const header = ctx.get("Authorization");
  if (header === "") {
    throw new RuleError(401, "this needs a token: send Authorization: Bearer <token> (see AUTH_TOKENS_FILE)", {
      "WWW-Authenticate": REALM,
    });
  }
  const presented = BEARER.exec(header)?.[1];
  if (presented === undefined) {
    throw new RuleError(401, "the Authorization header must be: Bearer <token>", {
      "WWW-Authenticate": `${REALM}, error="invalid_request"`,
    });
  }
  const token = findToken(policy, presented);
  if (token === undefined) {
    throw new RuleError(401, "the bearer token is not one of the tokens in AUTH_TOKENS_FILE", {
      "WWW-Authenticate": `${REALM}, error="invalid_token"`,
    });
  }
  ctx.state.tokenName = token.name;
  return token;
}
