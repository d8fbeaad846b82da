import type { Summary } from "./stats.js";

/** Markdown tables, so a run's output can be pasted into BENCHMARKS.md as it is. */

export interface Row {
  readonly scenario: string;
  /** Undefined when the scenario could not run; `missing` says why. */
  readonly result: Summary | undefined;
  readonly missing?: string;
  readonly baseline?: { readonly name: string; readonly perSecond: number };
  /** The lowest acceptable ratio to the baseline. */
  readonly target?: number;
  /** CPU time the server (or the loop) used per request, µs: less noisy than req/s on a shared machine. */
  readonly cpuMicros?: number;
}

export interface Limit {
  readonly measure: string;
  readonly value: number | undefined;
  readonly unit: string;
  readonly missing?: string;
  /** The highest acceptable value. */
  readonly atMost?: number;
}

export function ratioOf(row: Row): number | undefined {
  if (row.result === undefined || row.baseline === undefined) return undefined;
  return row.result.perSecond / row.baseline.perSecond;
}

export function rowPasses(row: Row): boolean | undefined {
  const ratio = ratioOf(row);
  return ratio === undefined || row.target === undefined ? undefined : ratio >= row.target;
}

export function limitPasses(limit: Limit): boolean | undefined {
  return limit.value === undefined || limit.atMost === undefined ? undefined : limit.value <= limit.atMost;
}

export function scenarioTable(rows: readonly Row[]): string {
  const lines = [
    "| scenario | req/s | p50 | p99 | baseline | ratio | target | pass | CPU/req |",
    "|---|--:|--:|--:|---|--:|--:|:-:|--:|",
  ];
  for (const row of rows) {
    const ratio = ratioOf(row);
    const cells =
      row.result === undefined
        ? [row.scenario, row.missing ?? "n/a", "", "", "", "", "", "", ""]
        : [
            row.scenario,
            perSecond(row.result.perSecond),
            milliseconds(row.result.p50),
            milliseconds(row.result.p99),
            row.baseline === undefined ? "" : `${row.baseline.name} ${perSecond(row.baseline.perSecond)}/s`,
            ratio === undefined ? "" : `${ratio.toFixed(2)}×`,
            row.target === undefined ? "" : `≥ ${row.target.toFixed(1)}×`,
            verdict(rowPasses(row)),
            row.cpuMicros === undefined ? "" : `${Math.round(row.cpuMicros)} µs`,
          ];
    lines.push(`| ${cells.join(" | ")} |`);
  }
  return lines.join("\n");
}

export function limitTable(limits: readonly Limit[]): string {
  const lines = ["| measure | value | target | pass |", "|---|--:|--:|:-:|"];
  for (const limit of limits) {
    const value = limit.value === undefined ? (limit.missing ?? "n/a") : `${round(limit.value)} ${limit.unit}`;
    const target = limit.atMost === undefined ? "" : `≤ ${limit.atMost} ${limit.unit}`;
    lines.push(`| ${limit.measure} | ${value} | ${target} | ${verdict(limitPasses(limit))} |`);
  }
  return lines.join("\n");
}

function verdict(pass: boolean | undefined): string {
  return pass === undefined ? "" : pass ? "yes" : "**no**";
}

function perSecond(value: number): string {
  return Math.round(value).toLocaleString("en-US");
}

export function milliseconds(value: number): string {
  return Number.isNaN(value) ? "" : `${round(value)} ms`;
}

function round(value: number): string {
  return value < 10 ? value.toFixed(2) : value < 100 ? value.toFixed(1) : Math.round(value).toLocaleString("en-US");
}
