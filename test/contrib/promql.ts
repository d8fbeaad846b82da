import { readFile } from "node:fs/promises";
import { join } from "node:path";
import { parser } from "@prometheus-io/lezer-promql";
import { load } from "js-yaml";
import { CONTRIB } from "./support.js";

/** PromQL as Prometheus' own UI parses it (@prometheus-io/lezer-promql), for the rules and the dashboard. */

export const RULES = join(CONTRIB, "prometheus", "file-sd-writer.rules.yml");
export const DASHBOARD = join(CONTRIB, "grafana", "file-sd-writer.json");

export interface AlertRule {
  readonly alert: string;
  readonly expr: string;
  readonly for?: string;
  readonly labels?: Record<string, string>;
  readonly annotations?: Record<string, string>;
}

export async function alertRules(): Promise<AlertRule[]> {
  const rules = load(await readFile(RULES, "utf8")) as { groups: { rules: AlertRule[] }[] };
  return rules.groups.flatMap((group) => group.rules);
}

/**
 * Grafana replaces its variables before Prometheus sees a query: `$__rate_interval` and the
 * other interval variables by a duration, `$job`/`${job}` by a value (inside a label matcher's
 * string). Do the same with stand-ins, so that the parser sees what Prometheus would.
 */
export function withGrafanaVariables(expr: string): string {
  return expr
    .replace(/\$(__rate_interval|__interval|__range)\b|\$\{(__rate_interval|__interval|__range)\}/g, "5m")
    .replace(/\$\{?[A-Za-z_][A-Za-z0-9_]*\}?/g, "stand-in");
}

/** The metric names `expr` selects; throws with the position of the first syntax error. */
export function metricNamesOf(expr: string): string[] {
  const tree = parser.parse(expr);
  const names = new Set<string>();
  let error: number | undefined;
  tree.iterate({
    enter(node) {
      if (node.type.isError && error === undefined) error = node.from;
      if (node.name !== "VectorSelector") return;
      const first = node.node.firstChild;
      if (first?.name === "Identifier") {
        names.add(expr.slice(first.from, first.to));
        return;
      }
      // {__name__="..."}: the name is a matcher; anything looser (a regex) cannot be checked.
      const matcher = /__name__\s*=\s*"([^"]+)"/.exec(expr.slice(node.from, node.to));
      if (matcher === null) throw new Error(`a selector without a metric name in ${expr}`);
      names.add(matcher[1] ?? "");
    },
  });
  if (error !== undefined) throw new Error(`PromQL syntax error at ${error} in:\n${expr}\n${" ".repeat(error)}^`);
  return [...names];
}
