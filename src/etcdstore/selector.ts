import { parser } from "@prometheus-io/lezer-promql";
import { own, type Labels } from "../model.js";

/** `GROUP_SELECTOR`: which groups this instance writes files for. */
export type GroupSelector = (labels: Labels) => boolean;

export const EVERY_GROUP: GroupSelector = () => true;

interface Matcher {
  readonly name: string;
  readonly op: "=" | "!=" | "=~" | "!~";
  readonly value: string;
}

export class SelectorError extends Error {
  override readonly name = "SelectorError";
}

/**
 * Prometheus label matchers, `{region="eu",env=~"prod-.*"}`, parsed by
 * Prometheus' own grammar (@prometheus-io/lezer-promql), with Prometheus'
 * meaning: a regex matches the whole value, and a label that is absent has the
 * value "". Throws a SelectorError that shows where the text goes wrong.
 */
export function parseGroupSelector(text: string): GroupSelector {
  const matchers = parseMatchers(text);
  const tests = matchers.map(({ name, op, value }) => {
    if (op === "=") return (labels: Labels) => (own(labels, name) ?? "") === value;
    if (op === "!=") return (labels: Labels) => (own(labels, name) ?? "") !== value;
    const regex = anchored(value, text);
    if (op === "=~") return (labels: Labels) => regex.test(own(labels, name) ?? "");
    return (labels: Labels) => !regex.test(own(labels, name) ?? "");
  });
  return (labels) => tests.every((test) => test(labels));
}

function parseMatchers(text: string): Matcher[] {
  const tree = parser.parse(text);
  const top = tree.topNode.firstChild;
  let problem: { from: number; message: string } | undefined;
  tree.iterate({
    enter: (node) => {
      if (problem === undefined && node.type.isError) problem = { from: node.from, message: "unexpected input" };
    },
  });
  if (problem === undefined && (top === null || top.name !== "VectorSelector" || top.nextSibling !== null)) {
    problem = { from: 0, message: "expected label matchers in braces, e.g. {region=\"eu\",env=~\"prod-.*\"}" };
  }
  if (problem === undefined && top?.getChild("Identifier") !== null) {
    problem = { from: 0, message: "a metric name has no meaning here: give only the label matchers in braces" };
  }
  if (problem !== undefined) throw new SelectorError(where(text, problem.from, problem.message));

  const matchers: Matcher[] = [];
  const list = top!.getChild("LabelMatchers");
  for (let node = list?.firstChild ?? null; node !== null; node = node.nextSibling) {
    if (node.name !== "UnquotedLabelMatcher" && node.name !== "QuotedLabelMatcher") continue;
    const nameNode = node.getChild("LabelName") ?? node.getChild("QuotedLabelName");
    const opNode = node.getChild("MatchOp");
    const valueNode = node.getChildren("StringLiteral").at(-1);
    if (nameNode === null || opNode === null || valueNode === undefined) {
      throw new SelectorError(where(text, node.from, "a label matcher needs a name, an operator and a quoted value"));
    }
    const rawName = text.slice(nameNode.from, nameNode.to);
    matchers.push({
      name: nameNode.name === "QuotedLabelName" ? unquote(rawName) : rawName,
      op: text.slice(opNode.from, opNode.to) as Matcher["op"],
      value: unquote(text.slice(valueNode.from, valueNode.to)),
    });
  }
  if (matchers.length === 0) throw new SelectorError(where(text, 0, "give at least one label matcher"));
  return matchers;
}

/** A PromQL string literal: "…" and '…' with Go escapes, `…` raw. */
function unquote(literal: string): string {
  const quote = literal[0];
  const body = literal.slice(1, -1);
  if (quote === "`") return body;
  if (quote === "'") return JSON.parse(`"${body.replace(/\\'/g, "'").replace(/"/g, '\\"')}"`) as string;
  return JSON.parse(literal) as string;
}

function anchored(pattern: string, text: string): RegExp {
  try {
    return new RegExp(`^(?:${pattern})$`, "su");
  } catch (error) {
    throw new SelectorError(`GROUP_SELECTOR ${text}: the regular expression ${JSON.stringify(pattern)} does not compile: ${(error as Error).message}`);
  }
}

/** The selector with a caret under the place the parser stopped at. */
function where(text: string, at: number, message: string): string {
  return `GROUP_SELECTOR does not parse at character ${at + 1}: ${message}\n  ${text}\n  ${" ".repeat(at)}^`;
}
