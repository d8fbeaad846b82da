import { Agent, request as httpRequest, type OutgoingHttpHeaders } from "node:http";
import { readdir, readFile, stat } from "node:fs/promises";
import { join } from "node:path";
import { gzipSync } from "node:zlib";
import fc from "fast-check";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { parseDeadlines } from "../../src/directory/deadlines-file.js";
import { parseGroupFile } from "../../src/directory/group-file.js";
import { JOURNAL_FILE, OLD_JOURNAL_FILE } from "../../src/filestore/journal.js";
import { filesIn, makeTempDir, removeDir } from "../helpers.js";
import { startChildService, type ChildService } from "../support/child-service.js";

/**
 * Whatever a client sends — any method, content type, body or path — the
 * built server answers below 500 with JSON, keeps running, and writes only
 * valid group lists named `<application>@<environment>.json` inside its
 * directory. Requests go through node:http so that nothing normalises the
 * path or refuses odd methods on the way.
 */

const MAX_BODY_BYTES = 1024 * 1024;
const FUZZ_RUNS = Number(process.env.FUZZ_RUNS ?? 2000);
const MANAGED_FILE = /^[A-Za-z0-9_][A-Za-z0-9_.-]*@[A-Za-z0-9_][A-Za-z0-9_.-]*\.json$/;
/** The deadlines beside a group: `<application>@<environment>.expires`. */
const DEADLINES_FILE = /^[A-Za-z0-9_][A-Za-z0-9_.-]*@[A-Za-z0-9_][A-Za-z0-9_.-]*\.expires$/;

interface RawRequest {
  readonly method: string;
  readonly path: string;
  readonly headers?: OutgoingHttpHeaders;
  readonly body?: Buffer | string;
  /** Send the body with Transfer-Encoding: chunked instead of Content-Length. */
  readonly chunked?: boolean;
}

interface Answered {
  readonly status: number;
  readonly contentType: string | undefined;
  readonly body: string;
}
type RawAnswer = Answered | { error: string; reusedSocket: boolean };

/**
 * Keep-alive, so that when the server answers before reading a large body it
 * drains the rest instead of closing the socket on it: a close with unread
 * bytes is a TCP reset, which can reach the client before the answer does.
 */
const agent = new Agent({ keepAlive: true, maxSockets: 4 });

async function send(url: string, raw: RawRequest): Promise<RawAnswer> {
  const answer = await sendOnce(url, raw);
  // A kept-alive socket the server closed just as we reused it: send again once.
  return "error" in answer && answer.reusedSocket ? sendOnce(url, raw) : answer;
}

function sendOnce(url: string, raw: RawRequest): Promise<RawAnswer> {
  const { hostname, port } = new URL(url);
  return new Promise((resolve) => {
    const request = httpRequest(
      { host: hostname, port, method: raw.method, path: raw.path, headers: raw.headers, agent, timeout: 30_000 },
      (response) => {
        const chunks: Buffer[] = [];
        response.on("data", (chunk: Buffer) => chunks.push(chunk));
        response.on("end", () =>
          resolve({
            status: response.statusCode ?? 0,
            contentType: response.headers["content-type"],
            body: Buffer.concat(chunks).toString("utf8"),
          }),
        );
        response.on("error", (error) => resolve({ error: error.message, reusedSocket: false }));
      },
    );
    request.on("timeout", () => request.destroy(new Error("no answer within 30 s")));
    request.on("error", (error: NodeJS.ErrnoException) =>
      resolve({ error: error.message, reusedSocket: request.reusedSocket && error.code === "ECONNRESET" }),
    );
    if (raw.body === undefined) {
      request.end();
      return;
    }
    // Frame the body explicitly: for DELETE, GET and OPTIONS node:http would
    // otherwise send it with neither Content-Length nor chunked encoding.
    const body = Buffer.from(raw.body);
    if (raw.chunked === true) {
      request.setHeader("transfer-encoding", "chunked");
      request.write(body.subarray(0, body.length >> 1));
      request.end(body.subarray(body.length >> 1));
    } else {
      if (request.getHeader("content-length") === undefined) request.setHeader("content-length", body.length);
      request.end(body);
    }
  });
}

const describeRequest = (raw: RawRequest): string => {
  const body = raw.body === undefined ? Buffer.alloc(0) : Buffer.from(raw.body);
  const shown = body.length > 200 ? `${body.subarray(0, 200).toString("latin1")}… (${body.length} bytes)` : body.toString();
  return `${raw.method} ${raw.path.slice(0, 300)} ${JSON.stringify(raw.headers ?? {})} ${JSON.stringify(shown)}`;
};

