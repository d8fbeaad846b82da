import fc from "fast-check";
import { describe, expect, it } from "vitest";

/**
 * ui/view.js, the one description of the page that the service's first HTML and the
 * browser's refreshes both render: the filter's syntax, what a problem is, the links,
 * and that every value stays text. In Node: the module has no DOM.
 */

interface Server {
  health: string;
  error?: string;
  scrapeUrl?: string;
  probe?: { success?: boolean; httpStatusCode?: number; durationSeconds?: number };
  debugUrl?: string;
}
interface Target {
  target: string;
  deadline: string | undefined;
  servers: Map<string, Server>;
}
interface Group {
  application: string;
  environment: string;
  labels: Map<string, string>;
  changedAt: string;
  targets: Target[];
}
interface Element {
  tag: string;
  attrs: [string, string][];
  children: (Element | string)[];
}
interface View {
  parseFilter(text: string): { terms: unknown[]; notes: string[] };
  pageParts(page: unknown, filter: string): Record<"refreshed" | "problems" | "summary" | "sources" | "rows" | "empty" | "probes", Element>;
  toHtml(node: Element | string): string;
  h(tag: string, attrs: Record<string, unknown>, ...children: unknown[]): Element;
  scrapeUrlOf(group: Group, target: Target): URL | undefined;
  toggledProblems(text: string): string;
  isProblem(target: Target): boolean;
  untilText(iso: string, now: number): string;
  PROBLEM_HEALTHS: Set<string>;
  PAGE_TARGETS: number;
}

const view = (await import(new URL("../../ui/view.js", import.meta.url).href)) as View;

const PROMETHEUS = "http://prometheus:9090";
const NOW = Date.parse("2026-11-21T14:00:00Z");

function group(application: string, environment: string, labels: Record<string, string>, targets: [string, string?, string?, string?][]): Group {
  return {
    application,
    environment,
    labels: new Map(Object.entries({ job: application, env: environment, ...labels })),
    changedAt: "2026-11-21T13:00:00.000Z",
    targets: targets.map(([target, health, error, deadline]) => ({
      target,
      deadline,
      servers: health === undefined ? new Map() : new Map([[PROMETHEUS, { health, ...(error === undefined ? {} : { error }) }]]),
    })),
  };
}

const GROUPS = [
  group("web", "prod", { team: "core" }, [["web1:9100", "up"], ["web2:9100", "up"]]),
  group("backup", "prod", { team: "ops" }, [["bk1:9100", "up"]]),
  group("dns", "prod", { team: "edge" }, [["nowhere.invalid:9100", "down", 'Get "http://nowhere.invalid:9100/metrics": dial tcp: lookup nowhere.invalid: no such host']]),
  group("billing", "prod-hou", { team: "payments", tier: "api" }, [
    ["127.0.0.2:9", "down", "connection refused", "2026-11-21T14:00:45.000Z"],
    ["127.0.0.3:9", "up", undefined, "2026-11-21T15:00:00.000Z"],
  ]),
  group("new", "dev", {}, [["fresh:1", "unknown"], ["gone:1", "missing"]]),
];

function page(groups: Group[] = GROUPS, health = true) {
  return {
    groups,
    prometheus: health ? [{ url: PROMETHEUS, publicUrl: "https://prometheus.example.com", answer: { kind: "live", at: NOW } }] : [],
    health,
    refreshed: { at: NOW },
    params: [],
    now: NOW,
  };
}

function text(node: Element | string): string {
  return typeof node === "string" ? node : node.children.map(text).join("");
}

function attr(node: Element, name: string): string | undefined {
  return node.attrs.find(([attribute]) => attribute === name)?.[1];
}

function elements(node: Element | string, where: (element: Element) => boolean): Element[] {
  if (typeof node === "string") return [];
  return [...(where(node) ? [node] : []), ...node.children.flatMap((child) => elements(child, where))];
}

