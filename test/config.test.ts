import { describe, expect, it } from "vitest";
import { ConfigError, loadConfig, parseBind } from "../src/config.js";

describe("configuration (docs/operations.md)", () => {
  it("has the documented defaults", () => {
    expect(loadConfig({})).toEqual({
      fileSdDirectory: "./file_sd",
      host: "127.0.0.1",
      port: 12345,
      logLevel: "info",
      maxBodyBytes: 1048576,
      renewalSlackMs: 2000,
      tls: undefined,
    });
  });

  it("reads every variable", () => {
    const config = loadConfig({
      FILE_SD_DIRECTORY: "/file_sd",
      BIND: "0.0.0.0:9999",
      LOGLEVEL: "DEBUG",
      MAX_BODY_BYTES: "2048",
      RENEWAL_SLACK: "30s",
      CERTFILE: "/tls/cert.pem",
      KEYFILE: "/tls/key.pem",
    });
    expect(config).toEqual({
      fileSdDirectory: "/file_sd",
      host: "0.0.0.0",
      port: 9999,
      logLevel: "debug",
      maxBodyBytes: 2048,
      renewalSlackMs: 30_000,
      tls: { certFile: "/tls/cert.pem", keyFile: "/tls/key.pem" },
    });
  });

  it("treats empty values as unset", () => {
    expect(loadConfig({ BIND: "", CERTFILE: "", KEYFILE: "" }).port).toBe(12345);
  });

  it.each([
    ["[::1]:12345", { host: "::1", port: 12345 }],
    [":8080", { host: "0.0.0.0", port: 8080 }],
    ["localhost:0", { host: "localhost", port: 0 }],
  ])("BIND=%s", (bind, expected) => {
    expect(parseBind(bind)).toEqual(expected);
  });

  it.each([
    [{ BIND: "12345" }, /BIND="12345" must be host:port/],
    [{ BIND: "host:70000" }, /BIND/],
    [{ LOGLEVEL: "loud" }, /LOGLEVEL="loud" must be one of/],
    [{ MAX_BODY_BYTES: "1MB" }, /MAX_BODY_BYTES="1MB"/],
    [{ MAX_BODY_BYTES: "0" }, /at least 1/],
    [{ RENEWAL_SLACK: "2" }, /RENEWAL_SLACK="2" must be a duration from 0s to 1h/],
    [{ RENEWAL_SLACK: "2h" }, /RENEWAL_SLACK="2h"/],
    [{ CERTFILE: "/tls/cert.pem" }, /set both CERTFILE and KEYFILE/],
    [{ KEYFILE: "/tls/key.pem" }, /set both CERTFILE and KEYFILE/],
  ])("refuses %j", (env, message) => {
    expect(() => loadConfig(env)).toThrowError(ConfigError);
    expect(() => loadConfig(env)).toThrowError(message);
  });
});

