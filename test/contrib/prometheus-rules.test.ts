import { copyFile, readFile, writeFile } from "node:fs/promises";
import { join } from "node:path";
import { load } from "js-yaml";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { makeTempDir, removeDir } from "../helpers.js";
import { findPromtool } from "../support/tools.js";
import { alertRules, RULES } from "./promql.js";
import { CONTRIB, run } from "./support.js";

/** contrib/prometheus: the alerting rules, checked and unit-tested by Prometheus' own promtool. */

const RULES_TEST = join(CONTRIB, "prometheus", "file-sd-writer.rules.test.yml");

interface RulesTest {
  readonly tests: {
    readonly name: string;
    readonly alert_rule_test?: { readonly alertname: string; readonly exp_alerts: unknown[] }[];
  }[];
}

describe("contrib/prometheus alerting rules", () => {
  let scratch = "";
  beforeAll(async () => {
    scratch = await makeTempDir("contrib-rules-");
  });
  afterAll(async () => {
    if (scratch !== "") await removeDir(scratch);
  });

  it("promtool check rules accepts them", async () => {
    const result = await run(findPromtool(), ["check", "rules", RULES]);
    expect(result.code, `${result.stdout}${result.stderr}`).toBe(0);
    expect(result.stdout).toMatch(/SUCCESS: [0-9]+ rules found/);
  });

  it("promtool test rules passes: each alert fires when it should, and not otherwise", async () => {
    const result = await run(findPromtool(), ["test", "rules", RULES_TEST]);
    expect(result.code, `${result.stdout}${result.stderr}`).toBe(0);
    expect(result.stdout).toMatch(/SUCCESS/);
  });

  it("promtool test rules fails when an alert no longer fires as tested, so the test above can fail", async () => {
    // The same tests against rules whose write-error alert waits an hour before firing.
    const text = (await readFile(RULES, "utf8")).replace(
      "expr: increase(file_sd_file_write_errors_total{job=\"file-sd-writer\"}[5m]) > 0\n",
      "expr: increase(file_sd_file_write_errors_total{job=\"file-sd-writer\"}[5m]) > 0\n        for: 1h\n",
    );
    expect(text).toContain("for: 1h");
    await writeFile(join(scratch, "file-sd-writer.rules.yml"), text);
    await copyFile(RULES_TEST, join(scratch, "file-sd-writer.rules.test.yml"));
    const result = await run(findPromtool(), ["test", "rules", join(scratch, "file-sd-writer.rules.test.yml")]);
    expect(result.code).not.toBe(0);
    expect(result.stdout + result.stderr).toMatch(/alertname: FileSdWriterWritesFailing/);
  });

  it("every alert has a severity, a summary and a description, and is tested firing and quiet", async () => {
    const rules = await alertRules();
    expect(rules.length).toBeGreaterThanOrEqual(6);
    const tests = (load(await readFile(RULES_TEST, "utf8")) as RulesTest).tests.flatMap((test) => test.alert_rule_test ?? []);
    for (const rule of rules) {
      expect(["critical", "warning"], rule.alert).toContain(rule.labels?.severity);
      expect(rule.annotations?.summary?.length ?? 0, rule.alert).toBeGreaterThan(20);
      expect(rule.annotations?.description?.length ?? 0, rule.alert).toBeGreaterThan(80);
      const cases = tests.filter((test) => test.alertname === rule.alert);
      expect(cases.some((test) => test.exp_alerts.length > 0), `${rule.alert} is never tested firing`).toBe(true);
      expect(cases.some((test) => test.exp_alerts.length === 0), `${rule.alert} is never tested quiet`).toBe(true);
    }
  });
});
