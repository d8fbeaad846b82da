import { createHash, randomBytes } from "node:crypto";
import fc from "fast-check";
import { describe, expect, it } from "vitest";
import { findToken, mayChange, parsePolicy, PolicyError } from "../../src/auth/policy.js";

const newToken = (): string => randomBytes(32).toString("hex");
const sha256Hex = (token: string): string => createHash("sha256").update(token).digest("hex");

function refusal(text: string): string {
  try {
    parsePolicy(text);
  } catch (error) {
    expect(error).toBeInstanceOf(PolicyError);
    return (error as Error).message;
  }
  throw new Error("the file was accepted");
}

describe("the tokens file", () => {
  const billing = newToken();
  const reader = newToken();
  const text = `
tokens:
  - name: ci-billing
    sha256: ${sha256Hex(billing)}
    applications: ["billing", "billing-*"]
  - name: prometheus
    sha256: ${sha256Hex(reader).toUpperCase()}
`;

  it("reads names, digests and application patterns; reads are public unless it says otherwise", () => {
    const policy = parsePolicy(text);
    expect(policy.read).toBe("public");
    expect(policy.tokens.map((token) => [token.name, token.applications])).toEqual([
      ["ci-billing", ["billing", "billing-*"]],
      ["prometheus", []],
    ]);
    expect(parsePolicy(`read: token\n${text}`).read).toBe("token");
  });

  it("accepts the same content as JSON", () => {
    const json = JSON.stringify({ read: "token", tokens: [{ name: "a", sha256: sha256Hex(billing), applications: ["*"] }] });
    expect(parsePolicy(json).tokens[0]?.name).toBe("a");
  });

  it("finds the token a request presents by its SHA-256, and no other", () => {
    const policy = parsePolicy(text);
    expect(findToken(policy, billing)?.name).toBe("ci-billing");
    expect(findToken(policy, reader)?.name).toBe("prometheus");
    expect(findToken(policy, newToken())).toBeUndefined();
    expect(findToken(policy, sha256Hex(billing))).toBeUndefined();
    expect(findToken(policy, "")).toBeUndefined();
  });

  it("matches application patterns on the whole name, with * as the only wildcard", () => {
    const [token] = parsePolicy(
      `tokens: [{name: t, sha256: ${sha256Hex(billing)}, applications: ["billing", "billing-*", "a.b", "*-test"]}]`,
    ).tokens;
    if (token === undefined) throw new Error("no token");
    expect(["billing", "billing-eu", "billing-", "a.b", "search-test"].filter((name) => mayChange(token, name))).toHaveLength(5);
    expect(["billing2", "xbilling", "axb", "search", "billing.eu", "search-testing"].some((name) => mayChange(token, name))).toBe(false);
  });

  it("a * pattern lets a token change every application", () => {
    fc.assert(
      fc.property(fc.stringMatching(/^[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}$/), (application) => {
        const [token] = parsePolicy(`tokens: [{name: t, sha256: ${sha256Hex(billing)}, applications: ["*"]}]`).tokens;
        return token !== undefined && mayChange(token, application);
      }),
    );
  });

  it("says where the file is wrong", () => {
    const hash = sha256Hex(billing);
    expect(refusal(`token:\n  - name: a`)).toBe('unknown key "token" in the top level; allowed: read, tokens');
    expect(refusal(`read: public`)).toBe('"tokens" must be a list of {name, sha256, applications}');
    expect(refusal(`read: yes\ntokens: []`)).toMatch(/^"read" must be "public"/);
    expect(refusal(`tokens: [{name: "a b", sha256: ${hash}}]`)).toMatch(/^tokens\[0\]\.name must be 1-64 characters/);
    expect(refusal(`tokens: [{name: a, sha256: ${hash}, application: [x]}]`)).toBe(
      'unknown key "application" in tokens[0]; allowed: name, sha256, applications',
    );
    expect(refusal(`tokens: [{name: a, sha256: ${hash}, applications: billing}]`)).toMatch(
      /^tokens\[0\]\.applications \(token "a"\) must be a list/,
    );
    expect(refusal(`tokens: [{name: a, sha256: ${hash}, applications: ["bil/ling"]}]`)).toMatch(
      /"bil\/ling" is not an application name or pattern/,
    );
    expect(refusal(`tokens: [{name: a, sha256: ${hash}}, {name: a, sha256: ${sha256Hex(reader)}}]`)).toBe(
      'the token name "a" is used twice',
    );
    expect(refusal(`tokens: [{name: a, sha256: ${hash}}, {name: b, sha256: ${hash}}]`)).toBe(
      'token "b" has the same sha256 as another token',
    );
    expect(refusal("- just\n- a list")).toMatch(/must be a mapping/);
  });

  it("never quotes what was pasted where a digest belongs, nor the lines of a broken file", () => {
    const secret = newToken();
    const wrongField = refusal(`tokens: [{name: a, sha256: ${secret}x}]`);
    expect(wrongField).toBe(
      'tokens[0].sha256 (token "a") must be the 64 hex digits of the token\'s SHA-256: printf %s "$TOKEN" | sha256sum',
    );
    const broken = refusal(`tokens:\n  - name: a\n    sha256: "${secret}\n  - [`);
    expect(broken).toMatch(/^it does not parse as YAML at line \d+: /);
    expect(broken).not.toContain(secret);
    expect(refusal(`tokens: []\n${secret}: 1`)).not.toContain(secret);
  });
});
