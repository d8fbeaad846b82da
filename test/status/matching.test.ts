import { describe, expect, it } from "vitest";
import { parseDuration } from "../../src/parse/duration.js";
import { groupKeyOf, indexProbeResults, indexTargets, seriesKeyOf } from "../../src/status/prometheus-targets.js";

describe("?wait= durations (Prometheus syntax)", () => {
  it.each([
    ["0", 0],
    ["0s", 0],
    ["30s", 30_000],
    ["2m", 120_000],
    ["1m30s", 90_000],
    ["500ms", 500],
    ["1h", 3_600_000],
    ["1d", 86_400_000],
  ])("%s is %d ms", (text, ms) => {
    expect(parseDuration(text)).toBe(ms);
  });

  it.each(["", "30", "1.5s", "-1s", "s", "30 s", "1s1m", "1m1m", "10M", "1e3s", " 1s"])("refuses %j", (text) => {
    expect(parseDuration(text)).toBeUndefined();
  });
});

describe("which group a Prometheus target comes from", () => {
  it("file_sd: the file name, wherever the directory is", () => {
    expect(groupKeyOf({ __meta_filepath: "/srv/file_sd/billing@prod-hou.json" })).toBe("billing@prod-hou");
    expect(groupKeyOf({ __meta_filepath: "billing@prod.json" })).toBe("billing@prod");
  });

  it("the file decides: meta labels in a file count for nothing, so no registration can pass for another group", () => {
    expect(
      groupKeyOf({
        __meta_filesd_application: "search",
        __meta_filesd_environment: "dev",
        __meta_filepath: "/x/billing@prod.json",
      }),
    ).toBe("billing@prod");
    expect(groupKeyOf({ __meta_filesd_application: "billing", __meta_filesd_environment: "prod", __meta_filepath: "/srv/targets.json" })).toBeUndefined();
  });

  it("http_sd: a target without a file is placed by the meta labels /-/http_sd sets", () => {
    expect(groupKeyOf({ __meta_filesd_application: "search", __meta_filesd_environment: "dev", __meta_url: "http://sd:12345/-/http_sd" })).toBe("search@dev");
  });

  it("anything else belongs to no group", () => {
    expect(groupKeyOf({ __meta_filepath: "/srv/targets.json" })).toBeUndefined();
    expect(groupKeyOf({ __meta_filepath: "/srv/billing@prod.yml" })).toBeUndefined();
    expect(groupKeyOf({ __meta_filesd_application: "billing" })).toBeUndefined();
    expect(groupKeyOf({ __address__: "a:1" })).toBeUndefined();
  });

  it("indexes active targets by group and address, worst health kept per pool, dropped apart", () => {
    const index = indexTargets({
      status: "success",
      data: {
        activeTargets: [
          {
            discoveredLabels: { __address__: "a:1", __meta_filepath: "/d/app@env.json" },
            health: "up",
            lastError: "",
            lastScrape: "2026-01-01T00:00:00Z",
            scrapeUrl: "http://a:1/metrics",
          },
          {
            discoveredLabels: { __address__: "a:1", __meta_filesd_application: "app", __meta_filesd_environment: "env" },
            health: "unknown",
            lastError: "",
            lastScrape: "0001-01-01T00:00:00Z",
            scrapeUrl: "http://a:1/metrics",
          },
          { discoveredLabels: { __address__: "b:1", __meta_filepath: "/d/other.json" }, health: "up" },
        ],
        droppedTargets: [{ discoveredLabels: { __address__: "c:1", __meta_filepath: "/d/app@env.json" } }],
      },
    });
    expect([...index.active.keys()]).toEqual(["app@env"]);
    expect(index.active.get("app@env")?.get("a:1")).toEqual([
      { health: "up", lastError: "", lastScrape: "2026-01-01T00:00:00Z", scrapeUrl: "http://a:1/metrics", series: "[]" },
      { health: "unknown", lastError: "", lastScrape: undefined, scrapeUrl: "http://a:1/metrics", series: "[]" },
    ]);
    expect([...(index.dropped.get("app@env") ?? [])]).toEqual(["c:1"]);
  });

  it("refuses an answer that is not a success", () => {
    expect(() => indexTargets({ status: "error" })).toThrowError(/status "error"/);
  });
});

