import { etagOf } from "../etag.js";
import { RuleError } from "../errors.js";
import type { TargetGroup } from "../model.js";
import type { Preconditions } from "../parse/preconditions.js";

/**
 * docs/api.md: the write goes ahead only when the group it would change is the
 * one the client read. Runs inside the store's mutation, on the value the
 * change is computed from, so the check and the write are one step on both
 * backends (in etcd mode the transaction compares the revision it read).
 * A 412 comes before any rule of rules.ts: a client that read a stale group learns
 * that first.
 */
export function checkPreconditions(current: TargetGroup | undefined, { ifMatch, ifNoneMatch }: Preconditions): void {
  const tag = current === undefined ? undefined : etagOf(current);
  if (ifMatch !== undefined) {
    if (tag === undefined) {
      throw new RuleError(412, "If-Match: nothing is registered here (deleted since you read it?); nothing changed. GET it again", {}, "precondition");
    }
    // Strong comparison: a weak tag W/"…" never matches.
    if (ifMatch !== "*" && !ifMatch.includes(tag)) {
      throw new RuleError(
        412,
        `If-Match: the group changed since you read it (its ETag is now ${tag}, not ${ifMatch.join(", ")}); nothing changed. ` +
          "GET it again, apply your change to what it holds, and send it with the new ETag",
        { ETag: tag },
        "precondition",
      );
    }
  }
  if (ifNoneMatch !== undefined && tag !== undefined) {
    // Weak comparison: W/"x" and "x" name the same group.
    const listed = ifNoneMatch === "*" || ifNoneMatch.some((given) => given.replace(/^W\//, "") === tag);
    if (listed) {
      throw new RuleError(
        412,
        ifNoneMatch === "*"
          ? `If-None-Match: * asks to create, but something is already registered here (ETag ${tag}); nothing changed`
          : `If-None-Match: the group is still ${tag}; nothing changed`,
        { ETag: tag },
        "precondition",
      );
    }
  }
}
