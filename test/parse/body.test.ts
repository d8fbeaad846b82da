import { describe, expect, it } from "vitest";
import { RuleError } from "../../src/errors.js";
import { formatOf, parseBody, type BodyFormat } from "../../src/parse/body.js";

function refusal(text: string, format: BodyFormat): RuleError {
  try {
    parseBody(text, format);
  } catch (error) {
    if (error instanceof RuleError) return error;
    throw error;
  }
  throw new Error(`expected ${JSON.stringify(text)} to be refused`);
}

describe("content types (docs/api.md)", () => {
  it.each([
    ["application/json", "json"],
    ["application/json; charset=utf-8", "json"],
    ["Application/JSON", "json"],
    ["text/vnd.yaml", "yaml"],
    ["text/yaml", "yaml"],
    ["text/x-yaml", "yaml"],
    ["application/vnd.yaml", "yaml"],
    ["application/x-yaml", "yaml"],
    ["application/yaml;charset=UTF-8", "yaml"],
    ["application/x-www-form-urlencoded", "form"],
  ])("%s is %s", (contentType, format) => {
    expect(formatOf(contentType)).toBe(format);
  });

  it.each([undefined, "", "text/plain", "multipart/form-data; boundary=x", "application/jsonx"])("%j is not supported", (contentType) => {
    expect(formatOf(contentType)).toBeUndefined();
  });
});

describe("JSON and YAML bodies", () => {
  it("carry targets and labels", () => {
    const json = parseBody('{"targets": ["a:1", "b:2"], "labels": {"team": "core"}}', "json");
    const yaml = parseBody("targets:\n  - a:1\n  - b:2\nlabels:\n  team: core\n", "yaml");
    expect(json).toEqual({ targets: ["a:1", "b:2"], labels: { team: "core" } });
    expect(yaml).toEqual(json);
  });

  it("an empty body and {} carry nothing", () => {
    expect(parseBody("", "json")).toEqual({});
    expect(parseBody("{}", "json")).toEqual({});
    expect(parseBody("", "yaml")).toEqual({});
    expect(parseBody("# just a comment\n", "yaml")).toEqual({});
  });

  it("an unknown key is refused by name", () => {
    expect(refusal('{"targets": ["a:1"], "hosts": []}', "json").message).toContain('unknown key "hosts"');
    expect(refusal("target:\n  - a:1\n", "yaml").message).toContain('unknown key "target"');
  });

  it.each([
    ["[]", "one mapping"],
    ['"targets"', "one mapping"],
    ['{"targets": "a:1"}', '"targets" must be a list'],
    ['{"targets": [1]}', '"targets" item 0 must be a string'],
    ['{"labels": ["team"]}', '"labels" must be a mapping'],
    ['{"labels": null}', '"labels" must be a mapping'],
    ["{", "does not parse"],
  ])("JSON %s is refused: %s", (text, message) => {
    const error = refusal(text, "json");
    expect(error.status).toBe(400);
    expect(error.message).toContain(message);
  });

  it("a label value that is not a string is refused with the quoting fix", () => {
    expect(refusal("labels:\n  port: 9100\n", "yaml").message).toBe('label "port" must be a string; quote it: port: "9100"');
    expect(refusal("labels:\n  enabled: true\n", "yaml").message).toContain('quote it: enabled: "true"');
    expect(refusal('{"labels": {"port": 9100}}', "json").message).toContain('quote it: "port": "9100"');
    // What the parser changed cannot be shown as written: 1.10 was read as 1.1, 0x1F as 31.
    for (const [body, format, read] of [
      ["labels:\n  version: 1.10\n", "yaml", "the number 1.1"],
      ["labels:\n  mask: 0x1F\n", "yaml", "the number 31"],
      ['{"labels": {"version": 1.10}}', "json", "the number 1.1"],
      ["labels:\n  x: ~\n", "yaml", "null"],
    ] as const) {
      const message = refusal(body, format).message;
      expect(message, body).toContain(`unquoted it was read as ${read}; put the value in quotes exactly as you mean it`);
      expect(message).not.toMatch(/quote it: .*"(1\.1|31)"/);
    }
  });

  it("YAML is parsed with a safe schema: no custom tags, dates stay strings", () => {
    expect(refusal("labels:\n  x: !!js/function 'function(){}'\n", "yaml").message).toContain("does not parse");
    expect(refusal("labels: !!binary aGVsbG8=\n", "yaml").message).toContain("unknown tag");
    expect(parseBody("labels:\n  since: 2024-01-01\n", "yaml")).toEqual({ labels: { since: "2024-01-01" } });
  });

  it("several YAML documents are refused", () => {
    expect(refusal("targets: [a:1]\n---\ntargets: [b:2]\n", "yaml").message).toContain("one document");
  });

  it("YAML anchors and aliases resolve to plain values", () => {
    expect(parseBody("targets: &t\n  - a:1\nlabels:\n  team: &v core\n  owner: *v\n", "yaml")).toEqual({
      targets: ["a:1"],
      labels: { team: "core", owner: "core" },
    });
  });

  it("values are checked against the grammar", () => {
    expect(refusal('{"targets": ["a b:1"]}', "json").message).toContain('target "a b:1" is not host or host:port');
    expect(refusal('{"labels": {"team-name": "x"}}', "json").message).toContain('label name "team-name"');
    expect(refusal('{"labels": {"__address__": "x:1"}}', "json").message).toContain("__address__");
    expect(refusal('{"labels": {"team": ""}}', "json").message).toContain("empty value");
  });

  it("a label named __proto__ stays a label", () => {
    expect(Object.entries(parseBody('{"labels": {"__proto__": "x"}}', "json").labels ?? {})).toEqual([["__proto__", "x"]]);
    expect(Object.entries(parseBody("__proto__=x", "form").labels ?? {})).toEqual([["__proto__", "x"]]);
  });

  it("a body that is not valid UTF-8 is refused", () => {
    expect(refusal('{"labels": {"team": "\uFFFD"}}', "json").message).toContain("UTF-8");
  });
});