/** "app@env" of each row shown, in order, and the targets shown in it. */
function shown(filter: string, groups: Group[] = GROUPS): string[] {
  const rows = view.pageParts(page(groups), filter).rows.children as Element[];
  return rows
    .filter((row) => attr(row, "hidden") === undefined)
    .map((row) => {
      const targets = elements(row, (element) => element.tag === "li" && attr(element, "data-key") !== undefined && attr(element, "hidden") === undefined);
      return `${attr(row, "data-key")} ${targets.map((li) => attr(li, "data-key")).join(",")}`;
    });
}

describe("the filter", () => {
  it("plain words match application, environment, targets and label values, never error text or health words", () => {
    // "up" is in the dns group's error ("lookup") and is the web targets' health: neither counts.
    expect(shown("up")).toEqual(["backup@prod bk1:9100"]);
    expect(shown("lookup")).toEqual([]);
    expect(shown("refused")).toEqual([]);
    expect(shown("down")).toEqual([]);
    expect(shown("PAYMENTS")).toEqual(["billing@prod-hou 127.0.0.2:9,127.0.0.3:9"]);
    expect(shown("web2")).toEqual(["web@prod web2:9100"]);
    expect(shown("prod core")).toEqual(["web@prod web1:9100,web2:9100"]);
    expect(shown("hou")).toEqual(["billing@prod-hou 127.0.0.2:9,127.0.0.3:9"]);
  });

  it("name=value matches a label's whole value; name= a label that is there", () => {
    expect(shown("team=core")).toEqual(["web@prod web1:9100,web2:9100"]);
    expect(shown("team=cor")).toEqual([]);
    expect(shown("Tier=API")).toEqual(["billing@prod-hou 127.0.0.2:9,127.0.0.3:9"]);
    expect(shown("tier=")).toEqual(["billing@prod-hou 127.0.0.2:9,127.0.0.3:9"]);
    expect(shown("job=web")).toEqual(["web@prod web1:9100,web2:9100"]);
  });

  it("health:<state>, expiring and problems select targets; the rows keep only those", () => {
    expect(shown("health:down")).toEqual(["billing@prod-hou 127.0.0.2:9", "dns@prod nowhere.invalid:9100"]);
    expect(shown("health:up billing")).toEqual(["billing@prod-hou 127.0.0.3:9"]);
    expect(shown("health:missing")).toEqual(["new@dev gone:1"]);
    expect(shown("health:unknown")).toEqual(["new@dev fresh:1"]);
    expect(shown("expiring")).toEqual(["billing@prod-hou 127.0.0.2:9,127.0.0.3:9"]);
    expect(shown("problems")).toEqual(["billing@prod-hou 127.0.0.2:9", "dns@prod nowhere.invalid:9100", "new@dev gone:1"]);
    expect(shown("problem expiring")).toEqual(["billing@prod-hou 127.0.0.2:9"]);
  });

  it("a state that is not one says so, and shows nothing", () => {
    expect(shown("health:sad")).toEqual([]);
    const summary = text(view.pageParts(page(), "health:sad").summary);
    expect(summary).toContain("health:sad is not a health; use one of health:up, health:down, health:unknown, health:missing, health:dropped, health:unreachable");
    expect(attr(view.pageParts(page(), "health:sad").empty, "hidden")).toBeUndefined();
  });

  it("the problems toggle adds or removes the one word, keeping the rest", () => {
    expect(view.toggledProblems("")).toBe("problems");
    expect(view.toggledProblems(" team=core ")).toBe("team=core problems");
    expect(view.toggledProblems("team=core Problems web")).toBe("team=core web");
    expect(view.toggledProblems("problem")).toBe("");
  });
});

