import { readFile } from "node:fs/promises";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { startTestService, type TestService } from "../helpers.js";
import { startEtcdCluster, type EtcdCluster } from "../support/etcd.js";
import { alertRules, DASHBOARD, metricNamesOf, withGrafanaVariables } from "./promql.js";

/**
 * contrib/grafana/file-sd-writer.json and contrib/prometheus/file-sd-writer.rules.yml query
 * only metrics the service really exports: every PromQL expression is parsed with Prometheus'
 * own parser, and each metric it names must be in a live /metrics answer of the real service.
 */

interface Target {
  readonly expr: string;
  readonly datasource?: { type: string; uid: string };
}

interface Panel {
  readonly id: number;
  readonly type: string;
  readonly title: string;
  readonly datasource?: { type: string; uid: string };
  readonly gridPos: { h: number; w: number; x: number; y: number };
  readonly targets?: Target[];
}

interface Variable {
  readonly name: string;
  readonly type: string;
  readonly query?: string | { query: string };
  readonly datasource?: { type: string; uid: string };
}

interface Dashboard {
  readonly schemaVersion: number;
  readonly uid: string;
  readonly panels: Panel[];
  readonly templating: { list: Variable[] };
  readonly __requires?: unknown;
}

const DATASOURCE = { type: "prometheus", uid: "${datasource}" };
/** Panels that ship with Grafana: no plugin to install. */
const BUILT_IN_PANELS = new Set(["row", "stat", "timeseries", "gauge", "bargauge", "table", "text", "heatmap"]);
/**
 * Series the service does not export: Prometheus makes `up` for every scrape, and
 * blackbox_exporter `probe_success` for the probes (the alerts on them, docs/probes.md).
 */
const SCRAPE_SERIES = new Set(["up", "probe_success"]);
/** What the dashboard must show (issue 12): requests, rejections, latencies, groups, targets, outside changes. */
const REQUIRED = [
  "file_sd_http_requests_total",
  "file_sd_http_request_duration_seconds_bucket",
  "file_sd_rejected_requests_total",
  "file_sd_file_write_duration_seconds_bucket",
  "file_sd_groups",
  "file_sd_targets",
  "file_sd_outside_changes_total",
  "file_sd_ready",
  "file_sd_etcd_connected",
  "file_sd_etcd_txn_conflicts_total",
  "file_sd_etcd_commit_duration_seconds_bucket",
  "file_sd_targets_expired_total",
];

async function dashboard(): Promise<Dashboard> {
  return JSON.parse(await readFile(DASHBOARD, "utf8")) as Dashboard;
}

/** Every PromQL expression of the dashboard: panel targets, and the selectors of `label_values(...)` variables. */
function dashboardExpressions(board: Dashboard): string[] {
  const exprs = board.panels.flatMap((panel) => (panel.targets ?? []).map((target) => target.expr));
  for (const variable of board.templating.list) {
    if (variable.type !== "query") continue;
    const query = typeof variable.query === "string" ? variable.query : (variable.query?.query ?? "");
    const selector = /^label_values\((.+),\s*[A-Za-z_][A-Za-z0-9_]*\)$/.exec(query)?.[1];
    if (selector === undefined) throw new Error(`variable ${variable.name}: expected label_values(<selector>, <label>), got ${query}`);
    exprs.push(selector);
  }
  return exprs;
}

