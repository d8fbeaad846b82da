import fc from "fast-check";
import yaml from "js-yaml";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { EXPIRY_GRACE_MS } from "../../src/rules/registration.js";
import { backendEnv, eventually, startTestService, type TestService } from "../helpers.js";

/** etcd mode keeps a target EXPIRY_GRACE_MS past its deadline (docs/heartbeats.md). */
const graceMs = backendEnv().ETCD_ENDPOINTS === undefined ? 0 : EXPIRY_GRACE_MS;

/**
 * Names that mean something to JavaScript: every property of Object.prototype,
 * `__proto__` and `prototype`. Each is a valid host name, label name,
 * application and environment, so each must be nothing but a string to the
 * service (src/model.ts, keys from clients). This file runs on both backends
 * (vitest.config.ts).
 */
const SPECIAL = [...new Set([...Object.getOwnPropertyNames(Object.prototype), "__proto__", "prototype", "constructor"])];
const RANDOM = /^[a-z][a-z0-9_]{0,7}$/;

const special = fc.constantFrom(...SPECIAL);
const name = fc.oneof({ weight: 3, arbitrary: special }, { weight: 1, arbitrary: fc.stringMatching(RANDOM) });
const target = fc.tuple(name, fc.option(fc.integer({ min: 1, max: 65535 }), { nil: undefined })).map(([host, port]) => (port === undefined ? host : `${host}:${port}`));
/** A probe's: a URL whose host, path, query name and value are special names, or a host[:port]. */
const probeTarget = fc.oneof(
  fc.tuple(fc.constantFrom("http", "https"), target, name, name, name).map(([scheme, host, segment, key, value]) => `${scheme}://${host}/${segment}?${key}=${value}`),
  target,
);
const labelValue = fc.oneof(special, fc.stringMatching(/^[a-z0-9/_.-]{1,8}$/));
const groupName = fc.constantFrom("__proto__", "constructor", "toString", "valueOf", "hasOwnProperty", "plain");

interface Step {
  readonly method: "GET" | "PUT" | "POST" | "DELETE";
  /** A scrape group (`/<application>/<environment>`) or a probe group (`…/probes`). */
  readonly kind: "targets" | "probes";
  readonly application: string;
  readonly environment: string;
  readonly targets: readonly string[] | undefined;
  readonly labels: readonly (readonly [string, string])[] | undefined;
  readonly format: "form" | "json" | "yaml";
  readonly ttl: string | undefined;
}

const step: fc.Arbitrary<Step> = fc.constantFrom("targets" as const, "targets" as const, "probes" as const).chain((kind) => fc.record({
  method: fc.constantFrom("GET", "PUT", "POST", "POST", "DELETE"),
  kind: fc.constant(kind),
  application: groupName,
  environment: groupName,
  targets: fc.option(fc.uniqueArray(kind === "probes" ? probeTarget : target, { minLength: 1, maxLength: 3 }), { nil: undefined }),
  labels: fc.option(fc.uniqueArray(fc.tuple(name, labelValue), { minLength: 1, maxLength: 2, selector: ([labelName]) => labelName }), { nil: undefined }),
  format: fc.constantFrom("form", "json", "yaml"),
  ttl: fc.option(fc.constantFrom("1s", "2s", "3s"), { nil: undefined, freq: 2 }),
}));

/** The request a step sends: the same change in any of the three body formats. */
function bodyOf({ targets, labels, format }: Step): { body?: string; contentType?: string } {
  if (targets === undefined && labels === undefined) return {};
  if (format === "form") {
    const form = new URLSearchParams();
    // A URL is a field of its own (a field that starts with one is one URL).
    if (targets !== undefined) for (const one of targets.some((item) => item.includes("://")) ? targets : [targets.join(",")]) form.append("targets", one);
    for (const [labelName, value] of labels ?? []) form.append(labelName, value);
    return { body: form.toString(), contentType: "application/x-www-form-urlencoded" };
  }
  // fromEntries defines each key, so a label named __proto__ is a key of the document.
  const document = Object.fromEntries([
    ...(targets === undefined ? [] : [["targets", targets] as const]),
    ...(labels === undefined ? [] : [["labels", Object.fromEntries(labels)] as const]),
  ]);
  return format === "json"
    ? { body: JSON.stringify(document), contentType: "application/json" }
    : { body: yaml.dump(document), contentType: "application/yaml" };
}

interface IndexLine {
  readonly application: string;
  readonly environment: string;
  readonly probes?: boolean;
  readonly expires?: Readonly<Record<string, string>>;
}