describe("problems, counts and order", () => {
  it("a problem is down, missing, dropped or unreachable on some Prometheus; not unknown, not up, not expiring", () => {
    expect([...view.PROBLEM_HEALTHS].sort()).toEqual(["down", "dropped", "missing", "unreachable"]);
    const one = (health: string) => ({ target: "t:1", deadline: "2026-11-21T14:00:45.000Z", servers: new Map([[PROMETHEUS, { health }], ["http://other:9090", { health: "up" }]]) });
    expect(["up", "unknown", "down", "missing", "dropped", "unreachable"].map((health) => view.isProblem(one(health)))).toEqual([false, false, true, true, true, true]);
  });

  it("problem groups come first, then by application and environment", () => {
    expect(shown("")).toEqual([
      "billing@prod-hou 127.0.0.2:9,127.0.0.3:9",
      "dns@prod nowhere.invalid:9100",
      "new@dev fresh:1,gone:1",
      "backup@prod bk1:9100",
      "web@prod web1:9100,web2:9100",
    ]);
  });

  it("the summary counts targets by their worst health, the expiring ones and the problems", () => {
    const parts = view.pageParts(page(), "");
    expect(text(parts.summary)).toBe("5 groups, 8 targets · 4 up · 2 down · 1 unknown · 1 missing · 2 expiring");
    expect(text(parts.problems)).toBe("Only problems (3)");
    expect(attr(parts.problems, "href")).toBe("/?q=problems");
    const counts = elements(parts.summary, (element) => element.tag === "a").map((link) => attr(link, "href"));
    expect(counts).toEqual(["/?q=health%3Aup", "/?q=health%3Adown", "/?q=health%3Aunknown", "/?q=health%3Amissing", "/?q=expiring"]);
    expect(text(view.pageParts(page(GROUPS, false), "").summary)).toBe("5 groups, 8 targets · health needs PROMETHEUS_URL · 2 expiring");
    const filtered = view.pageParts(page(), "problems");
    expect(text(filtered.summary)).toMatch(/ · showing 3 of 8$/);
    expect(text(filtered.problems)).toBe("Show everything");
    expect(attr(filtered.problems, "href")).toBe("/");
  });

  it("links that change the filter keep the page's ?application= and ?environment=", () => {
    const parts = view.pageParts({ ...page(), params: [["application", "web"], ["environment", "prod"]] }, "");
    expect(attr(parts.problems, "href")).toBe("/?application=web&environment=prod&q=problems");
  });

  it("countdowns: seconds under two minutes, then minutes, hours, days", () => {
    expect(view.untilText("2026-11-21T14:00:45.000Z", NOW)).toBe("expires in 45 s");
    expect(view.untilText("2026-11-21T14:30:00.000Z", NOW)).toBe("expires in 30 min");
    expect(view.untilText("2026-11-21T20:00:00.000Z", NOW)).toBe("expires in 6 h");
    expect(view.untilText("2026-11-30T14:00:00.000Z", NOW)).toBe("expires in 9 d");
    expect(view.untilText("2026-11-21T13:59:59.000Z", NOW)).toBe("expiring now");
  });
});

