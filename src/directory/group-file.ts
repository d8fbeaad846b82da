import type { Kind, TargetGroup } from "../model.js";
import { labelNameProblem, targetProblemOf } from "../parse/values.js";

/** What Prometheus reads: a list holding our one group. */
export function serializeGroup(group: TargetGroup): string {
  return `${JSON.stringify([{ targets: group.targets, labels: group.labels }], null, 2)}\n`;
}

/**
 * A managed file's contents → its group; `undefined` for `[]` (nothing registered).
 * Throws with the reason when the file is not a group this service could have written; the
 * kind (the file's folder) decides what a target may be.
 */
export function parseGroupFile(text: string, kind: Kind): TargetGroup | undefined {
  const targetProblem = targetProblemOf(kind);
  const document: unknown = JSON.parse(text);
  if (!Array.isArray(document)) throw new Error("the file is not a JSON list of target groups");
  if (document.length === 0) return undefined;
  if (document.length > 1) throw new Error(`the file holds ${document.length} target groups; a managed file holds one`);
  const group: unknown = document[0];
  if (typeof group !== "object" || group === null || Array.isArray(group)) {
    throw new Error("the target group is not a mapping");
  }
  const extra = Object.keys(group).filter((key) => key !== "targets" && key !== "labels");
  if (extra.length > 0) throw new Error(`unknown key ${JSON.stringify(extra[0])} in the target group`);
  const { targets, labels = {} } = group as { targets?: unknown; labels?: unknown };

  if (!Array.isArray(targets) || targets.length === 0) throw new Error('"targets" is not a non-empty list');
  for (const target of targets) {
    if (typeof target !== "string") throw new Error(`target ${JSON.stringify(target)} is not a string`);
    const problem = targetProblem(target);
    if (problem !== undefined) throw new Error(`target ${JSON.stringify(target)}: ${problem}`);
  }
  if (new Set(targets).size !== targets.length) throw new Error("a target is listed twice");

  if (typeof labels !== "object" || labels === null || Array.isArray(labels)) {
    throw new Error('"labels" is not a mapping');
  }
  for (const [name, value] of Object.entries(labels)) {
    const problem = labelNameProblem(name);
    if (problem !== undefined) throw new Error(problem);
    if (typeof value !== "string" || value === "") throw new Error(`label ${JSON.stringify(name)} is not a non-empty string`);
  }
  return { targets: targets as string[], labels: labels as Record<string, string> };
}
