import { RuleError } from "../../src/errors.js";

/** The RuleError `rule` throws; fails the test when it throws none. */
export function refused(rule: () => unknown): RuleError {
  try {
    rule();
  } catch (error) {
    if (error instanceof RuleError) return error;
    throw error;
  }
  throw new Error("expected the rule to refuse");
}
