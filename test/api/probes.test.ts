import fc from "fast-check";
import yaml from "js-yaml";
import { afterAll, beforeAll, beforeEach, describe, expect, it } from "vitest";
import { MAX_PROBE_URL_LENGTH } from "../../src/parse/values.js";
import { filesIn, startTestService, type TestService } from "../helpers.js";

/**
 * Probe groups (`/<application>/<environment>/probes`) through a real listener, on the
 * directory and (project api-on-etcd) on etcd: the rules of the groups, the grammar of probe
 * targets, and their file in probes/, apart from the scrape group of the same pair.
 */

let sd: TestService;
beforeAll(async () => {
  sd = await startTestService();
});
afterAll(() => sd.close());

const PROBES = "/billing/prod/probes";
const defaults = { job: "billing", env: "prod" };

interface Refusal {
  readonly status: number;
  readonly message: string;
}

/** A refused request changes nothing: the probe group's file and GET are as before. */
async function refused(method: string, path: string, body: unknown, contentType?: string): Promise<Refusal> {
  const before = { file: await sd.fileOf("billing", "prod", "probes"), served: (await sd.request("GET", PROBES)).body };
  const answer = await sd.request(method, path, { body, ...(contentType === undefined ? {} : { contentType }) });
  expect(answer.status, JSON.stringify(answer.body)).toBeGreaterThanOrEqual(400);
  expect(answer.status).toBeLessThan(500);
  expect(await sd.fileOf("billing", "prod", "probes")).toEqual(before.file);
  expect((await sd.request("GET", PROBES)).body).toEqual(before.served);
  return { status: answer.status, message: (answer.body as { message: string }).message };
}

/** GET and the file in probes/ agree, and equal `expected` (undefined: no file, GET []). */
async function expectProbes(expected: object | undefined): Promise<void> {
  expect(await sd.fileOf("billing", "prod", "probes")).toEqual(expected === undefined ? undefined : [expected]);
  expect((await sd.request("GET", PROBES)).body).toEqual(expected === undefined ? [] : [expected]);
}