describe("names that mean something to JavaScript (Object.prototype, __proto__)", () => {
  let sd: TestService;
  beforeAll(async () => {
    sd = await startTestService();
  });
  afterAll(() => sd.close());

  const path = (application: string, environment: string, kind: "targets" | "probes" = "targets"): string =>
    `/${application}/${environment}${kind === "probes" ? "/probes" : ""}`;

  /** Both lists of the index, scrape groups and probe groups. */
  async function index(): Promise<IndexLine[]> {
    const answer = await sd.request("GET", "/");
    expect(answer.status).toBe(200);
    const { groups, probes } = answer.body as { groups: IndexLine[]; probes: IndexLine[] };
    return [...groups, ...probes.map((line) => ({ ...line, probes: true }))];
  }

  /**
   * The file equals what GET answers. A target registered with a 1 s ttl can
   * expire between the GET and the read of the file, so the file is compared
   * with an answer only when a second GET after the read answers the same
   * (same ETag): the group did not change meanwhile. Bounded: a group that
   * changes under every try fails the test.
   */
  async function expectFileEqualsGet(application: string, environment: string, kind: "targets" | "probes"): Promise<void> {
    for (let attempt = 1; ; attempt++) {
      const before = await sd.request("GET", path(application, environment, kind));
      const file = (await sd.fileOf(application, environment, kind)) ?? [];
      const after = await sd.request("GET", path(application, environment, kind));
      if (before.headers.get("etag") === after.headers.get("etag") || attempt === 5) {
        expect(before.body).toEqual(file);
        return;
      }
    }
  }

  it("as targets, probe URLs (host, path, query), labels, applications and environments, with and without ?ttl=, in every format: never a 5xx, the file equals GET, / stays JSON", async () => {
    let requests = 0;
    let accepted = 0;
    await fc.assert(
      fc.asyncProperty(fc.array(step, { minLength: 1, maxLength: 8 }), async (steps) => {
        for (const one of steps) {
          const { body, contentType } = one.method === "GET" ? {} : bodyOf(one);
          const query = one.ttl !== undefined && (one.method === "PUT" || one.method === "POST") ? `?ttl=${one.ttl}` : "";
          const answer = await sd.request(one.method, path(one.application, one.environment, one.kind) + query, body === undefined ? {} : { body, contentType });
          requests++;
          expect(answer.status, `${one.method} ${JSON.stringify(one)} → ${JSON.stringify(answer.body)}`).toBeLessThan(500);
          if (answer.status === 200) accepted++;
          else expect(answer.body).toEqual({ message: expect.any(String) });
          await expectFileEqualsGet(one.application, one.environment, one.kind);
        }
        // The index is JSON, and every deadline in it is a time.
        for (const line of await index()) {
          for (const [listed, deadline] of Object.entries(line.expires ?? {})) {
            expect(typeof deadline, listed).toBe("string");
            expect(Number.isNaN(Date.parse(deadline)), `${listed}: ${deadline}`).toBe(false);
          }
        }
      }),
      { numRuns: 100 },
    );
    console.log(`JavaScript-special names: ${requests} requests, ${accepted} accepted`);
    expect(accepted).toBeGreaterThan(requests / 10);
  }, 120_000);

  it("every target registered with ?ttl= goes within 2 s of its deadline, and not before it", async () => {
    // What the property left behind, plus one expiring target of each special name, in each format.
    for (const [i, special] of SPECIAL.entries()) {
      const format = (["form", "json", "yaml"] as const)[i % 3]!;
      const { body, contentType } = bodyOf({ method: "POST", kind: "targets", application: special, environment: "ttl", targets: [special, `${special}:9100`], labels: [[special, special]], format, ttl: "2s" });
      const answer = await sd.request("POST", `${path(special, "ttl")}?ttl=2s`, { body: body!, contentType: contentType! });
      expect(answer.status, JSON.stringify(answer.body)).toBe(200);
      const probes = bodyOf({ method: "POST", kind: "probes", application: special, environment: "ttl", targets: [`https://${special}/${special}?${special}=${special}`], labels: [[special, special]], format, ttl: "2s" });
      const probed = await sd.request("POST", `${path(special, "ttl", "probes")}?ttl=2s`, { body: probes.body!, contentType: probes.contentType! });
      expect(probed.status, JSON.stringify(probed.body)).toBe(200);
    }
    const due = new Map<string, { group: string; target: string; deadline: number }>();
    for (const line of await index()) {
      const kind = line.probes === true ? "probes" : "targets";
      for (const [listed, deadline] of Object.entries(line.expires ?? {})) {
        due.set(`${line.application}/${line.environment} ${kind} ${listed}`, { group: path(line.application, line.environment, kind), target: listed, deadline: Date.parse(deadline) });
      }
    }
    expect(due.size).toBeGreaterThanOrEqual(SPECIAL.length * 3);
    const groups = [...new Set([...due.values()].map(({ group }) => group))];
    const early: string[] = [];
    const late: string[] = [];
    await eventually(
      async () => {
        for (const group of groups) {
          // Absent in an answer that arrived before the deadline: early. Present in one asked for over 2 s after it: late.
          const asked = Date.now();
          const answer = await sd.request("GET", group);
          const arrived = Date.now();
          const [current] = answer.body as { targets: string[] }[];
          for (const [key, { group: of, target, deadline }] of due) {
            if (of !== group) continue;
            if (current?.targets.includes(target) === true) {
              if (asked > deadline + graceMs + 2000) late.push(`${key}: still there ${asked - deadline} ms after its deadline`);
              continue;
            }
            if (arrived < deadline) early.push(`${key}: gone ${deadline - arrived} ms before its deadline`);
            due.delete(key);
          }
        }
        return due.size === 0;
      },
      8000 + graceMs,
      "every expiring target to go",
    );
    expect(early).toEqual([]);
    expect(late).toEqual([]);
    expect(await index()).toEqual(expect.not.arrayContaining([expect.objectContaining({ environment: "ttl" })]));
  }, 30_000);
});