/** What must hold for every answer: below 500, and JSON whenever there is a body. */
function problemWith(raw: RawRequest, answer: RawAnswer): string | undefined {
  if ("error" in answer) return `${describeRequest(raw)}: no answer (${answer.error})`;
  if (answer.status >= 500) return `${describeRequest(raw)}: ${answer.status} ${answer.body.slice(0, 500)}`;
  if (answer.body === "") return undefined;
  let parsed: unknown;
  try {
    parsed = JSON.parse(answer.body);
  } catch {
    return `${describeRequest(raw)}: ${answer.status} with a body that is not JSON: ${answer.body.slice(0, 200)}`;
  }
  if (answer.status >= 400 && typeof (parsed as { message?: unknown }).message !== "string") {
    return `${describeRequest(raw)}: ${answer.status} without a "message": ${answer.body.slice(0, 200)}`;
  }
  return undefined;
}

// ---- hostile bodies, built once ----

const DEEP = 100_000;
const nested = (open: string, close: string, depth: number): string => open.repeat(depth) + close.repeat(depth);
const yamlAliasBomb = (levels: number): string => {
  const anchors = ["&a0 [x, x, x, x, x, x, x, x, x, x]"];
  for (let level = 1; level < levels; level++) anchors.push(`&a${level} [${Array(10).fill(`*a${level - 1}`).join(", ")}]`);
  return `[${anchors.join(", ")}]`;
};
const manyTargets = (budget: number, separator: string, quote: string): string => {
  const items: string[] = [];
  let size = 0;
  for (let index = 0; size < budget; index++) {
    const item = `${quote}h${index}.example:9100${quote}`;
    items.push(item);
    size += item.length + separator.length;
  }
  return items.join(separator);
};

const YAML = "application/yaml";
const JSON_TYPE = "application/json";
const FORM = "application/x-www-form-urlencoded";