describe("links", () => {
  it("a target's scrape URL is Prometheus' own when it has one, else built from __scheme__, __metrics_path__ and __param_*", () => {
    const known = group("a", "b", { __scheme__: "https" }, [["h:1", "up"]]);
    known.targets[0]!.servers.set(PROMETHEUS, { health: "up", scrapeUrl: "https://h:1/custom?x=1" });
    expect(view.scrapeUrlOf(known, known.targets[0]!)?.href).toBe("https://h:1/custom?x=1");
    const built = group("a", "b", { __scheme__: "https", __metrics_path__: "/probe", __param_module: "http 2xx", __param_target: "a&b" }, [["h:1"]]);
    expect(view.scrapeUrlOf(built, built.targets[0]!)?.href).toBe("https://h:1/probe?module=http%202xx&target=a%26b");
    const plain = group("a", "b", {}, [["[2001:db8::1]:9100"]]);
    expect(view.scrapeUrlOf(plain, plain.targets[0]!)?.href).toBe("http://[2001:db8::1]:9100/metrics");
  });

  it("never a link that is not http or https, whatever the labels say", () => {
    for (const scheme of ["javascript", "data", "file", "vbscript"]) {
      const odd = group("a", "b", { __scheme__: scheme }, [["alert(1):1"]]);
      expect(view.scrapeUrlOf(odd, odd.targets[0]!), scheme).toBeUndefined();
      expect(view.toHtml(view.pageParts(page([odd]), "").rows)).not.toContain('class="scrape"');
    }
  });

  it("each group links to its JSON and status, each health dot to the public /targets of the Prometheus that answered", () => {
    const rows = view.pageParts(page(), "").rows;
    const web = (rows.children as Element[]).find((row) => attr(row, "data-key") === "web@prod")!;
    expect(elements(web, (element) => element.tag === "a").map((link) => `${attr(link, "class") ?? ""} ${attr(link, "href")}`)).toEqual([
      " /web/prod",
      " /web/prod/status",
      "scrape http://web1:9100/metrics",
      "health https://prometheus.example.com/targets",
      "scrape http://web2:9100/metrics",
      "health https://prometheus.example.com/targets",
    ]);
    const sources = view.pageParts(page(), "").sources;
    expect(text(sources)).toBe("Health from prometheus.example.com (answered 14:00:00 UTC)");
  });

  it("the sources line says when the health is a last known answer, or none yet", () => {
    const stale = { ...page(), prometheus: [{ url: PROMETHEUS, publicUrl: PROMETHEUS, answer: { kind: "stale", at: NOW - 12_000, waitedMs: 300 } }] };
    expect(text(view.pageParts(stale, "").sources)).toBe("Health from prometheus:9090 (no answer within 300 ms: last known answer, from 13:59:48 UTC)");
    const none = { ...page(), prometheus: [{ url: PROMETHEUS, publicUrl: PROMETHEUS, answer: { kind: "none", waitedMs: 300 } }] };
    expect(text(view.pageParts(none, "").sources)).toBe("Health from prometheus:9090 (no answer yet)");
  });
});