describe("form bodies", () => {
  it("targets are comma-separated and trimmed; other keys are labels", () => {
    expect(parseBody("targets=a:1,%20b:2%20&team=core&tier=web", "form")).toEqual({
      targets: ["a:1", "b:2"],
      labels: { team: "core", tier: "web" },
    });
  });

  it("targets may be repeated", () => {
    expect(parseBody("targets=a:1&targets=b:2,c:3", "form")).toEqual({ targets: ["a:1", "b:2", "c:3"] });
  });

  it("an empty item is refused", () => {
    expect(refusal("targets=a:1,,b:2", "form").message).toContain("empty item");
    expect(refusal("targets=", "form").message).toBe('"targets" is empty: give at least one host:port, e.g. targets=host1:9100,host2:9100');
  });

  it("a misspelt targets key is refused instead of becoming a label", () => {
    for (const key of ["target", "Targets", "TARGETS", "tragets", "targest", "labels"]) {
      expect(refusal(`${key}=a:1`, "form").message, key).toMatch(new RegExp(`^"${key}" looks like a misspelt "targets" .*send JSON or YAML$`));
    }
    expect(parseBody("targets=a:1&team=core&tier=x", "form")).toEqual({ targets: ["a:1"], labels: { team: "core", tier: "x" } });
  });

  it("the newline that ends a file sent with --data-binary ends the body, not the last value", () => {
    expect(parseBody("targets=a:1&team=a\n", "form")).toEqual({ targets: ["a:1"], labels: { team: "a" } });
    expect(parseBody("targets=a:1&team=a\r\n", "form")).toEqual({ targets: ["a:1"], labels: { team: "a" } });
  });

  it("label values must be text Prometheus keeps, and __scheme__ a scheme it scrapes with", () => {
    expect(refusal('{"targets": ["a:1"], "labels": {"x": "\\ud800"}}', "json").message).toMatch(/^label "x" holds half of a UTF-16 surrogate pair/);
    expect(refusal("targets=a:1&__scheme__=https://evil.example/%23", "form").message).toBe('label "__scheme__" is "https://evil.example/#"; Prometheus scrapes with http or https only');
    expect(parseBody("targets=a:1&__scheme__=https", "form")).toEqual({ targets: ["a:1"], labels: { __scheme__: "https" } });
  });

  it("a label given twice is refused", () => {
    expect(refusal("targets=a:1&team=x&team=y", "form").message).toBe('label "team" is given twice; give it once');
  });

  it("labels without targets are labels only", () => {
    expect(parseBody("team=core", "form")).toEqual({ labels: { team: "core" } });
  });
});