/** Named bodies that broke, or could break, a parser; each with the answer it must get. */
const NASTY: { name: string; contentType: string; body: Buffer | string; status?: number }[] = [
  { name: "JSON targets nested 100k deep", contentType: JSON_TYPE, body: `{"targets": ${nested("[", "]", DEEP)}}`, status: 400 },
  { name: "JSON label value nested 100k deep", contentType: JSON_TYPE, body: `{"labels": {"a": ${nested("[", "]", DEEP)}}}`, status: 400 },
  { name: "JSON document nested 100k deep", contentType: JSON_TYPE, body: nested("[", "]", DEEP), status: 400 },
  { name: "JSON mappings nested 50k deep", contentType: JSON_TYPE, body: `{"targets": ${nested('{"a":', "}", 50_000).replace(/:}/, ":1}")}}`, status: 400 },
  { name: "JSON label value mappings nested 50k deep", contentType: JSON_TYPE, body: `{"labels": {"a": ${'{"a":'.repeat(50_000)}1${"}".repeat(50_000)}}}`, status: 400 },
  { name: "YAML targets nested 100k deep", contentType: YAML, body: `targets: ${nested("[", "]", DEEP)}\n`, status: 400 },
  { name: "YAML block sequences nested 2k deep", contentType: YAML, body: `targets:\n${"- ".repeat(2000)}x\n`, status: 400 },
  { name: "YAML circular targets", contentType: YAML, body: "targets: &a [*a]\n", status: 400 },
  { name: "YAML circular label value", contentType: YAML, body: "labels: &a {x: *a}\n", status: 400 },
  { name: "YAML alias bomb in targets", contentType: YAML, body: `targets: ${yamlAliasBomb(10)}\n`, status: 400 },
  { name: "YAML alias bomb in a label value", contentType: YAML, body: `labels: {x: ${yamlAliasBomb(10)}}\n`, status: 400 },
  { name: "YAML alias bomb as targets itself", contentType: YAML, body: `labels: {x: ${yamlAliasBomb(9)}}\ntargets: *a8\n`, status: 400 },
  { name: "YAML alias bomb under an unknown key", contentType: YAML, body: `bomb: ${yamlAliasBomb(10)}\n`, status: 400 },
  { name: "YAML merge key", contentType: YAML, body: "base: &b {team: a}\nlabels: {<<: *b}\n", status: 400 },
  { name: "YAML several documents", contentType: YAML, body: "targets: [a:1]\n---\ntargets: [b:1]\n", status: 400 },
  { name: "YAML js function tag", contentType: YAML, body: 'targets: !!js/function "function () { process.exit(1) }"\n', status: 400 },
  { name: "YAML python tag", contentType: YAML, body: "targets: !!python/object/apply:os.system ['true']\n", status: 400 },
  { name: "YAML binary tag", contentType: YAML, body: "targets: [!!binary aGVsbG8=]\n", status: 400 },
  { name: "YAML set tag", contentType: YAML, body: "targets: !!set {a:1: null}\n", status: 400 },
  { name: "invalid UTF-8 in JSON", contentType: JSON_TYPE, body: Buffer.from([...Buffer.from('{"targets": ["'), 0xff, 0xfe, ...Buffer.from(':1"]}')]), status: 400 },
  { name: "overlong UTF-8 slash in JSON", contentType: JSON_TYPE, body: Buffer.from([...Buffer.from('{"targets": ["a'), 0xc0, 0xaf, ...Buffer.from(':1"]}')]), status: 400 },
  { name: "UTF-8 surrogate in YAML", contentType: YAML, body: Buffer.from([...Buffer.from("targets: [a"), 0xed, 0xa0, 0x80, ...Buffer.from(":1]")]), status: 400 },
  { name: "invalid UTF-8 in a form", contentType: FORM, body: Buffer.from([...Buffer.from("targets=a"), 0xff, ...Buffer.from(":1")]), status: 400 },
  { name: "NUL in a JSON target", contentType: JSON_TYPE, body: '{"targets": ["a\u0000:1"]}', status: 400 },
  { name: "raw NUL byte in a JSON target", contentType: JSON_TYPE, body: Buffer.from([...Buffer.from('{"targets": ["a'), 0, ...Buffer.from(':1"]}')]), status: 400 },
  { name: "NUL in a YAML label", contentType: YAML, body: 'targets: [a:1]\nlabels: {"a\\0b": x}\n', status: 400 },
  { name: "raw NUL byte in YAML", contentType: YAML, body: Buffer.from([...Buffer.from("targets: [a"), 0, ...Buffer.from(":1]\n")]), status: 400 },
  { name: "percent-encoded NUL in a form", contentType: FORM, body: "targets=a%00:1", status: 400 },
  { name: "raw NUL byte in a form label", contentType: FORM, body: Buffer.from([...Buffer.from("targets=nul.example:1&te"), 0, ...Buffer.from("am=x")]), status: 400 },
  { name: "JSON with a byte-order mark", contentType: JSON_TYPE, body: '\uFEFF{"targets": ["bom.example:1"]}' },
  { name: "JSON __proto__ as a key", contentType: JSON_TYPE, body: '{"__proto__": {"targets": ["a:1"]}}', status: 400 },
  { name: "JSON number beyond double", contentType: JSON_TYPE, body: '{"targets": [1e999999]}', status: 400 },
  { name: "JSON 50k labels", contentType: JSON_TYPE, body: JSON.stringify({ labels: Object.fromEntries(Array.from({ length: 50_000 }, (_, i) => [`l${i}`, "v"])) }) },
  { name: "a 1 MiB target", contentType: JSON_TYPE, body: `{"targets": ["${"a".repeat(MAX_BODY_BYTES - 20)}"]}`, status: 400 },
  { name: "JSON targets up to MAX_BODY_BYTES", contentType: JSON_TYPE, body: `{"targets": [${manyTargets(MAX_BODY_BYTES - 64, ",", '"')}]}` },
  { name: "YAML targets up to MAX_BODY_BYTES", contentType: YAML, body: `targets: [${manyTargets(MAX_BODY_BYTES - 64, ", ", "")}]\n` },
  { name: "form targets up to MAX_BODY_BYTES", contentType: FORM, body: `targets=${manyTargets(MAX_BODY_BYTES - 64, ",", "")}` },
  { name: "JSON duplicate targets up to MAX_BODY_BYTES", contentType: JSON_TYPE, body: `{"targets": [${'"d.example:1",'.repeat((MAX_BODY_BYTES - 64) / 14)}"d.example:1"]}`, status: 400 },
  { name: "JSON one byte over MAX_BODY_BYTES", contentType: JSON_TYPE, body: `{"targets": ["${"a".repeat(MAX_BODY_BYTES - 16)}"]}`, status: 413 },
  { name: "gzip body that is not gzip", contentType: JSON_TYPE, body: '{"targets": ["a:1"]}', status: 400 },
];
// Sanity of the fixtures themselves: the one over the limit is, the near ones are not.
const OVER = NASTY.find((nasty) => nasty.status === 413);
if (OVER === undefined || Buffer.byteLength(OVER.body) !== MAX_BODY_BYTES + 1) throw new Error("the 413 fixture must be MAX_BODY_BYTES + 1 bytes");

