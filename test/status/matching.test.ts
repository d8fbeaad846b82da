import { describe, expect, it } from "vitest";
import { parseDuration } from "../../src/parse/duration.js";
import { groupKeyOf, indexTargets } from "../../src/status/prometheus-targets.js";

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