describe("probe targets and their results", () => {
  it("a file in probes/ is a probe group's, and so is an http_sd group whose file is in probes/", () => {
    expect(groupKeyOf({ __meta_filepath: "/srv/file_sd/probes/billing@prod.json" })).toBe("probes/billing@prod");
    expect(groupKeyOf({ __meta_filesd_application: "billing", __meta_filesd_environment: "prod", __meta_filesd_file: "probes/billing@prod.json" })).toBe("probes/billing@prod");
    expect(groupKeyOf({ __meta_filesd_application: "billing", __meta_filesd_environment: "prod", __meta_filesd_file: "billing@prod.json" })).toBe("billing@prod");
  });

  it("a probe is found by what its scrape URL asks the exporter to probe, whatever the discovered labels say", () => {
    const index = indexTargets({
      status: "success",
      data: {
        activeTargets: [
          {
            // As Prometheus 2.42 may list it: the discovered labels after relabelling.
            discoveredLabels: { __address__: "blackbox:9115", __param_target: "https://a.example/x?y=1,2", __meta_filepath: "/d/probes/app@env.json" },
            labels: { instance: "https://a.example/x?y=1,2", job: "app", env: "env" },
            health: "up",
            scrapeUrl: "http://blackbox:9115/probe?module=http_2xx&target=https%3A%2F%2Fa.example%2Fx%3Fy%3D1%2C2",
          },
          { discoveredLabels: { __address__: "a:1", __meta_filepath: "/d/app@env.json" }, labels: { instance: "a:1", job: "app", env: "env" }, health: "up", scrapeUrl: "http://a:1/metrics" },
        ],
        droppedTargets: [],
      },
    });
    expect([...(index.active.get("probes/app@env")?.keys() ?? [])]).toEqual(["https://a.example/x?y=1,2"]);
    expect([...(index.active.get("app@env")?.keys() ?? [])]).toEqual(["a:1"]);
    expect(index.active.get("probes/app@env")?.get("https://a.example/x?y=1,2")?.[0]?.series).toBe(seriesKeyOf({ job: "app", instance: "https://a.example/x?y=1,2", env: "env" }));
  });

  it("a series is its labels, in any order, without __name__ or other __ labels", () => {
    expect(seriesKeyOf({ b: "2", a: "1", __name__: "probe_success" })).toBe(seriesKeyOf({ a: "1", b: "2" }));
    expect(seriesKeyOf({ a: "1" })).not.toBe(seriesKeyOf({ a: "1", b: "2" }));
    expect(seriesKeyOf(Object.fromEntries([["constructor", "x"], ["__proto__", "y"], ["toString", "z"]]))).toBe(JSON.stringify([["constructor", "x"], ["toString", "z"]]));
  });

  it("the query API's answer becomes each series' success, duration and HTTP status", () => {
    const labels = { job: "app", env: "env", instance: "https://a.example/" };
    const results = indexProbeResults({
      status: "success",
      data: {
        resultType: "vector",
        result: [
          { metric: { __name__: "probe_success", ...labels }, value: [1, "0"] },
          { metric: { __name__: "probe_http_status_code", ...labels }, value: [1, "503"] },
          { metric: { __name__: "probe_duration_seconds", ...labels }, value: [1, "0.25"] },
          { metric: { __name__: "probe_success", ...labels, instance: "db:5432" }, value: [1, "1"] },
          { metric: { __name__: "probe_success", ...labels, instance: "odd" }, value: [1, "NaN"] },
        ],
      },
    });
    expect(results.get(seriesKeyOf(labels))).toEqual({ success: false, httpStatusCode: 503, durationSeconds: 0.25 });
    expect(results.get(seriesKeyOf({ ...labels, instance: "db:5432" }))).toEqual({ success: true });
    expect(results.has(seriesKeyOf({ ...labels, instance: "odd" }))).toBe(false);
    expect(() => indexProbeResults({ status: "success", data: { resultType: "matrix", result: [] } })).toThrowError(/vector/);
  });
});