/** Requests named for what they attack, beyond the body: methods, paths, headers. */
const NASTY_REQUESTS: { name: string; request: RawRequest; status?: number }[] = [
  { name: "path traversal", request: { method: "POST", path: "/../escaped/x", headers: { "content-type": FORM }, body: "targets=a:1" }, status: 404 },
  { name: "traversal as a name", request: { method: "POST", path: "/../x", headers: { "content-type": FORM }, body: "targets=a:1" }, status: 400 },
  { name: "encoded traversal", request: { method: "POST", path: "/%2e%2e/%2e%2e", headers: { "content-type": FORM }, body: "targets=a:1" }, status: 400 },
  { name: "encoded slash", request: { method: "POST", path: "/a%2fb/c", headers: { "content-type": FORM }, body: "targets=a:1" }, status: 400 },
  { name: "encoded backslash", request: { method: "PUT", path: "/a%5c..%5c..%5cb/c", headers: { "content-type": FORM }, body: "targets=a:1" }, status: 400 },
  { name: "encoded NUL", request: { method: "POST", path: "/a%00.json/c", headers: { "content-type": FORM }, body: "targets=a:1" }, status: 400 },
  { name: "malformed percent-encoding", request: { method: "PUT", path: "/%E0%A4%A/%zz", headers: { "content-type": FORM }, body: "targets=a:1" }, status: 400 },
  { name: "raw latin-1 byte in the path", request: { method: "POST", path: "/caf\u00e9/x", headers: { "content-type": FORM }, body: "targets=a:1" }, status: 400 },
  { name: "encoded unicode name", request: { method: "POST", path: `/${encodeURIComponent("приложение")}/${encodeURIComponent("🔥")}`, headers: { "content-type": FORM }, body: "targets=a:1" }, status: 400 },
  { name: "129-character name", request: { method: "POST", path: `/${"a".repeat(129)}/x`, headers: { "content-type": FORM }, body: "targets=a:1" }, status: 400 },
  { name: "two 128-character names", request: { method: "POST", path: `/${"a".repeat(128)}/${"b".repeat(128)}`, headers: { "content-type": FORM }, body: "targets=a:1" }, status: 400 },
  { name: "a name starting with a dot", request: { method: "POST", path: "/.hidden/x", headers: { "content-type": FORM }, body: "targets=a:1" }, status: 400 },
  { name: "a name with @", request: { method: "POST", path: "/a@b/c", headers: { "content-type": FORM }, body: "targets=a:1" }, status: 400 },
  { name: "reserved /-/ prefix", request: { method: "POST", path: "/-/ready", headers: { "content-type": FORM }, body: "targets=a:1" } },
  { name: "TRACE", request: { method: "TRACE", path: "/a/b" }, status: 405 },
  { name: "PATCH", request: { method: "PATCH", path: "/a/b", headers: { "content-type": JSON_TYPE }, body: "{}" }, status: 405 },
  { name: "OPTIONS", request: { method: "OPTIONS", path: "/a/b" }, status: 405 },
  { name: "PROPFIND", request: { method: "PROPFIND", path: "/a/b" }, status: 405 },
  { name: "a method HTTP does not know", request: { method: "FOO", path: "/a/b" }, status: 400 },
  { name: "an absolute-form request target", request: { method: "GET", path: "http://evil.example/a/b" } },
  { name: "chunked body without a content type", request: { method: "POST", path: "/a/b", body: "targets=a:1", chunked: true }, status: 415 },
  { name: "charset that does not exist", request: { method: "POST", path: "/charset/bogus", headers: { "content-type": `${JSON_TYPE}; charset=x-bogus` }, body: '{"targets": ["a:1"]}' } },
  { name: "UTF-16 charset", request: { method: "POST", path: "/charset/utf16", headers: { "content-type": `${JSON_TYPE}; charset=utf-16le` }, body: Buffer.from('{"targets": ["a:1"]}', "utf16le") } },
  { name: "real gzip body", request: { method: "POST", path: "/gzip/real", headers: { "content-type": JSON_TYPE, "content-encoding": "gzip" }, body: gzipSync('{"targets": ["gz.example:1"]}') }, status: 200 },
  { name: "gzip bomb", request: { method: "POST", path: "/gzip/bomb", headers: { "content-type": JSON_TYPE, "content-encoding": "gzip" }, body: gzipSync(Buffer.alloc(64 * MAX_BODY_BYTES, " ")) }, status: 413 },
  { name: "unknown content encoding", request: { method: "POST", path: "/a/b", headers: { "content-type": JSON_TYPE, "content-encoding": "zstd" }, body: "{}" }, status: 415 },
  // Each of these ended the process once: a deadline keyed by a name of Object.prototype.
  { name: "heartbeat of a target named constructor", request: { method: "POST", path: "/a/e?ttl=60s", headers: { "content-type": FORM }, body: "targets=constructor" }, status: 200 },
  { name: "targets named after Object.prototype, with a ttl", request: { method: "PUT", path: "/constructor/__proto__?ttl=2s", headers: { "content-type": FORM }, body: "targets=__proto__,toString:9100,hasOwnProperty&__proto__=x&constructor=y" }, status: 200 },
  { name: "a __proto__ label in JSON", request: { method: "POST", path: "/toString/valueOf?ttl=1h", headers: { "content-type": JSON_TYPE }, body: '{"targets": ["valueOf"], "labels": {"__proto__": "p", "toString": "t"}}' }, status: 200 },
  { name: "a __proto__ label in YAML", request: { method: "POST", path: "/toString/yaml?ttl=1h", headers: { "content-type": YAML }, body: "targets: [isPrototypeOf]\nlabels: {__proto__: p}\n" }, status: 200 },
  { name: "a Content-Type named constructor", request: { method: "POST", path: "/a/ct", headers: { "content-type": "constructor" }, body: "targets=a:1" }, status: 415 },
  { name: "a misspelt ttl", request: { method: "POST", path: "/a/typo?tll=60s", headers: { "content-type": FORM }, body: "targets=a:1" }, status: 400 },
  { name: "the longest pair with a ttl", request: { method: "POST", path: `/${"a".repeat(128)}/${"b".repeat(107)}?ttl=1h`, headers: { "content-type": FORM }, body: "targets=a:1" }, status: 200 },
];