describe("the probe group of an application/environment", () => {
  beforeEach(async () => {
    await sd.request("DELETE", PROBES);
    await sd.request("DELETE", "/billing/prod");
  });

  it("the one-liner registers a URL with its module into probes/, apart from the scrape group", async () => {
    expect((await sd.request("GET", PROBES)).body).toEqual([]);
    const put = await sd.request("PUT", PROBES, { body: "targets=https://billing.example.com/health&__param_module=http_2xx" });
    expect(put.status, JSON.stringify(put.body)).toBe(200);
    const group = { targets: ["https://billing.example.com/health"], labels: { ...defaults, __param_module: "http_2xx" } };
    expect(put.body).toEqual([group]);
    await expectProbes(group);
    // The scrape job's *.json never reads it: the file is in the folder, and the scrape group is untouched.
    expect(await filesIn(sd.directory)).toEqual(["probes/billing@prod.json"]);
    expect((await sd.request("GET", "/billing/prod")).body).toEqual([]);

    const scrape = await sd.request("PUT", "/billing/prod", { body: "targets=billing-1:9100" });
    expect(scrape.status).toBe(200);
    expect((await sd.request("DELETE", "/billing/prod")).status).toBe(200);
    await expectProbes(group);
    expect((await sd.request("DELETE", PROBES)).status).toBe(200);
    await expectProbes(undefined);
    expect(await filesIn(sd.directory)).toEqual([]);
  });

  it("follows every rule of the groups: POST adds, DELETE removes targets and labels, job and env stay", async () => {
    expect((await sd.request("PUT", PROBES, { body: { targets: ["https://a.example.com/"], labels: { __param_module: "http_2xx", team: "core" } } })).status).toBe(200);
    const posted = await sd.request("POST", PROBES, { body: { targets: ["http://b.example.com:8080/ready?deep=1"] } });
    expect(posted.status, JSON.stringify(posted.body)).toBe(200);
    await expectProbes({ targets: ["https://a.example.com/", "http://b.example.com:8080/ready?deep=1"], labels: { ...defaults, __param_module: "http_2xx", team: "core" } });

    expect((await refused("POST", PROBES, { targets: ["https://a.example.com/"] })).message).toMatch(/already registered for the probes of billing\/prod: "https:\/\/a.example.com\/"/);
    expect((await refused("DELETE", PROBES, { labels: { job: "billing" } })).message).toMatch(/"job" cannot be deleted/);
    expect((await refused("DELETE", PROBES, { targets: ["https://c.example.com/"] })).message).toMatch(/not registered for the probes of billing\/prod/);
    expect((await refused("PUT", PROBES, { targets: ["https://a.example.com/", "https://a.example.com/"] })).message).toMatch(/listed twice/);

    const shrunk = await sd.request("DELETE", PROBES, { body: { targets: ["https://a.example.com/"], labels: { team: "core" } } });
    expect(shrunk.status).toBe(200);
    await expectProbes({ targets: ["http://b.example.com:8080/ready?deep=1"], labels: { ...defaults, __param_module: "http_2xx" } });
    expect((await sd.request("PUT", PROBES, { body: { labels: { job: "blackbox" } } })).status).toBe(200);
    await expectProbes({ targets: ["http://b.example.com:8080/ready?deep=1"], labels: { job: "blackbox", env: "prod" } });
  });

  it("creating it needs targets; DELETE of nothing is a 404 that says probes", async () => {
    expect((await refused("PUT", PROBES, { labels: { __param_module: "http_2xx" } })).message).toMatch(/nothing is registered for the probes of billing\/prod yet/);
    const missing = await refused("DELETE", PROBES, undefined);
    expect(missing.status).toBe(404);
    expect(missing.message).toBe("nothing is registered for the probes of billing/prod");
  });

  it("host[:port] targets for the tcp, icmp and dns modules", async () => {
    const put = await sd.request("PUT", PROBES, { body: "targets=db.example.com:5432,10.0.0.1,[2001:db8::1]:53&__param_module=tcp_connect" });
    expect(put.status, JSON.stringify(put.body)).toBe(200);
    await expectProbes({ targets: ["db.example.com:5432", "10.0.0.1", "[2001:db8::1]:53"], labels: { ...defaults, __param_module: "tcp_connect" } });
    expect((await refused("POST", PROBES, "targets=db.example.com/health")).message).toMatch(/: scheme: a target with a path or query is a URL/);
  });

  it("?ttl= expires probes like targets, and ETag/If-Match/If-None-Match hold", async () => {
    const created = await sd.request("PUT", `${PROBES}?ttl=1h`, { body: { targets: ["https://a.example.com/"] }, headers: { "If-None-Match": "*" } });
    expect(created.status).toBe(200);
    const tag = created.headers.get("etag") ?? "";
    expect(tag).toMatch(/^"[A-Za-z0-9_-]{27}"$/);
    expect((await fetch(sd.url + PROBES, { method: "HEAD" })).headers.get("etag")).toBe(tag);
    const index = (await sd.request("GET", "/")).body as { probes: { application: string; expires?: Record<string, string> }[] };
    expect(Object.keys(index.probes.find((line) => line.application === "billing")?.expires ?? {})).toEqual(["https://a.example.com/"]);

    const again = await sd.request("PUT", PROBES, { body: { targets: ["https://b.example.com/"] }, headers: { "If-None-Match": "*" } });
    expect(again.status).toBe(412);
    expect((await sd.request("POST", PROBES, { body: { targets: ["https://b.example.com/"] }, headers: { "If-Match": '"stale"' } })).status).toBe(412);
    const matched = await sd.request("POST", PROBES, { body: { targets: ["https://b.example.com/"] }, headers: { "If-Match": tag } });
    expect(matched.status).toBe(200);
    expect(matched.headers.get("etag")).not.toBe(tag);
    expect((await refused("PUT", `${PROBES}?tll=1h`, { targets: ["https://c.example.com/"] })).message).toMatch(/unknown query parameter "tll" \(did you mean \?ttl=\?\): PUT \/<application>\/<environment>\/probes takes \?ttl=/);
  });

  it("answers 405 with Allow to other methods, and HEAD like GET", async () => {
    const answer = await sd.request("PATCH", PROBES);
    expect(answer.status).toBe(405);
    expect(answer.headers.get("allow")).toBe("GET, HEAD, PUT, POST, DELETE");
    expect((answer.body as { message: string }).message).toMatch(/PATCH is not supported on \/<application>\/<environment>\/probes/);
    expect((await fetch(sd.url + PROBES, { method: "HEAD" })).status).toBe(200);
  });

  it("the scrape route refuses a URL and points at /probes", async () => {
    const answer = await sd.request("PUT", "/billing/prod", { body: "targets=https://billing.example.com/health" });
    expect(answer.status).toBe(400);
    expect((answer.body as { message: string }).message).toMatch(/not a URL.*__scheme__ and __metrics_path__.*\/<application>\/<environment>\/probes/);
    expect(await filesIn(sd.directory)).toEqual([]);
  });
});