describe("PROMETHEUS_URL and its credentials (docs/api.md)", () => {
  it("is off by default", () => {
    expect(loadConfig({}).prometheus).toBeUndefined();
    expect(loadConfig({ PROMETHEUS_URL: " " }).prometheus).toBeUndefined();
  });

  it("takes comma-separated base URLs, trimmed, without a trailing slash", () => {
    expect(
      loadConfig({ PROMETHEUS_URL: "http://prometheus:9090/, https://p2.example.com/prometheus ,http://[::1]:9090" }).prometheus,
    ).toEqual({
      urls: ["http://prometheus:9090", "https://p2.example.com/prometheus", "http://[::1]:9090"],
      publicUrls: ["http://prometheus:9090", "https://p2.example.com/prometheus", "http://[::1]:9090"],
      auth: undefined,
    });
  });

  it("PROMETHEUS_PUBLIC_URL gives the page's links, one per PROMETHEUS_URL item in the same order", () => {
    expect(
      loadConfig({ PROMETHEUS_URL: "http://prom-a:9090,http://prom-b:9090", PROMETHEUS_PUBLIC_URL: "https://a.example.com/prometheus/ , https://b.example.com" })
        .prometheus,
    ).toEqual({
      urls: ["http://prom-a:9090", "http://prom-b:9090"],
      publicUrls: ["https://a.example.com/prometheus", "https://b.example.com"],
      auth: undefined,
    });
  });

  it.each([
    [{ PROMETHEUS_PUBLIC_URL: "https://a.example.com" }, /PROMETHEUS_PUBLIC_URL is set but PROMETHEUS_URL is not/],
    [{ PROMETHEUS_URL: "http://a:9090,http://b:9090", PROMETHEUS_PUBLIC_URL: "https://a.example.com" }, /lists 1 URL and PROMETHEUS_URL 2: give one public URL per PROMETHEUS_URL item/],
    [{ PROMETHEUS_URL: "http://a:9090", PROMETHEUS_PUBLIC_URL: "https://a.example.com,https://b.example.com" }, /lists 2 URLs and PROMETHEUS_URL 1/],
    [{ PROMETHEUS_URL: "http://a:9090", PROMETHEUS_PUBLIC_URL: "prometheus.example.com" }, /PROMETHEUS_PUBLIC_URL item "prometheus.example.com" is not a URL/],
    [{ PROMETHEUS_URL: "http://a:9090", PROMETHEUS_PUBLIC_URL: "javascript:alert(1)" }, /PROMETHEUS_PUBLIC_URL item "javascript:alert\(1\)" must start with http:\/\/ or https:\/\//],
    [{ PROMETHEUS_URL: "http://a:9090", PROMETHEUS_PUBLIC_URL: "https://u:p@a.example.com" }, /carries credentials; it is shown on the page/],
    [{ PROMETHEUS_URL: "http://a:9090", PROMETHEUS_PUBLIC_URL: "https://a.example.com/?x=1" }, /PROMETHEUS_PUBLIC_URL item .* must be a base URL without \? or #/],
    [{ PROMETHEUS_URL: "http://a:9090,http://b:9090", PROMETHEUS_PUBLIC_URL: "https://a.example.com,,https://b.example.com" }, /PROMETHEUS_PUBLIC_URL has an empty item/],
  ])("PROMETHEUS_PUBLIC_URL %j is refused with a message that says what to do", (env, message) => {
    expect(() => loadConfig(env)).toThrow(message);
  });

  it("reads a bearer token file, or a user and password file", () => {
    expect(loadConfig({ PROMETHEUS_URL: "http://p:9090", PROMETHEUS_BEARER_TOKEN_FILE: "/run/token" }).prometheus?.auth).toEqual({
      kind: "bearer",
      tokenFile: "/run/token",
    });
    expect(
      loadConfig({ PROMETHEUS_URL: "http://p:9090", PROMETHEUS_USERNAME: "sd", PROMETHEUS_PASSWORD_FILE: "/run/pw" }).prometheus?.auth,
    ).toEqual({ kind: "basic", username: "sd", passwordFile: "/run/pw" });
  });

  it.each([
    [{ PROMETHEUS_URL: "prometheus:9090" }, /must start with http:\/\/ or https:\/\//],
    [{ PROMETHEUS_URL: "not a url" }, /"not a url" is not a URL/],
    [{ PROMETHEUS_URL: "ftp://p:21" }, /must start with http/],
    [{ PROMETHEUS_URL: "http://a:9090,,http://b:9090" }, /empty item/],
    [{ PROMETHEUS_URL: "http://a:9090," }, /empty item/],
    [{ PROMETHEUS_URL: "http://user:secret@a:9090" }, /carries credentials; put them in PROMETHEUS_USERNAME/],
    [{ PROMETHEUS_URL: "http://a:9090/?x=1" }, /without \? or #/],
    [{ PROMETHEUS_URL: "http://a:9090,http://a:9090/" }, /lists http:\/\/a:9090 twice/],
    [
      { PROMETHEUS_URL: "http://a:9090", PROMETHEUS_BEARER_TOKEN_FILE: "/t", PROMETHEUS_USERNAME: "u", PROMETHEUS_PASSWORD_FILE: "/p" },
      /not both/,
    ],
    [{ PROMETHEUS_URL: "http://a:9090", PROMETHEUS_USERNAME: "u" }, /set both PROMETHEUS_USERNAME and PROMETHEUS_PASSWORD_FILE/],
    [{ PROMETHEUS_URL: "http://a:9090", PROMETHEUS_PASSWORD_FILE: "/p" }, /set both PROMETHEUS_USERNAME/],
    [{ PROMETHEUS_BEARER_TOKEN_FILE: "/t" }, /need PROMETHEUS_URL/],
  ])("refuses %j", (env, message) => {
    expect(() => loadConfig(env)).toThrowError(ConfigError);
    expect(() => loadConfig(env)).toThrowError(message);
  });
});