// ---- random requests ----

// Names that mean something to JavaScript are valid names too (src/model.ts, keys from clients).
const NAME_POOL = ["app", "billing", "x_1", "a.b-c", "_", "0", "Z", "constructor", "__proto__", "toString", "hasOwnProperty", "valueOf"];
const hostileSegment = fc.oneof(
  { weight: 6, arbitrary: fc.constantFrom(...NAME_POOL) },
  { weight: 2, arbitrary: fc.stringMatching(/^[A-Za-z0-9_][A-Za-z0-9_.-]{0,30}$/) },
  {
    weight: 3,
    arbitrary: fc.constantFrom(
      "..", ".", "%2e%2e", "%2E%2E", ".%2e", "a%2fb", "%2F", "a%00b", "%00", "%", "%zz", "%E0%A4%A", "-", "-x", ".x",
      "a@b", "a%20b", "a+b", "caf%C3%A9", "%F0%9F%94%A5", "a%5Cb", "~", "a;b", "a:b", "%252e%252e", "x".repeat(128),
      "y".repeat(129), "z".repeat(250), "a.json", "a@b.json", "CON", "a%0d%0ab",
    ),
  },
  { weight: 1, arbitrary: fc.string({ unit: "grapheme", maxLength: 12 }).map(encodeURIComponent) },
  { weight: 1, arbitrary: fc.string({ unit: "binary", maxLength: 12 }).map((text) => encodeURIComponent(text).replace(/%25/g, "%")) },
);
const hostilePath = fc.oneof(
  { weight: 8, arbitrary: fc.tuple(hostileSegment, hostileSegment).map(([a, b]) => `/${a}/${b}`) },
  { weight: 1, arbitrary: fc.tuple(hostileSegment, hostileSegment).map(([a, b]) => `/${a}/${b}/`) },
  { weight: 1, arbitrary: hostileSegment.map((a) => `/${a}`) },
  { weight: 1, arbitrary: fc.tuple(hostileSegment, hostileSegment, hostileSegment).map(([a, b, c]) => `/${a}/${b}/${c}`) },
  { weight: 1, arbitrary: fc.tuple(hostileSegment, hostileSegment).map(([a, b]) => `/-/${a}/${b}`) },
  {
    weight: 1,
    arbitrary: fc.constantFrom(
      "/", "//", "/-/healthy", "/-/../app/x", "/app/../../etc/passwd", "/app/x?targets=a:1", "//app//x", "/app/./x",
      "/%2e%2e/%2e%2e/x", "/app/x/../y", "*", "/app/x#frag", "/app/x;param",
    ),
  },
);
const method = fc.oneof(
  { weight: 8, arbitrary: fc.constantFrom("GET", "HEAD", "PUT", "POST", "DELETE") },
  // Methods node's HTTP parser does not know (FOO) never reach the service; see NASTY_REQUESTS.
  { weight: 1, arbitrary: fc.constantFrom("PATCH", "OPTIONS", "TRACE", "PROPFIND", "MKCOL", "LOCK", "PURGE", "SEARCH", "QUERY") },
);
const contentType = fc.oneof(
  { weight: 6, arbitrary: fc.constantFrom(JSON_TYPE, YAML, "text/yaml", "text/x-yaml", "text/vnd.yaml", "application/x-yaml", "application/vnd.yaml", FORM) },
  {
    weight: 3,
    arbitrary: fc.constantFrom(
      `${JSON_TYPE}; charset=utf-8`, `${JSON_TYPE};charset=UTF-8`, `${JSON_TYPE}; charset="utf-8"`, `${JSON_TYPE}; charset=latin1`,
      `${JSON_TYPE}; charset=x-bogus`, `${JSON_TYPE}; charset=utf-16`, `${JSON_TYPE};;;`, `${JSON_TYPE}; boundary=x; q=0.1`,
      "APPLICATION/JSON", " application/json ", `${YAML}; version=1.1`, `${FORM}; charset=iso-8859-1`, "text/plain",
      "multipart/form-data; boundary=x", "application/octet-stream", "application/json-patch+json", "text/html", "*/*",
      "application", "/", ";", "",
    ),
  },
  { weight: 1, arbitrary: fc.stringMatching(/^[\x20-\x7e]{0,40}$/) },
);