/** Metric names in a Prometheus text answer; a histogram's series (_bucket, _sum, _count) count under their own names. */
function exportedNames(text: string): Set<string> {
  const names = new Set<string>();
  for (const [, name = "", type] of text.matchAll(/^# TYPE (\S+) (\S+)$/gm)) {
    names.add(name);
    if (type === "histogram") for (const suffix of ["_bucket", "_sum", "_count"]) names.add(name + suffix);
    if (type === "summary") for (const suffix of ["_sum", "_count"]) names.add(name + suffix);
  }
  return names;
}

describe("contrib/grafana dashboard and contrib/prometheus rules against a live /metrics", () => {
  let service: TestService;
  let etcdService: TestService | undefined;
  let cluster: EtcdCluster | undefined;
  let exported = new Set<string>();

  beforeAll(async () => {
    service = await startTestService();
    // A few requests, so that the request and write histograms have series.
    await service.request("PUT", "/billing/prod", { body: "targets=host1:9100,host2:9100&team=core" });
    await service.request("POST", "/billing/prod", { body: "targets=host3:9100" });
    await service.request("GET", "/billing/prod");
    await service.request("POST", "/billing/prod", { body: "targets=not a target" });
    await service.request("DELETE", "/billing/prod");
    const answer = await fetch(`${service.url}/metrics`);
    expect(answer.status).toBe(200);
    exported = exportedNames(await answer.text());
    // The etcd panels and alerts: the same against an instance in etcd mode.
    cluster = await startEtcdCluster();
    etcdService = await startTestService({ env: { ETCD_ENDPOINTS: cluster.endpoints.join(","), ETCD_PREFIX: "/dashboard/" } });
    await etcdService.request("PUT", "/billing/prod", { body: "targets=host1:9100" });
    for (const name of exportedNames(await (await fetch(`${etcdService.url}/metrics`)).text())) exported.add(name);
  });
  afterAll(async () => {
    await service?.close();
    await etcdService?.close();
    await cluster?.stop();
  });

  it("the metric name extraction sees through functions, aggregations, binary operators and Grafana variables", () => {
    const expr = withGrafanaVariables(
      'histogram_quantile(0.99, sum by (le) (rate(a_bucket{job=~"$job"}[$__rate_interval]))) / on(job) group_left b{x="${instance}"} or {__name__="c"}',
    );
    expect(metricNamesOf(expr).sort()).toEqual(["a_bucket", "b", "c"]);
    expect(() => metricNamesOf("sum(rate(a[5m])")).toThrow(/syntax error/);
  });

  it("every expression parses, and every metric it names is in /metrics", async () => {
    const board = await dashboard();
    const expressions = [
      ...dashboardExpressions(board).map((expr) => ({ from: "dashboard", expr: withGrafanaVariables(expr) })),
      ...(await alertRules()).map((rule) => ({ from: `alert ${rule.alert}`, expr: rule.expr })),
    ];
    expect(expressions.length).toBeGreaterThan(20);
    const missing: string[] = [];
    const used = new Set<string>();
    for (const { from, expr } of expressions) {
      for (const name of metricNamesOf(expr)) {
        used.add(name);
        if (!exported.has(name) && !SCRAPE_SERIES.has(name)) missing.push(`${name} (${from})`);
      }
    }
    expect(missing).toEqual([]);
    expect(REQUIRED.filter((name) => !used.has(name))).toEqual([]);
  });

  it("the check above fails for a metric the service does not export", () => {
    expect(exported.has("file_sd_file_write_duration_seconds_bucket")).toBe(true);
    expect(exported.has("file_sd_no_such_metric_total")).toBe(false);
  });

  it("is a Grafana 10/11 dashboard with only built-in panels, every query on the ${datasource} variable", async () => {
    const board = await dashboard();
    expect(board.schemaVersion).toBe(39);
    expect(board.uid).toBe("file-sd-writer");
    expect(board.__requires).toBeUndefined();
    const variables = board.templating.list;
    expect(variables.find((variable) => variable.name === "datasource")).toMatchObject({ type: "datasource", query: "prometheus" });
    for (const variable of variables.filter((variable) => variable.type === "query")) expect(variable.datasource).toEqual(DATASOURCE);

    const ids = board.panels.map((panel) => panel.id);
    expect(new Set(ids).size).toBe(ids.length);
    for (const panel of board.panels) {
      expect(BUILT_IN_PANELS.has(panel.type), `${panel.title}: panel type ${panel.type}`).toBe(true);
      expect(panel.gridPos.x + panel.gridPos.w, panel.title).toBeLessThanOrEqual(24);
      if (panel.type === "row") continue;
      expect(panel.datasource, panel.title).toEqual(DATASOURCE);
      expect(panel.targets?.length ?? 0, panel.title).toBeGreaterThan(0);
      for (const target of panel.targets ?? []) {
        expect(target.datasource, panel.title).toEqual(DATASOURCE);
        // Each query follows the job and instance pickers.
        expect(target.expr, panel.title).toContain('job=~"$job", instance=~"$instance"');
      }
    }
    // No two panels overlap.
    const cells = new Set<string>();
    for (const { gridPos, title } of board.panels) {
      for (let y = gridPos.y; y < gridPos.y + gridPos.h; y++) {
        for (let x = gridPos.x; x < gridPos.x + gridPos.w; x++) {
          expect(cells.has(`${x},${y}`), `${title} overlaps another panel at ${x},${y}`).toBe(false);
          cells.add(`${x},${y}`);
        }
      }
    }
  });
});