describe("URLs with commas, in every body format", () => {
  beforeEach(async () => {
    await sd.request("DELETE", PROBES);
  });
  const withComma = "https://api.example.com/v1/items?ids=1,2,3";
  const plain = "https://api.example.com/health";

  it("JSON and YAML carry them as they are", async () => {
    expect((await sd.request("PUT", PROBES, { body: { targets: [withComma, plain] } })).status).toBe(200);
    await expectProbes({ targets: [withComma, plain], labels: defaults });
    const asYaml = await sd.request("PUT", PROBES, { body: yaml.dump({ targets: [plain, withComma] }), contentType: "application/yaml" });
    expect(asYaml.status).toBe(200);
    await expectProbes({ targets: [plain, withComma], labels: defaults });
  });

  it("a form field that starts with a URL is one URL, commas included; several URLs are several fields", async () => {
    const form = new URLSearchParams([["targets", withComma], ["targets", plain]]).toString();
    const answer = await sd.request("PUT", PROBES, { body: form });
    expect(answer.status, JSON.stringify(answer.body)).toBe(200);
    await expectProbes({ targets: [withComma, plain], labels: defaults });
  });

  it("two URLs in one form field are refused, not taken for one URL with a comma", async () => {
    const { message } = await refused("PUT", PROBES, new URLSearchParams([["targets", `${plain},${withComma}`]]).toString());
    expect(message).toMatch(/more than one URL.*-d targets=URL1 -d targets=URL2/);
  });

  it("host:port lists in a form are still split on commas", async () => {
    expect((await sd.request("PUT", PROBES, { body: "targets=a.example.com:22, b.example.com:22" })).status).toBe(200);
    await expectProbes({ targets: ["a.example.com:22", "b.example.com:22"], labels: defaults });
  });
});

// -------------------------------------------------------------------------------------------
// The grammar of probe URLs, as properties, through HTTP.

const dnsLabel = fc.stringMatching(/^[a-z_][a-z0-9_-]{0,20}[a-z0-9_]$|^[a-z]$/);
const host = fc.oneof(
  fc.array(dnsLabel, { minLength: 1, maxLength: 4 }).map((labels) => labels.join(".")),
  fc.ipV4(),
  fc.ipV6().map((ip) => `[${ip}]`),
);
const port = fc.option(fc.integer({ min: 1, max: 65535 }).map((number) => `:${number}`), { nil: "" });
/** What a path segment or query may hold: RFC 3986's characters and percent-encodings. */
const pathPiece = fc.array(fc.oneof(fc.constantFrom(..."abcXYZ019-._~!$&'()*+,;=:@"), fc.constantFrom("%20", "%2F", "%e9", "%25")), { maxLength: 12 }).map((parts) => parts.join(""));
const path = fc.option(fc.array(pathPiece, { minLength: 1, maxLength: 4 }).map((segments) => `/${segments.join("/")}`), { nil: "" });
const query = fc.option(fc.array(fc.oneof(pathPiece, fc.constantFrom("/", "?")), { maxLength: 4 }).map((parts) => `?${parts.join("")}`), { nil: "" });
const validUrl = fc.tuple(fc.constantFrom("http", "https"), host, port, path, query).map(([scheme, h, p, pa, q]) => `${scheme}://${h}${p}${pa}${q}`);