const target = fc.oneof(
  fc.constantFrom("a.example:9100", "b.example:9100", "10.0.0.1:80", "[::1]:9100", "host", "host:65535", "constructor", "__proto__:9100", "toString", "valueOf:1"),
  fc.stringMatching(/^[a-z0-9-]{1,12}(\.[a-z]{1,5})?:[0-9]{1,5}$/),
  fc.string({ maxLength: 20 }),
);
const labelName = fc.oneof(fc.constantFrom("team", "job", "env", "__scheme__", "__address__", "__proto__", "constructor", ""), fc.string({ maxLength: 10 }));
const labelValue = fc.oneof(fc.string({ maxLength: 20 }), fc.integer(), fc.boolean(), fc.constant(null), fc.array(fc.string(), { maxLength: 2 }));
const change = fc.record(
  {
    targets: fc.oneof(fc.array(target, { maxLength: 6 }), fc.array(target, { minLength: 500, maxLength: 2000 }), fc.string(), fc.integer()),
    labels: fc.oneof(fc.dictionary(labelName, labelValue, { maxKeys: 4 }), fc.array(fc.string(), { maxLength: 2 })),
    extra: fc.anything({ maxDepth: 2 }),
  },
  { requiredKeys: [] },
);
const yamlOf = (value: unknown): string => `${JSON.stringify(value)}\n`; // JSON is a subset of YAML 1.2
const formOf = (value: { targets?: unknown; labels?: unknown }): string => {
  const params = new URLSearchParams();
  if (Array.isArray(value.targets)) params.append("targets", value.targets.map(String).join(","));
  if (typeof value.labels === "object" && value.labels !== null && !Array.isArray(value.labels)) {
    for (const [name, labelValueText] of Object.entries(value.labels)) params.append(name, String(labelValueText));
  }
  return params.toString();
};
const body = fc.oneof(
  { weight: 5, arbitrary: change.map((value) => JSON.stringify(value)) },
  { weight: 2, arbitrary: change.map(yamlOf) },
  { weight: 2, arbitrary: change.map(formOf) },
  { weight: 1, arbitrary: fc.json({ maxDepth: 4 }) },
  { weight: 1, arbitrary: fc.string({ unit: "binary", maxLength: 200 }) },
  { weight: 1, arbitrary: fc.uint8Array({ maxLength: 300 }).map((bytes) => Buffer.from(bytes)) },
  { weight: 2, arbitrary: fc.constantFrom(...NASTY.filter((nasty) => Buffer.byteLength(nasty.body) < 300_000).map((nasty) => nasty.body)) },
  { weight: 1, arbitrary: fc.constant("") },
);
const query = fc.constantFrom("", "", "", "?ttl=60s", "?ttl=2s", "?ttl=1h", "?tll=60s", "?ttl=constructor", "?ttl=", "?constructor=1", "?__proto__=x", "?ttl=1s&ttl=2s");
const hostileRequest: fc.Arbitrary<RawRequest> = fc
  .record({
    method,
    path: fc.tuple(hostilePath, query).map(([path, suffix]) => (path.includes("?") ? path : path + suffix)),
    contentType: fc.option(contentType, { nil: undefined, freq: 8 }),
    body: fc.option(body, { nil: undefined, freq: 8 }),
    chunked: fc.boolean(),
    gzip: fc.constantFrom(false, false, false, false, false, false, true),
    requestId: fc.option(fc.stringMatching(/^[\x21-\x7e]{0,150}$/), { nil: undefined, freq: 2 }),
  })
  .map(({ method: verb, path, contentType: type, body: payload, chunked, gzip, requestId }) => {
    const headers: OutgoingHttpHeaders = {};
    if (type !== undefined) headers["content-type"] = type;
    if (requestId !== undefined) headers["x-request-id"] = requestId;
    let sent = payload;
    if (gzip && payload !== undefined) {
      headers["content-encoding"] = "gzip";
      sent = gzipSync(Buffer.from(payload));
    }
    return { method: verb, path, headers, body: sent, chunked: chunked && sent !== undefined };
  });

