import { createHash } from "node:crypto";
import { serializeGroup } from "./directory/group-file.js";
import type { TargetGroup } from "./model.js";

/**
 * The strong ETag of a group (docs/api.md): `"` + the first 27 characters of the
 * base64url SHA-256 of the file's bytes + `"` (162 bits). The file's bytes are
 * the group serialised the one way this service writes it, and in etcd mode the
 * group's key holds exactly those bytes, so every instance computes the same
 * tag for the same group, and any change to the targets or labels changes it.
 * Deadlines (`?ttl=`) are not part of the file, so a heartbeat that only renews
 * them leaves the tag alone: a read-modify-write of the labels is not
 * disturbed by the hosts' timers.
 */
export function etagOf(group: TargetGroup): string {
  let tag = cache.get(group);
  if (tag === undefined) {
    tag = `"${createHash("sha256").update(serializeGroup(group), "utf8").digest("base64url").slice(0, 27)}"`;
    cache.set(group, tag);
  }
  return tag;
}

/** Groups are never changed in place, so a tag computed once per group object stays true. */
const cache = new WeakMap<TargetGroup, string>();