/** A URL with exactly one part made wrong, and the part the refusal must name. */
const brokenUrl: fc.Arbitrary<{ readonly url: string; readonly part: string }> = fc.oneof(
  fc.tuple(fc.constantFrom("ftp", "HTTP", "Https", "tcp", "file", "ws"), host, path).map(([scheme, h, p]) => ({ url: `${scheme}://${h}${p}`, part: "scheme" })),
  fc.tuple(fc.constantFrom("user@", "user:secret@", ":@", "a@b@"), host, path).map(([userinfo, h, p]) => ({ url: `https://${userinfo}${h}${p}`, part: "userinfo" })),
  fc.tuple(fc.constantFrom("", "exa mple.com", "-bad.example", "bad-.example", "10.0.0.256", "2001:db8::1", "[::g]", "[::1", "é.example", "a..b", "[fe80::1%25eth0]"), path).map(([h, p]) => ({ url: `http://${h}${p}`, part: "host" })),
  fc.tuple(host, fc.constantFrom("0", "65536", "09", "x", "", "80a", "99999")).map(([h, p]) => ({ url: `http://${h}:${p}/`, part: "port" })),
  fc.tuple(host, pathPiece, fc.constantFrom(" ", '"', "<", ">", "\\", "^", "`", "{", "|", "}", "é", "%zz", "%4", "\u0000", "\n", "\t")).map(([h, piece, bad]) => ({ url: `https://${h}/${piece}${bad}x`, part: "path" })),
  fc.tuple(host, pathPiece, fc.constantFrom(" ", '"', "<", ">", "\\", "^", "`", "{", "|", "}", "ü", "%g0", "%", "\r")).map(([h, piece, bad]) => ({ url: `https://${h}/?${piece}${bad}x`, part: "query" })),
  fc.tuple(validUrl, fc.constantFrom("#", "#top", "#/a?b")).map(([url, fragment]) => ({ url: `${url}${fragment}`, part: "fragment" })),
  fc.tuple(host, fc.integer({ min: MAX_PROBE_URL_LENGTH + 1, max: MAX_PROBE_URL_LENGTH + 500 })).map(([h, length]) => {
    const start = `https://${h}/`;
    return { url: start + "a".repeat(length - start.length), part: "length" };
  }),
);

describe("the grammar of probe URLs, as properties through HTTP", () => {
  const baseline = { targets: ["https://baseline.example.com/"], labels: { ...defaults, __param_module: "http_2xx" } };
  beforeAll(async () => {
    expect((await sd.request("PUT", PROBES, { body: baseline })).status).toBe(200);
  });

  it("accepts every http(s) URL with a DNS, IPv4 or bracketed IPv6 host, a port, a path and a query, and stores it exactly as sent", async () => {
    const accepted = new Set<string>();
    await fc.assert(
      fc.asyncProperty(validUrl, async (url) => {
        expect(url.length).toBeLessThanOrEqual(MAX_PROBE_URL_LENGTH);
        const answer = await sd.request("PUT", "/grammar/ok/probes", { body: { targets: [url] } });
        expect(answer.status, `${url}: ${JSON.stringify(answer.body)}`).toBe(200);
        expect(answer.body).toEqual([{ targets: [url], labels: { job: "grammar", env: "ok" } }]);
        expect(await sd.fileOf("grammar", "ok", "probes")).toEqual(answer.body);
        accepted.add(url);
      }),
      { numRuns: 80 },
    );
    expect(accepted.size).toBeGreaterThan(40);
    // The longest URL taken.
    const longest = `https://example.com/${"a".repeat(MAX_PROBE_URL_LENGTH - "https://example.com/".length)}`;
    expect((await sd.request("PUT", "/grammar/ok/probes", { body: { targets: [longest] } })).status).toBe(200);
  });

  it("refuses a URL with one wrong part with a 400 that names the part, and changes nothing", async () => {
    const parts = new Set<string>();
    await fc.assert(
      fc.asyncProperty(brokenUrl, fc.constantFrom("json", "form"), async ({ url, part }, format) => {
        const body = format === "json" ? { targets: [url] } : new URLSearchParams([["targets", url]]).toString();
        const { status, message } = await refused("POST", PROBES, body);
        // The bad character is never last: a form's values are trimmed (a trailing space is no part of the URL).
        expect(status, url).toBe(400);
        expect(message, url).toMatch(new RegExp(`^probe target .* is not an http\\(s\\) URL or host\\[:port\\]: ${part}\\b`, "s"));
        parts.add(part);
      }),
      { numRuns: 120 },
    );
    expect([...parts].sort()).toEqual(["fragment", "host", "length", "path", "port", "query", "scheme", "userinfo"]);
    await expectProbes(baseline);
  });
});