// ---- the directory afterwards ----

async function directoryProblems(parent: string, directory: string, url: string): Promise<string[]> {
  const problems: string[] = [];
  const beside = (await readdir(parent)).filter((name) => join(parent, name) !== directory);
  if (beside.length > 0) problems.push(`written outside the directory: ${beside.join(", ")}`);
  for (const name of await filesIn(directory)) {
    if (name === JOURNAL_FILE || name === OLD_JOURNAL_FILE) {
      // The renewals journal: every line a group's key and its records (target, from, to).
      const text = await readFile(join(directory, name), "utf8").catch((error: NodeJS.ErrnoException) => (error.code === "ENOENT" ? "" : Promise.reject(error)));
      for (const line of text.split("\n").filter((part) => part !== "")) {
        const parsed = JSON.parse(line) as unknown;
        const valid = Array.isArray(parsed) && parsed.length === 2 && typeof parsed[0] === "string" && Array.isArray(parsed[1]) && (parsed[1] as unknown[]).length % 3 === 0;
        if (!valid) problems.push(`${name} holds a line that is not a journal record: ${line.slice(0, 100)}`);
      }
      continue;
    }
    if (DEADLINES_FILE.test(name)) {
      // Gone since the listing, as the group file may be: its group expired, or its targets became permanent.
      const text = await readFile(join(directory, name), "utf8").catch((error: NodeJS.ErrnoException) => (error.code === "ENOENT" ? undefined : Promise.reject(error)));
      if (text === undefined) continue;
      try {
        parseDeadlines(text);
      } catch (error) {
        problems.push(`${name} is not a valid deadlines file: ${(error as Error).message}`);
      }
      continue;
    }
    if (!MANAGED_FILE.test(name)) {
      problems.push(`unexpected file name ${JSON.stringify(name)}`);
      continue;
    }
    const path = join(directory, name);
    // Gone since the listing: a group registered with ?ttl=2s expired meanwhile, as it should.
    const found = await stat(path).catch((error: NodeJS.ErrnoException) => (error.code === "ENOENT" ? undefined : Promise.reject(error)));
    if (found === undefined) continue;
    if (!found.isFile()) {
      problems.push(`${name} is not a regular file`);
      continue;
    }
    const text = await readFile(path, "utf8").catch((error: NodeJS.ErrnoException) => (error.code === "ENOENT" ? undefined : Promise.reject(error)));
    if (text === undefined) continue;
    try {
      const list: unknown = JSON.parse(text);
      if (!Array.isArray(list) || list.length !== 1 || parseGroupFile(text, "targets") === undefined) {
        problems.push(`${name} does not hold exactly one group`);
      }
      const [application, environment] = name.slice(0, -".json".length).split("@") as [string, string];
      const served = await fetch(`${url}/${application}/${environment}`).then((response) => response.json());
      if (JSON.stringify(served) !== JSON.stringify(list)) problems.push(`${name} differs from what GET serves`);
    } catch (error) {
      problems.push(`${name} is not a valid group list: ${(error as Error).message}`);
    }
  }
  return problems;
}

