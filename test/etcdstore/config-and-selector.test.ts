import fc from "fast-check";
import { describe, expect, it } from "vitest";
import { ConfigError, loadConfig } from "../../src/config.js";
import { parseGroupSelector, SelectorError } from "../../src/etcdstore/selector.js";
import { formatDuration, parseDuration } from "../../src/parse/duration.js";

describe("etcd configuration (docs/etcd.md)", () => {
  it("without ETCD_ENDPOINTS the directory is the registry", () => {
    expect(loadConfig({}).etcd).toBeUndefined();
  });

  it("reads every etcd variable", () => {
    const config = loadConfig({
      ETCD_ENDPOINTS: "https://etcd-1:2379, https://etcd-2:2379",
      ETCD_PREFIX: "/sd",
      ETCD_TIMEOUT: "1500ms",
      ETCD_CA_FILE: "/tls/ca.pem",
      ETCD_CERT_FILE: "/tls/client.pem",
      ETCD_KEY_FILE: "/tls/client-key.pem",
      ETCD_USERNAME: "file-sd",
      ETCD_PASSWORD_FILE: "/run/secrets/etcd",
      GROUP_SELECTOR: '{region="eu"}',
    }).etcd;
    expect(config).toMatchObject({
      endpoints: ["https://etcd-1:2379", "https://etcd-2:2379"],
      prefix: "/sd/",
      timeoutMs: 1500,
      tls: { caFile: "/tls/ca.pem", certFile: "/tls/client.pem", keyFile: "/tls/client-key.pem" },
      auth: { username: "file-sd", passwordFile: "/run/secrets/etcd" },
      groupSelector: { text: '{region="eu"}' },
    });
    expect(loadConfig({ ETCD_ENDPOINTS: "http://127.0.0.1:2379" }).etcd).toMatchObject({ prefix: "/file-sd-writer/", timeoutMs: 5000, tls: undefined, auth: undefined });
    // Empty is unset: what `.env-sample` sourced as shipped, or Compose, passes.
    expect(loadConfig({ ETCD_ENDPOINTS: "http://127.0.0.1:2379", ETCD_PASSWORD: "", ETCD_USERNAME: "" }).etcd?.auth).toBeUndefined();
    expect(loadConfig({ ETCD_ENDPOINTS: "http://127.0.0.1:2379", ETCD_PREFIX: "/no-slash" }).etcd?.prefix).toBe("/no-slash/");
  });

  it.each([
    [{ ETCD_ENDPOINTS: "etcd-1:2379" }, /ETCD_ENDPOINTS: "etcd-1:2379" must be a client URL/],
    [{ ETCD_ENDPOINTS: "http://etcd-1" }, /must be a client URL/],
    [{ ETCD_ENDPOINTS: "http://a:2379,https://b:2379" }, /mixes http:\/\/ and https:\/\//],
    [{ ETCD_ENDPOINTS: "http://a:2379", ETCD_PREFIX: "sd/" }, /ETCD_PREFIX="sd\/" must start with \//],
    [{ ETCD_ENDPOINTS: "http://a:2379", ETCD_TIMEOUT: "5" }, /ETCD_TIMEOUT="5" must be a duration/],
    [{ ETCD_ENDPOINTS: "http://a:2379", ETCD_TIMEOUT: "2m" }, /from 100ms to 1m/],
    [{ ETCD_ENDPOINTS: "https://a:2379", ETCD_CERT_FILE: "/c.pem" }, /set both ETCD_CERT_FILE and ETCD_KEY_FILE/],
    [{ ETCD_ENDPOINTS: "http://a:2379", ETCD_CA_FILE: "/ca.pem" }, /are for https:\/\/ endpoints/],
    [{ ETCD_ENDPOINTS: "http://a:2379", ETCD_USERNAME: "u" }, /needs a password/],
    [{ ETCD_ENDPOINTS: "http://a:2379", ETCD_PASSWORD: "p" }, /need ETCD_USERNAME/],
    [{ ETCD_ENDPOINTS: "http://a:2379", ETCD_USERNAME: "u", ETCD_PASSWORD: "p", ETCD_PASSWORD_FILE: "/p" }, /not both/],
    [{ GROUP_SELECTOR: '{a="b"}' }, /GROUP_SELECTOR is set but ETCD_ENDPOINTS is not/],
    [{ ETCD_ENDPOINTS: "http://a:2379", GROUP_SELECTOR: '{region="eu"' }, /GROUP_SELECTOR does not parse at character 13/],
  ])("refuses %j", (env, message) => {
    expect(() => loadConfig(env)).toThrowError(ConfigError);
    expect(() => loadConfig(env)).toThrowError(message);
  });
});

describe("GROUP_SELECTOR: Prometheus label matchers on a group's labels", () => {
  const labels = { job: "shop", env: "prod-fra", region: "eu" };

  it.each([
    ['{region="eu"}', true],
    ['{region="us"}', false],
    ['{region!="us"}', true],
    ['{env=~"prod-.*"}', true],
    ['{env=~"prod"}', false],
    ['{env!~"dev-.*", region="eu"}', true],
    ['{tier=""}', true],
    ['{tier!=""}', false],
    ["{region='eu'}", true],
    ["{region=`eu`}", true],
    ['{"region"="eu"}', true],
  ])("%s → %s", (selector, expected) => {
    expect(parseGroupSelector(selector)(labels)).toBe(expected);
  });

  it.each([
    ['{region="eu"', /character 13/],
    ['up{region="eu"}', /a metric name has no meaning here/],
    ["{}", /at least one label matcher/],
    ['{region=eu}', /character 9/],
    ['{region=~"("}', /does not compile/],
    ['sum(up)', /expected label matchers in braces/],
  ])("refuses %s with a message that shows where", (selector, message) => {
    expect(() => parseGroupSelector(selector)).toThrowError(SelectorError);
    expect(() => parseGroupSelector(selector)).toThrowError(message);
  });

  it("shows a caret under the place it stopped", () => {
    expect(() => parseGroupSelector('{region="eu",,}')).toThrowError(/\{region="eu",,\}\n {2}( +)\^/);
  });
});

describe("Prometheus durations", () => {
  it.each([
    ["90s", 90_000],
    ["1h30m", 5_400_000],
    ["7d", 604_800_000],
    ["250ms", 250],
    ["1y", 31_536_000_000],
    ["0", 0],
  ])("%s = %d ms", (text, ms) => {
    expect(parseDuration(text)).toBe(ms);
  });

  it.each(["", "5", "1.5s", "5 s", "s", "30m1h", "-1s", "1h1h"])("refuses %j", (text) => {
    expect(parseDuration(text)).toBeUndefined();
  });

  it("formats what it parses", () => {
    fc.assert(fc.property(fc.integer({ min: 0, max: 10 * 365 * 86_400_000 }), (ms) => parseDuration(formatDuration(ms)) === ms));
  });
});
