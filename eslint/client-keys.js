// @ts-check
/**
 * The project's one rule for data keyed by what a client sent (application,
 * environment, target, label names, header values): such a string is a key of
 * a `Map`, or of a plain object read only through `Object.hasOwn`,
 * `Object.entries` and friends, never `object[key]`. On an ordinary object,
 * `expires["constructor"]` finds `Object`, and `labels["__proto__"] = "x"` is
 * silently dropped: both are valid names here (see src/model.ts).
 *
 * The rule reports `object[key]` (read, write or delete) and `key in object`
 * where `key` may be any string, unless `object` is an array, a tuple or a
 * string; and every `for…in`. Keys whose type is a union of literals
 * (`RANK[health]`) are fine: the program, not a client, chose them. Where type
 * information is missing (the browser script, ui/*.js), every computed key
 * that is not a literal is reported.
 */
import { ESLintUtils } from "@typescript-eslint/utils";
import ts from "typescript";

const MESSAGE = "a client's string as a key of an ordinary object: use a Map, or own() (src/model.ts, keys from clients)";

/** @param {import("typescript").Type} type */
function mayBeAnyString(type) {
  if (type.isUnion()) return type.types.some(mayBeAnyString);
  if (type.flags & (ts.TypeFlags.Any | ts.TypeFlags.Unknown)) return true;
  if (type.flags & ts.TypeFlags.String) return true;
  // `${string}@${string}` and the like: any string of a shape.
  if (type.flags & ts.TypeFlags.TemplateLiteral) return true;
  if (type.flags & ts.TypeFlags.StringMapping) return true;
  return false;
}

/**
 * @param {import("typescript").TypeChecker} checker
 * @param {import("typescript").Type} type
 */
function isIndexedByPosition(checker, type) {
  if (type.isUnion()) return type.types.every((member) => isIndexedByPosition(checker, member));
  if (type.flags & ts.TypeFlags.StringLike) return true;
  return checker.isArrayType(type) || checker.isTupleType(type);
}

export default {
  meta: { type: "problem", docs: { description: "no client string as a key of an ordinary object" }, schema: [] },
  /** @param {import("eslint").Rule.RuleContext} context */
  create(context) {
    const services = context.sourceCode.parserServices;
    const typed = services?.program != null && services.esTreeNodeToTSNodeMap != null;
    /** @param {import("estree").Node} node */
    const typeOf = (node) => {
      const parserServices = ESLintUtils.getParserServices(/** @type {never} */ (context));
      return parserServices.getTypeAtLocation(/** @type {never} */ (node));
    };
    return {
      ForInStatement(node) {
        context.report({ node, message: `for…in walks inherited keys: use Object.entries or a Map (src/model.ts, keys from clients)` });
      },
      /** @param {import("estree").MemberExpression} node */
      MemberExpression(node) {
        if (!node.computed || node.property.type === "Literal") return;
        if (!typed) {
          context.report({ node, message: `a computed key in the browser script: use a Map, .at() or for…of (src/model.ts, keys from clients)` });
          return;
        }
        const checker = ESLintUtils.getParserServices(/** @type {never} */ (context)).program.getTypeChecker();
        if (!mayBeAnyString(typeOf(node.property))) return;
        if (isIndexedByPosition(checker, typeOf(node.object))) return;
        context.report({ node, message: MESSAGE });
      },
      /** @param {import("estree").BinaryExpression} node */
      BinaryExpression(node) {
        if (node.operator !== "in" || node.left.type === "Literal" || node.left.type === "PrivateIdentifier") return;
        if (typed && !mayBeAnyString(typeOf(node.left))) return;
        context.report({ node, message: `\`in\` sees inherited keys: use Object.hasOwn or a Map (src/model.ts, keys from clients)` });
      },
    };
  },
};