describe("hostile input against the built server", () => {
  let parent: string;
  let directory: string;
  let child: ChildService | undefined;
  let requests = 0;

  const running = (): ChildService => {
    if (child === undefined) throw new Error("the server did not start");
    return child;
  };
  const sendChecked = async (raw: RawRequest): Promise<Answered> => {
    requests++;
    const service = running();
    const answer = await send(service.url, raw);
    const problem = problemWith(raw, answer);
    if (problem !== undefined || "error" in answer) throw new Error(problem);
    if (!service.isRunning()) throw new Error(`the server exited after ${describeRequest(raw)}`);
    return answer;
  };

  beforeAll(async () => {
    parent = await makeTempDir("file-sd-hostile-");
    directory = join(parent, "sd");
    child = await startChildService({ directory, cwd: parent, env: { MAX_BODY_BYTES: String(MAX_BODY_BYTES) } });
  });
  afterAll(async () => {
    agent.destroy();
    const exit = await child?.stop();
    console.log(`hostile input: ${requests} requests in all (${FUZZ_RUNS} random cases), server exit code ${exit?.code}`);
    await removeDir(parent);
  });

  const nastyCases = NASTY.map((nasty) => ({ ...nasty, answer: nasty.status === undefined ? "below 500" : String(nasty.status) }));
  it.each(nastyCases)("$name: answered $answer", async ({ name, contentType: type, body: payload, status }) => {
    const headers: OutgoingHttpHeaders = { "content-type": type };
    if (name === "gzip body that is not gzip") headers["content-encoding"] = "gzip";
    const path = `/nasty/${NASTY.findIndex((nasty) => nasty.name === name)}`;
    for (const verb of ["POST", "PUT", "DELETE"]) {
      const answer = await sendChecked({ method: verb, path, headers, body: payload });
      if (status !== undefined && verb !== "DELETE") {
        expect(answer.status, `${verb}: ${answer.body.slice(0, 300)}`).toBe(status);
      }
    }
  }, 60_000);

  const requestCases = NASTY_REQUESTS.map((nasty) => ({ ...nasty, answer: nasty.status === undefined ? "below 500" : String(nasty.status) }));
  it.each(requestCases)("$name: answered $answer", async ({ request: raw, status }) => {
    const answer = await sendChecked(raw);
    if (status !== undefined) expect(answer.status, answer.body.slice(0, 300)).toBe(status);
  });

  it("CONNECT gets no answer but does not stop the server", async () => {
    requests++;
    await send(running().url, { method: "CONNECT", path: "evil.example:443" });
    expect(running().isRunning()).toBe(true);
    expect((await sendChecked({ method: "GET", path: "/app/x" })).status).toBeLessThan(500);
  });

  it(`${FUZZ_RUNS} random requests: never 5xx, never a crash, only valid files inside the directory`, async () => {
    let cases = 0;
    const statuses = new Map<number, number>();
    await fc.assert(
      fc.asyncProperty(hostileRequest, async (raw) => {
        cases++;
        const { status } = await sendChecked(raw);
        statuses.set(status, (statuses.get(status) ?? 0) + 1);
        if (cases % 50 === 0) expect(await directoryProblems(parent, directory, running().url)).toEqual([]);
      }),
      { numRuns: FUZZ_RUNS },
    );
    expect(cases).toBeGreaterThanOrEqual(FUZZ_RUNS);
    const tally = [...statuses].sort(([a], [b]) => a - b).map(([status, count]) => `${status}×${count}`);
    console.log(`hostile input: ${cases} random cases passed; answers ${tally.join(" ")}`);
  }, 180_000);

  it("afterwards every file is a valid group list named <application>@<environment>.json, and nothing is outside", async () => {
    expect(running().isRunning()).toBe(true);
    expect(await directoryProblems(parent, directory, running().url)).toEqual([]);
    const files = await filesIn(directory);
    expect(files.length).toBeGreaterThan(0);
  });
});
