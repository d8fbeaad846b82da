import { describe, expect, it } from "vitest";
import { ConfigError, loadConfig, parseBind } from "../src/config.js";

describe("configuration (SPEC §8)", () => {
  it("has the documented defaults", () => {
    expect(loadConfig({})).toEqual({
      fileSdDirectory: "./file_sd",
      host: "127.0.0.1",
      port: 12345,
      logLevel: "info",
      maxBodyBytes: 1048576,
      tls: undefined,
    });
  });

  it("reads every variable", () => {
    const config = loadConfig({
      FILE_SD_DIRECTORY: "/file_sd",
      BIND: "0.0.0.0:9999",
      LOGLEVEL: "DEBUG",
      MAX_BODY_BYTES: "2048",
      CERTFILE: "/tls/cert.pem",
      KEYFILE: "/tls/key.pem",
    });
    expect(config).toEqual({
      fileSdDirectory: "/file_sd",
      host: "0.0.0.0",
      port: 9999,
      logLevel: "debug",
      maxBodyBytes: 2048,
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
    [{ CERTFILE: "/tls/cert.pem" }, /set both CERTFILE and KEYFILE/],
    [{ KEYFILE: "/tls/key.pem" }, /set both CERTFILE and KEYFILE/],
  ])("refuses %j", (env, message) => {
    expect(() => loadConfig(env)).toThrowError(ConfigError);
    expect(() => loadConfig(env)).toThrowError(message);
  });
});
