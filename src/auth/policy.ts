import { createHash, timingSafeEqual } from "node:crypto";
import yaml from "js-yaml";

/** One write token, as the tokens file declares it. The token itself is never held, only its SHA-256. */
export interface Token {
  readonly name: string;
  readonly digest: Buffer;
  /** The patterns as written, for messages. */
  readonly applications: readonly string[];
  readonly patterns: readonly RegExp[];
}

/** Who may do what, from one reading of AUTH_TOKENS_FILE. Immutable: a reload swaps in a new one. */
export interface Policy {
  /** "token": every GET of registered data needs a token from the file too. */
  readonly read: "public" | "token";
  readonly tokens: readonly Token[];
}

export class PolicyError extends Error {
  override readonly name = "PolicyError";
}

const TOKEN_NAME = /^[A-Za-z0-9_.-]{1,64}$/;
const SHA256_HEX = /^[0-9a-fA-F]{64}$/;
const APPLICATION_PATTERN = /^[A-Za-z0-9_.*-]{1,128}$/;
const HOW_TO_HASH = 'printf %s "$TOKEN" | sha256sum';

export function sha256(text: string): Buffer {
  return createHash("sha256").update(text, "utf8").digest();
}

/**
 * The token whose digest matches, or undefined. Every stored digest is compared,
 * in constant time and without stopping at a match, so the answer time says
 * nothing about how close a guess was or which entry it hit.
 */
export function findToken(policy: Policy, presented: string): Token | undefined {
  const digest = sha256(presented);
  let found: Token | undefined;
  for (const token of policy.tokens) {
    const same = timingSafeEqual(digest, token.digest);
    if (same && found === undefined) found = token;
  }
  return found;
}

export function mayChange(token: Token, application: string): boolean {
  return token.patterns.some((pattern) => pattern.test(application));
}

/**
 * The text of a tokens file → a Policy, or a PolicyError that says where the
 * file is wrong. Messages never quote a `sha256` value: someone may have pasted
 * the token itself there, and these messages end up in the log.
 */
export function parsePolicy(text: string): Policy {
  let document: unknown;
  try {
    document = yaml.load(text, { schema: yaml.CORE_SCHEMA });
  } catch (error) {
    // js-yaml's message quotes the offending lines; the line number is enough and quotes no secret.
    const line = error instanceof yaml.YAMLException ? ` at line ${error.mark.line + 1}` : "";
    const reason = error instanceof yaml.YAMLException ? error.reason : "unreadable";
    throw new PolicyError(`it does not parse as YAML${line}: ${reason}`);
  }
  if (!isMapping(document)) throw new PolicyError('it must be a mapping with the keys "tokens" and optionally "read"');
  refuseUnknownKeys(document, ["read", "tokens"], "the top level");

  const read = document.read ?? "public";
  if (read !== "public" && read !== "token") {
    throw new PolicyError(`"read" must be "public" (GETs need no token) or "token" (GETs need a token too)`);
  }
  if (!Array.isArray(document.tokens)) {
    throw new PolicyError('"tokens" must be a list of {name, sha256, applications}');
  }

  const tokens = document.tokens.map((entry: unknown, index) => parseToken(entry, `tokens[${index}]`));
  const names = new Set<string>();
  const digests = new Set<string>();
  for (const token of tokens) {
    if (names.has(token.name)) throw new PolicyError(`the token name ${JSON.stringify(token.name)} is used twice`);
    names.add(token.name);
    const hex = token.digest.toString("hex");
    if (digests.has(hex)) throw new PolicyError(`token ${JSON.stringify(token.name)} has the same sha256 as another token`);
    digests.add(hex);
  }
  return { read, tokens };
}

function parseToken(entry: unknown, where: string): Token {
  if (!isMapping(entry)) throw new PolicyError(`${where} must be a mapping with name, sha256 and applications`);
  refuseUnknownKeys(entry, ["name", "sha256", "applications"], where);
  const { name, sha256: hex, applications = [] } = entry;
  if (typeof name !== "string" || !TOKEN_NAME.test(name)) {
    throw new PolicyError(`${where}.name must be 1-64 characters from [A-Za-z0-9_.-], e.g. ci-billing`);
  }
  if (typeof hex !== "string" || !SHA256_HEX.test(hex)) {
    throw new PolicyError(
      `${where}.sha256 (token ${JSON.stringify(name)}) must be the 64 hex digits of the token's SHA-256: ${HOW_TO_HASH}`,
    );
  }
  if (!Array.isArray(applications) || applications.some((pattern) => typeof pattern !== "string")) {
    throw new PolicyError(`${where}.applications (token ${JSON.stringify(name)}) must be a list of application patterns`);
  }
  for (const pattern of applications as string[]) {
    if (!APPLICATION_PATTERN.test(pattern)) {
      throw new PolicyError(
        `${where}.applications (token ${JSON.stringify(name)}): ${JSON.stringify(pattern)} is not an application ` +
          "name or pattern: use [A-Za-z0-9_.-] and * for any run of characters, e.g. billing-*",
      );
    }
  }
  return {
    name,
    digest: Buffer.from(hex, "hex"),
    applications: applications as string[],
    patterns: (applications as string[]).map(patternOf),
  };
}

/** `billing-*` → /^billing-.*$/; `*` is the only wildcard, everything else is literal. */
function patternOf(glob: string): RegExp {
  const literal = glob.split("*").map((part) => part.replace(/[.]/g, "\\."));
  return new RegExp(`^${literal.join(".*")}$`);
}

function isMapping(value: unknown): value is Record<string, unknown> {
  return typeof value === "object" && value !== null && !Array.isArray(value);
}

function refuseUnknownKeys(mapping: Record<string, unknown>, allowed: readonly string[], where: string): void {
  const unknown = Object.keys(mapping).find((key) => !allowed.includes(key));
  if (unknown !== undefined) {
    // A typo is worth quoting; something as long as a token is not.
    const shown = unknown.length <= 32 ? JSON.stringify(unknown) : "(a long key, not shown)";
    throw new PolicyError(`unknown key ${shown} in ${where}; allowed: ${allowed.join(", ")}`);
  }
}
