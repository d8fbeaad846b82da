import fc from "fast-check";
import { describe, expect, it } from "vitest";
import { RuleError } from "../../src/errors.js";
import { isValidName, labelNameProblem, parseAppEnv, targetProblem } from "../../src/parse/values.js";

const dnsLabel = fc.stringMatching(/^[A-Za-z_][A-Za-z0-9_-]{0,61}[A-Za-z0-9_]$|^[A-Za-z_]$/);
const dnsName = fc.array(dnsLabel, { minLength: 1, maxLength: 4 }).map((labels) => labels.join("."));
const ipv4 = fc.ipV4();
const port = fc.integer({ min: 1, max: 65535 }).map(String);

describe("targets (docs/api.md)", () => {
  it.each([
    "localhost",
    "localhost:1234",
    "ackme.dal:12345",
    "node_exporter.internal:9100",
    "10.3.3.1:15000",
    "[2001:db8::1]:9100",
    "[::1]",
    "a-b.c:65535",
  ])("accepts %s", (target) => {
    expect(targetProblem(target)).toBeUndefined();
  });

  it.each([
    ["", "not a DNS name"],
    ["host:", "port"],
    ["host:0", "port"],
    ["host:65536", "port"],
    ["host:09100", "port"],
    ["dartr.hou.flightaware.com:151234", "port"],
    ["-host:9100", "not a DNS name"],
    ["host-:9100", "not a DNS name"],
    ["ho st:9100", "separate targets with commas"],
    ["a:1 b:1", "separate targets with commas"],
    ["a:1;b:1", "separate targets with commas"],
    ["host:9100:1", "it has 2 colons; a target is host or host:port"],
    ["2001:db8::1", "put IPv6 addresses in brackets"],
    ["host.:9100", "not a DNS name"],
    ["10.0.0.256:9100", "not a DNS name or IPv4"],
    ["2001:db8::1", "brackets"],
    ["[2001:db8::1", "closing bracket"],
    ["[not-v6]:9100", "not an IPv6 address"],
    ["[::1]9100", "only :<port>"],
    ["http://host:9100", "not a URL: drop \"http://\""],
    ["https://billing.example.com/health", "__scheme__ and __metrics_path__"],
    ["host/metrics", "not a DNS name"],
    [`${"a".repeat(64)}:9100`, "not a DNS name"],
    [`${"a.".repeat(127)}ab`, "not a DNS name"],
  ])("refuses %j", (target, reason) => {
    expect(targetProblem(target)).toContain(reason);
  });

  it("accepts every DNS name, IPv4 address and bracketed IPv6 address, with or without a port", () => {
    const host = fc.oneof(dnsName.filter((name) => name.length <= 253 && !/^[0-9.]+$/.test(name)), ipv4, fc.ipV6().map((ip) => `[${ip}]`));
    fc.assert(
      fc.property(host, fc.option(port), (h, p) => {
        expect(targetProblem(p === null ? h : `${h}:${p}`)).toBeUndefined();
      }),
    );
  });

  it("refuses any target with a character outside the grammar", () => {
    const bad = fc.constantFrom(" ", "/", "\\", "\0", "?", "#", "@", "é", "*", ",", "\n");
    fc.assert(
      fc.property(dnsName, bad, fc.nat(), (name, char, at) => {
        const index = at % (name.length + 1);
        expect(targetProblem(name.slice(0, index) + char + name.slice(index))).toBeDefined();
      }),
    );
  });
});

describe("label names (docs/api.md)", () => {
  it.each(["team", "_private", "__metrics_path__", "__scheme__", "__param_module", "a1"])("accepts %s", (name) => {
    expect(labelNameProblem(name)).toBeUndefined();
  });

  it.each(["1team", "team-name", "", "té", "a.b"])("refuses %j", (name) => {
    expect(labelNameProblem(name)).toContain("not valid");
  });

  it("refuses __address__ and says where the address goes", () => {
    expect(labelNameProblem("__address__")).toContain("targets");
  });

  it("agrees with Prometheus' label name grammar on any string", () => {
    fc.assert(
      fc.property(fc.string(), (name) => {
        const prometheus = /^[a-zA-Z_][a-zA-Z0-9_]*$/.test(name) && name !== "__address__";
        expect(labelNameProblem(name) === undefined).toBe(prometheus);
      }),
    );
  });
});

describe("application and environment names (docs/api.md)", () => {
  it.each(["billing", "prod-hou", "a", "A_1.b-c", "_x", "9", "x".repeat(128)])("accepts %s", (name) => {
    expect(isValidName(name)).toBe(true);
  });

  it.each(["", "..", ".", ".hidden", "-x", "a/b", "a b", "a\0b", "a@b", "x".repeat(129), "é", "%2e"])("refuses %j", (name) => {
    expect(isValidName(name)).toBe(false);
  });

  it("never accepts a name that could leave the directory or hide from Prometheus", () => {
    fc.assert(
      fc.property(fc.string({ unit: "binary", maxLength: 200 }), (name) => {
        if (!isValidName(name)) return;
        expect(name).not.toMatch(/[/\\\0@]/);
        expect(name.startsWith(".") || name.startsWith("-")).toBe(false);
        expect(name.length).toBeLessThanOrEqual(128);
      }),
    );
  });

  it("parseAppEnv answers 400 naming the bad part", () => {
    expect(() => parseAppEnv("billing", "..")).toThrowError(RuleError);
    expect(() => parseAppEnv("billing", "..")).toThrowError(/environment "\.\."/);
    expect(parseAppEnv("billing", "prod")).toEqual({ application: "billing", environment: "prod" });
  });
});