describe("every value is text", () => {
  it("toHtml escapes text and attribute values, and h joins adjacent strings as the HTML parser would", () => {
    const node = view.h("p", { title: `"><script>`, hidden: true, class: undefined }, "<img src=x onerror=alert(1)>", "", " & more", view.h("b", {}, "'"));
    expect(node.children).toHaveLength(2);
    expect(view.toHtml(node)).toBe('<p title="&quot;&gt;&lt;script&gt;" hidden>&lt;img src=x onerror=alert(1)&gt; &amp; more<b>&#39;</b></p>');
  });

  it("whatever the names and values, the HTML holds no markup of theirs", () => {
    const name = fc.oneof(fc.constantFrom("__proto__", "constructor", "toString", "hasOwnProperty", "valueOf", "<b>", '"'), fc.string());
    fc.assert(
      fc.property(name, name, name, name, (application, environment, target, value) => {
        const html = view.toHtml(view.pageParts(page([group(application, environment, { [`l_${value.length}`]: value, note: value }, [[target, "down", value]])]), value).rows);
        const stripped = html.replace(/<\/?(tbody|tr|th|td|ul|li|span|a|time|p)( [a-z-]+(="[^"<>]*")?)*>/g, "");
        expect(stripped).not.toMatch(/[<>]/);
      }),
      { numRuns: 300 },
    );
  });

  it("JavaScript-special names are ordinary names: as labels, targets, applications and in the filter", () => {
    const names = ["__proto__", "constructor", "toString", "hasOwnProperty", "valueOf"];
    const groups = names.map((name) => {
      const special = group(name, name, {}, [[name, "up", undefined, "2026-11-21T14:01:00.000Z"]]);
      special.labels = new Map([[name, name], ["job", name]]);
      return special;
    });
    for (const name of names) {
      expect(shown(name, groups)).toEqual([`${name}@${name} ${name}`]);
      expect(shown(`${name}=${name}`, groups)).toEqual([`${name}@${name} ${name}`]);
    }
    expect(text(view.pageParts(page(groups), "").summary)).toBe("5 groups, 5 targets · 5 up · 5 expiring");
  });

  it("probe groups: their own section, problems counted with the targets', each result as text, a debug link only to http(s)", () => {
    const probes = [
      group("shop", "prod", {}, [["https://shop.example.com/<b>", "down", "the probe failed: HTTP status 500"]]),
      group("web", "prod", {}, [["https://web.example.com/", "up"]]),
    ];
    const [down] = probes[0]!.targets;
    down!.servers.set(PROMETHEUS, { health: "down", error: "the probe failed: HTTP status 500", probe: { success: false, httpStatusCode: 500, durationSeconds: 0.0123 }, debugUrl: "javascript:alert(1)" });
    probes[1]!.targets[0]!.servers.set(PROMETHEUS, { health: "up", probe: { success: true, httpStatusCode: 200, durationSeconds: 0.0002 } });
    const parts = view.pageParts({ ...page(GROUPS), probes }, "");
    const html = view.toHtml(parts.probes);
    expect(html).toContain('<tr data-key="probes/shop@prod" class="problem">');
    expect(html).toContain("https://shop.example.com/&lt;b&gt;");
    expect(html).toContain('<span class="probe-result">HTTP 500 · 12 ms</span>');
    expect(html).toContain('<span class="probe-result">HTTP 200 · &lt;1 ms</span>');
    expect(html).toContain('href="/shop/prod/probes/status"');
    // A debug URL that is not http(s) is no link.
    expect(html).not.toContain("javascript:");
    expect(text(parts.problems)).toBe(`Only problems (${GROUPS.flatMap((each) => each.targets).filter((target) => view.isProblem(target)).length + 1})`);
    expect(text(view.pageParts({ ...page(GROUPS), probes: [] }, "").probes)).toMatch(/No probes registered: curl -X PUT/);
  });
});

describe("a registry larger than a page", () => {
  // 30 groups of 10 targets, the last group down: with a budget of 25 targets the page renders 25.
  const many = Array.from({ length: 30 }, (_, g) =>
    group(`app${String(g).padStart(2, "0")}`, "prod", {}, Array.from({ length: 10 }, (_, i): [string, string] => [`h${g}-${i}:9100`, g === 29 ? "down" : "up"])),
  );
  const rendered = (parts: ReturnType<View["pageParts"]>) =>
    elements(parts.rows, (element) => element.tag === "li" && attr(element, "class") !== "more" && attr(element, "data-key") !== undefined).length;

  it("renders at most the budget of targets, problems first, and says what it left out and where it is", () => {
    const parts = view.pageParts({ ...page(many), budget: 25 }, "");
    expect(rendered(parts)).toBe(25);
    const rows = parts.rows.children as Element[];
    expect(rows.map((row) => attr(row, "data-key"))).toEqual(["app29@prod", "app00@prod", "app01@prod"]);
    // The third row is cut after 5 targets, with a line that says so and links the group's JSON.
    const more = elements(rows[2]!, (element) => attr(element, "class") === "more");
    expect(more.map(text)).toEqual(["5 more not shown: the group's JSON"]);
    expect(elements(more[0]!, (element) => element.tag === "a").map((link) => attr(link, "href"))).toEqual(["/app01/prod"]);
    // The counts still cover every target.
    expect(text(parts.summary)).toBe("30 groups, 300 targets · 290 up · 10 down · 275 more not shown (27 more groups): the page shows 25 targets a table, problems first; narrow the filter, or see the JSON");
    // A filter reaches past the budget.
    const filtered = view.pageParts({ ...page(many), budget: 25 }, "app17");
    expect((filtered.rows.children as Element[]).map((row) => attr(row, "data-key"))).toEqual(["app17@prod"]);
    expect(text(filtered.summary)).not.toMatch(/not shown/);
  });

  it("is 5,000 targets a table by default", () => {
    expect(view.PAGE_TARGETS).toBe(5000);
    const huge = Array.from({ length: 60 }, (_, g) => group(`a${g}`, "e", {}, Array.from({ length: 100 }, (_, i): [string, string] => [`h${g}-${i}:1`, "up"])));
    expect(rendered(view.pageParts(page(huge), ""))).toBe(5000);
  });

  it("links a group's status only when there is a Prometheus to ask", () => {
    const links = (health: boolean) =>
      elements(view.pageParts(page(GROUPS, health), "").rows, (element) => element.tag === "a" && attr(element, "href") === "/web/prod/status").length;
    expect(links(true)).toBe(1);
    expect(links(false)).toBe(0);
  });
});
