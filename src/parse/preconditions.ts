import { RuleError } from "../errors.js";

/**
 * `If-Match` and `If-None-Match` of a write (docs/api.md), parsed: `*`, or the
 * entity-tags listed (RFC 9110, sections 13.1.1-2). A weak tag `W/"…"` is kept with its
 * prefix: it can never match strongly, so it never satisfies If-Match.
 */
export interface Preconditions {
  readonly ifMatch?: "*" | readonly string[];
  readonly ifNoneMatch?: "*" | readonly string[];
}

const ENTITY_TAG = /^(?:W\/)?"[\x21\x23-\x7E\x80-\xFF]*"$/;

export function parsePreconditions(ifMatch: string, ifNoneMatch: string): Preconditions {
  return { ifMatch: parseHeader("If-Match", ifMatch), ifNoneMatch: parseHeader("If-None-Match", ifNoneMatch) };
}

function parseHeader(name: string, value: string): "*" | readonly string[] | undefined {
  const text = value.trim();
  if (text === "") return undefined;
  if (text === "*") return "*";
  const tags = text.split(",").map((tag) => tag.trim()).filter((tag) => tag !== "");
  const refuse = (message: string): never => {
    throw new RuleError(400, `${name}: ${message}`, {}, "bad_request");
  };
  if (tags.length === 0) refuse(`${text} lists no entity-tag: send the ETag header of a GET as it came (${name}: "…"), or *`);
  // Two headers, or * in a list, come joined by commas: * means "anything", so it stands alone.
  if (tags.includes("*")) refuse(`* stands alone: send ${name}: * or a list of entity-tags, not both`);
  const bad = tags.filter((tag) => !ENTITY_TAG.test(tag));
  if (bad.length > 0) {
    // The value as it came, not JSON-quoted: a tag sent without its quotes must not be shown with them.
    const fixable = bad.every((tag) => /^[^"]*$/.test(tag) && ENTITY_TAG.test(`"${tag}"`));
    const meant = tags.map((tag) => (ENTITY_TAG.test(tag) ? tag : `"${tag}"`)).join(", ");
    refuse(
      `${bad.join(", ")} ${bad.length === 1 ? "is not an entity-tag" : "are not entity-tags"}: send the ETag header of a GET as it came, ` +
        `double quotes included (${name}: "…"), a comma-separated list of them, or *.${fixable ? ` Did you mean ${name}: ${meant}?` : ""}`,
    );
  }
  return tags;
}
