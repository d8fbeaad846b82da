// What the page shows, as data: the one description of the page that both the service
// (src/handlers/page.ts, the first HTML) and the browser (ui/app.js, every refresh) render.
// One description, so the first paint and the script's rows are the same elements with the
// same classes and text, and the script changes nothing until the data does. No DOM here:
// this module runs in Node too.
//
// Keys from clients: applications, environments, targets, label names and values are strings a
// client chose, and `__proto__`, `constructor` or `toString` are valid ones. They are only ever
// keys of a Map (built from Object.entries of the JSON) and never `object[key]`.

/** Every health, worst first: a target's health on several Prometheus is the first of these it has. */
export const HEALTHS = ["down", "missing", "dropped", "unreachable", "unknown", "up"];

/**
 * A problem is a target that some Prometheus does not scrape successfully: `down`, `missing`,
 * `dropped` or `unreachable` on at least one of them. `unknown` is not one: it is Prometheus'
 * word for a target it found less than one scrape interval ago. Expiring is not one either:
 * heartbeats always are. A group is a problem when one of its targets is.
 */
export const PROBLEM_HEALTHS = new Set(["down", "missing", "dropped", "unreachable"]);

/** The order of the counts in the summary line. */
const COUNTED = ["up", "down", "unknown", "missing", "dropped", "unreachable"];

// ---------------------------------------------------------------------------------------------
// Elements as data: { tag, attrs, children, key, live }.

/**
 * An element. `attrs`: attribute name → string, `true` (present, empty) or false/undefined
 * (absent); the names are always literals of this file. Children: elements and strings;
 * adjacent strings are joined and empty ones dropped, as the HTML parser would, so that the
 * server's HTML and the script's elements have the same nodes.
 */
export function h(tag, attrs, ...children) {
  const kept = [];
  for (const child of children.flat(Infinity)) {
    if (child === undefined || child === null || child === false || child === "") continue;
    const last = kept.at(-1);
    if (typeof child === "string" && typeof last === "string") kept.splice(-1, 1, last + child);
    else kept.push(child);
  }
  const attributes = [];
  for (const [name, value] of Object.entries(attrs || {})) {
    if (value === undefined || value === false || value === null) continue;
    attributes.push([name, value === true ? "" : String(value)]);
  }
  return { tag, attrs: attributes, children: kept, key: attrs?.["data-key"], live: false };
}

/** An element whose text the script keeps current by itself (a countdown): refreshes leave its text alone. */
function live(node) {
  node.live = true;
  return node;
}

const ESCAPES = new Map([
  ["&", "&amp;"],
  ["<", "&lt;"],
  [">", "&gt;"],
  ['"', "&quot;"],
  ["'", "&#39;"],
]);

export function escapeHtml(text) {
  return String(text).replace(/[&<>"']/g, (character) => ESCAPES.get(character));
}

/** The HTML of an element (the service's side); every string escaped. */
export function toHtml(node) {
  if (typeof node === "string") return escapeHtml(node);
  const attributes = node.attrs.map(([name, value]) => (value === "" ? ` ${name}` : ` ${name}="${escapeHtml(value)}"`)).join("");
  return `<${node.tag}${attributes}>${node.children.map(toHtml).join("")}</${node.tag}>`;
}

// ---------------------------------------------------------------------------------------------
// Times.

/** `2026-11-21 14:20:01 UTC`. */
export function shownTime(iso) {
  return typeof iso === "string" && iso.length >= 19 ? `${iso.slice(0, 10)} ${iso.slice(11, 19)} UTC` : "";
}

/** `14:20:01 UTC`, for "updated at". */
export function shownClock(ms) {
  return `${new Date(ms).toISOString().slice(11, 19)} UTC`;
}

/** What a deadline's countdown says at `now`; the script updates the text once a second. */
export function untilText(iso, now) {
  const seconds = Math.round((Date.parse(iso) - now) / 1000);
  if (!Number.isFinite(seconds)) return "";
  if (seconds <= 0) return "expiring now";
  if (seconds < 120) return `expires in ${seconds} s`;
  if (seconds < 7200) return `expires in ${Math.round(seconds / 60)} min`;
  if (seconds < 172_800) return `expires in ${Math.round(seconds / 3600)} h`;
  return `expires in ${Math.round(seconds / 86_400)} d`;
}

// ---------------------------------------------------------------------------------------------
// The filter.

/**
 * The filter's words, each one a term that must hold:
 * - `health:<state>`: the target has that health on some Prometheus;
 * - `expiring`: the target was registered with ?ttl=;
 * - `problems` (or `problem`): the target is a problem (PROBLEM_HEALTHS);
 * - `name=value`: the group has the label `name` with exactly `value` (`name=`: has the label);
 * - any other word: found in the application, the environment, the target or a label value.
 * Case never matters. Error text and health words are never searched: `up` must not find
 * the down target whose error says "lookup".
 */
export function parseFilter(text) {
  const terms = [];
  const notes = [];
  for (const word of String(text).trim().split(/\s+/)) {
    if (word === "") continue;
    const lower = word.toLowerCase();
    if (lower === "expiring") terms.push({ kind: "expiring" });
    else if (lower === "problems" || lower === "problem") terms.push({ kind: "problem" });
    else if (lower.startsWith("health:")) {
      const state = lower.slice("health:".length);
      if (!HEALTHS.includes(state)) notes.push(`health:${state} is not a health; use one of ${COUNTED.map((name) => `health:${name}`).join(", ")}`);
      terms.push({ kind: "health", state });
    } else if (word.includes("=") && !word.startsWith("=")) {
      const at = word.indexOf("=");
      terms.push({ kind: "label", name: lower.slice(0, at), value: lower.slice(at + 1) });
    } else terms.push({ kind: "word", value: lower });
  }
  return { terms, notes };
}

/** True when `term` holds for `target` of `group`; `target` is undefined for a group without targets. */
function holds(term, group, target) {
  switch (term.kind) {
    case "expiring":
      return target !== undefined && target.deadline !== undefined;
    case "problem":
      return target !== undefined && isProblem(target);
    case "health":
      return target !== undefined && [...target.servers.values()].some((server) => server.health === term.state);
    case "label":
      for (const [name, value] of group.labels) {
        if (name.toLowerCase() === term.name && (term.value === "" || value.toLowerCase() === term.value)) return true;
      }
      return false;
    default: {
      const found = (text) => text.toLowerCase().includes(term.value);
      if (found(group.application) || found(group.environment)) return true;
      if (target !== undefined && found(target.target)) return true;
      for (const value of group.labels.values()) if (found(value)) return true;
      return false;
    }
  }
}

export function isProblem(target) {
  for (const server of target.servers.values()) if (PROBLEM_HEALTHS.has(server.health)) return true;
  return false;
}

/** The worst health a target has, or undefined when no Prometheus answered for it yet. */
export function worstHealth(target) {
  let worst;
  for (const server of target.servers.values()) {
    if (worst === undefined || HEALTHS.indexOf(server.health) < HEALTHS.indexOf(worst)) worst = server.health;
  }
  return worst;
}

/** The filter's text with `problems` added, or taken out when it is there. */
export function toggledProblems(text) {
  const words = String(text).trim().split(/\s+/).filter((word) => word !== "");
  const kept = words.filter((word) => !/^problems?$/i.test(word));
  return (kept.length === words.length ? [...kept, "problems"] : kept).join(" ");
}

export function showsProblemsOnly(text) {
  return parseFilter(text).terms.some((term) => term.kind === "problem");
}

// ---------------------------------------------------------------------------------------------
// Links.

/**
 * What Prometheus scrapes for a target: its own scrapeUrl when one answered with it, else
 * built the way Prometheus builds it from `__scheme__`, `__metrics_path__` and `__param_*`.
 * Only http and https: a label cannot turn the link into `javascript:`.
 */
export function scrapeUrlOf(group, target) {
  for (const server of target.servers.values()) {
    if (server.scrapeUrl) return webUrl(server.scrapeUrl);
  }
  const scheme = group.labels.get("__scheme__") ?? "http";
  const path = group.labels.get("__metrics_path__") ?? "/metrics";
  const parameters = [];
  for (const [name, value] of group.labels) {
    if (name.startsWith("__param_")) parameters.push(`${encodeURIComponent(name.slice("__param_".length))}=${encodeURIComponent(value)}`);
  }
  const query = parameters.length === 0 ? "" : `?${parameters.join("&")}`;
  return webUrl(`${scheme}://${target.target}${path.startsWith("/") ? path : `/${path}`}${query}`);
}

function webUrl(text) {
  try {
    const url = new URL(text);
    return url.protocol === "http:" || url.protocol === "https:" ? url : undefined;
  } catch {
    return undefined;
  }
}

/** `/?q=…` with the page's own ?application= and ?environment=, for links that change the filter. */
export function hrefFor(params, query) {
  const search = new URLSearchParams(params);
  search.delete("q");
  if (query !== "") search.set("q", query);
  const text = search.toString();
  return text === "" ? "/" : `/?${text}`;
}

/** `prometheus.example.com:9090`, `host/prometheus`: enough to tell two Prometheus apart. */
export function shortName(url) {
  try {
    const parsed = new URL(url);
    return `${parsed.host}${parsed.pathname === "/" ? "" : parsed.pathname}`;
  } catch {
    return url;
  }
}

// ---------------------------------------------------------------------------------------------
// The page.

/**
 * The parts of the page that change, each as the element with its id:
 * `refreshed`, `problems` (the toggle), `summary`, `sources`, `rows` (the tbody), `empty`,
 * and `probes` (the section of probe groups, its table, its counts and its empty line).
 *
 * `page`: {
 *   groups: [{ application, environment, labels: Map, changedAt: ISO,
 *              targets: [{ target, deadline: ISO | undefined, servers: Map<prometheus URL,
 *                          { health, error?, scrapeUrl?, probe?, debugUrl? }> }] }],
 *   probes: the probe groups, the same shape; a server's `probe` is blackbox_exporter's last
 *           result, { success?, durationSeconds?, httpStatusCode? },
 *   prometheus: [{ url, publicUrl, answer: { kind: "live" | "stale" | "none" | "failed", at?, error? } }],
 *   health: PROMETHEUS_URL is set,
 *   refreshed: { at: ms, error?: string },
 *   params: [[name, value]] of the page's URL (application, environment),
 *   now: ms, for the countdowns,
 * }
 */
export function pageParts(page, filterText) {
  const { terms, notes } = parseFilter(filterText);
  const context = {
    many: page.prometheus.length > 1,
    publicUrls: new Map(page.prometheus.map((server) => [server.url, server.publicUrl])),
    now: page.now,
    health: page.health,
    budget: page.budget ?? PAGE_TARGETS,
  };
  const scrape = section(page.groups, terms, { ...context, kind: "targets" });
  const probing = section(page.probes ?? [], terms, { ...context, kind: "probes" });
  const { shownTargets, counts, expiring, targets, visibleRows, rows } = scrape;
  const problems = scrape.problems + probing.problems;

  const problemsOnly = terms.some((term) => term.kind === "problem");
  const filtered = terms.length > 0;
  return {
    refreshed: h(
      "p",
      { id: "refreshed" },
      page.refreshed.error === undefined
        ? `Updated ${shownClock(page.refreshed.at)}`
        : `Could not refresh at ${shownClock(page.refreshed.at)} (${page.refreshed.error}); retrying`,
    ),
    problems: h(
      "a",
      { id: "problems", class: problemsOnly ? "toggle on" : "toggle", href: hrefFor(page.params, toggledProblems(filterText)) },
      problemsOnly ? "Show everything" : `Only problems (${problems})`,
    ),
    summary: h(
      "p",
      { id: "summary", "aria-live": "polite" },
      `${page.groups.length} ${page.groups.length === 1 ? "group" : "groups"}, ${targets} ${targets === 1 ? "target" : "targets"}`,
      page.health
        ? COUNTED.filter((health) => counts.get(health) > 0).map((health) => [
            " · ",
            h("a", { class: "count", "data-health": health, href: hrefFor(page.params, `health:${health}`) }, h("span", { class: "dot" }), `${counts.get(health)} ${health}`),
          ])
        : " · health needs PROMETHEUS_URL",
      expiring > 0 ? [" · ", h("a", { class: "count", href: hrefFor(page.params, "expiring") }, `${expiring} expiring`)] : "",
      filtered ? ` · showing ${shownTargets} of ${targets}` : "",
      omittedNote(scrape, context.budget, "/-/http_sd"),
      notes.map((note) => [" · ", h("span", { class: "note" }, note)]),
    ),
    sources: h("p", { id: "sources" }, page.health ? ["Health from ", page.prometheus.map((server, i) => [i === 0 ? "" : ", ", source(server)])] : ""),
    rows: h("tbody", { id: "rows" }, rows),
    empty: h(
      "p",
      { id: "empty", hidden: visibleRows > 0 },
      page.groups.length === 0
        ? ["Nothing registered yet: ", h("code", {}, "curl -X PUT -d targets=host:9100 …/application/environment")]
        : "Nothing matches the filter.",
    ),
    probes: probesSection(page, probing, filtered, context.budget),
  };
}

/**
 * At most this many targets are rendered in each table; the counts above it cover every one.
 * A registry of 100,000 targets is still a page of a few megabytes, built in milliseconds,
 * not a document that takes the service's memory and the browser's patience: the rest is
 * one filter away (the problems come first), and in the JSON.
 */
export const PAGE_TARGETS = 5000;

/**
 * One table's rows, problems first, and what the counts need: scrape groups or probe groups.
 * Only the rows and targets the filter shows are rendered, within `context.budget` targets.
 */
function section(groups, terms, context) {
  const counted = {
    shownTargets: 0,
    problems: 0,
    counts: new Map(COUNTED.map((health) => [health, 0])),
    expiring: 0,
    targets: 0,
    visibleRows: 0,
    rows: [],
    omittedRows: 0,
    omittedTargets: 0,
  };
  let left = context.budget;
  for (const group of [...groups].sort(problemsFirst)) {
    const shown = [];
    for (const target of group.targets) {
      counted.targets++;
      if (isProblem(target)) counted.problems++;
      if (target.deadline !== undefined) counted.expiring++;
      const worst = worstHealth(target);
      if (worst !== undefined) counted.counts.set(worst, (counted.counts.get(worst) ?? 0) + 1);
      if (terms.every((term) => holds(term, group, target))) shown.push(target);
    }
    counted.shownTargets += shown.length;
    const groupShown = group.targets.length === 0 ? terms.every((term) => holds(term, group, undefined)) : shown.length > 0;
    if (!groupShown) continue;
    counted.visibleRows++;
    if (left <= 0) {
      counted.omittedRows++;
      counted.omittedTargets += shown.length;
      continue;
    }
    const rendered = shown.slice(0, left);
    left -= Math.max(1, rendered.length);
    counted.omittedTargets += shown.length - rendered.length;
    counted.rows.push(row(group, rendered, shown.length - rendered.length, context));
  }
  return counted;
}

/** What the budget left out, and where all of it is. */
function omittedNote(section, budget, json) {
  if (section.omittedTargets === 0 && section.omittedRows === 0) return "";
  const rows = section.omittedRows === 0 ? "" : ` (${section.omittedRows} more ${section.omittedRows === 1 ? "group" : "groups"})`;
  return [
    " · ",
    h(
      "span",
      { class: "note omitted" },
      `${section.omittedTargets} more not shown${rows}: the page shows ${budget} targets a table, problems first; narrow the filter, or see `,
      h("a", { href: json }, "the JSON"),
    ),
  ];
}

/**
 * The probe groups, under a heading of their own, in a table shaped like the scrape groups'
 * (the same columns, so both line up): each URL or host with its result on each Prometheus.
 */
function probesSection(page, probing, filtered, budget) {
  const groups = page.probes ?? [];
  return h(
    "section",
    { id: "probes", "aria-labelledby": "probes-heading" },
    h("h2", { id: "probes-heading" }, "Probes"),
    h(
      "p",
      { id: "probe-summary", "aria-live": "polite", hidden: groups.length === 0 },
      `${groups.length} ${groups.length === 1 ? "group" : "groups"}, ${probing.targets} ${probing.targets === 1 ? "probe" : "probes"} (blackbox_exporter)`,
      page.health
        ? COUNTED.filter((health) => probing.counts.get(health) > 0).map((health) => [" · ", h("span", { class: "count", "data-health": health }, h("span", { class: "dot" }), `${probing.counts.get(health)} ${health}`)])
        : "",
      probing.expiring > 0 ? ` · ${probing.expiring} expiring` : "",
      filtered ? ` · showing ${probing.shownTargets} of ${probing.targets}` : "",
      omittedNote(probing, budget, "/-/http_sd?kind=probes"),
    ),
    h(
      "table",
      { id: "probe-groups", hidden: groups.length === 0 },
      h("caption", { class: "visually-hidden" }, "Registered probes by application and environment, problems first"),
      h("colgroup", {}, h("col", { class: "col-group" }), h("col", { class: "col-targets" }), h("col", { class: "col-labels" }), h("col", { class: "col-changed" })),
      h(
        "thead",
        {},
        h("tr", {}, h("th", { scope: "col" }, "Application / environment"), h("th", { scope: "col" }, "Probes"), h("th", { scope: "col" }, "Labels"), h("th", { scope: "col" }, "Changed")),
      ),
      h("tbody", { id: "probe-rows" }, probing.rows),
    ),
    h(
      "p",
      { id: "probes-empty", hidden: probing.visibleRows > 0 },
      groups.length === 0
        ? ["No probes registered: ", h("code", {}, "curl -X PUT -d targets=https://host/health -d __param_module=http_2xx …/application/environment/probes")]
        : "No probe matches the filter.",
    ),
  );
}

function source(server) {
  const link = h("a", { href: `${server.publicUrl}/targets` }, shortName(server.publicUrl));
  const { answer } = server;
  switch (answer.kind) {
    case "live":
      return [link, ` (answered ${shownClock(answer.at)})`];
    case "stale":
      return [link, ` (no answer within ${answer.waitedMs} ms: last known answer, from ${shownClock(answer.at)})`];
    case "failed":
      return [link, " (did not answer: ", h("span", { class: "source-error" }, answer.error), ")"];
    default:
      return [link, " (no answer yet)"];
  }
}

/** Problems first, then by application and environment (code units: the same everywhere). */
function problemsFirst(a, b) {
  const problem = (group) => (group.targets.some(isProblem) ? 0 : 1);
  return problem(a) - problem(b) || compare(a.application, b.application) || compare(a.environment, b.environment);
}

function compare(a, b) {
  return a < b ? -1 : a > b ? 1 : 0;
}

function row(group, rendered, more, context) {
  const { application, environment } = group;
  const probes = context.kind === "probes";
  const path = `/${encodeURIComponent(application)}/${encodeURIComponent(environment)}${probes ? "/probes" : ""}`;
  return h(
    "tr",
    { "data-key": `${probes ? "probes/" : ""}${application}@${environment}`, class: group.targets.some(isProblem) ? "problem" : undefined },
    h(
      "th",
      { scope: "row" },
      h("span", { class: "application" }, application),
      " / ",
      h("span", { class: "environment" }, environment),
      h("span", { class: "links" }, h("a", { href: path }, "JSON"), context.health ? [" ", h("a", { href: `${path}/status` }, "status")] : ""),
    ),
    h(
      "td",
      {},
      h(
        "ul",
        { class: "targets" },
        rendered.map((target) => targetItem(group, target, context)),
        // A key no target can have (a target never holds a space), so the list stays keyed.
        more > 0 ? h("li", { "data-key": " more", class: "more" }, `${more} more not shown: `, h("a", { href: path }, "the group's JSON")) : "",
      ),
    ),
    h(
      "td",
      {},
      h(
        "ul",
        { class: "labels" },
        [...group.labels].map(([name, value]) => h("li", {}, h("span", { class: "name" }, name), "=", h("span", { class: "value" }, value))),
      ),
    ),
    h("td", {}, h("time", { class: "changed", datetime: group.changedAt }, shownTime(group.changedAt))),
  );
}

function targetItem(group, target, { many, publicUrls, now, kind }) {
  const probes = kind === "probes";
  const scrape = probes ? undefined : scrapeUrlOf(group, target);
  const servers = [...target.servers];
  return h(
    "li",
    { "data-key": target.target, class: isProblem(target) ? "problem" : undefined },
    h("span", { class: "target" }, target.target),
    scrape === undefined ? "" : [" ", h("a", { class: "scrape", href: scrape.href, title: `what Prometheus scrapes: ${scrape.href}` }, `${scrape.pathname}${scrape.search}`)],
    target.deadline === undefined
      ? ""
      : [" ", live(h("time", { class: "expires", datetime: target.deadline, title: `expires ${shownTime(target.deadline)}` }, untilText(target.deadline, now)))],
    servers.length === 0
      ? ""
      : [
          " ",
          h(
            "span",
            { class: "healths" },
            servers.map(([prometheus, server]) => {
              const publicUrl = publicUrls.get(prometheus) ?? prometheus;
              return h(
                "a",
                { class: "health", "data-health": server.health, href: `${publicUrl}/targets`, title: `${server.health} on ${shortName(publicUrl)}: open its targets page` },
                h("span", { class: "dot" }),
                h("span", { class: "word" }, many ? `${server.health} · ${shortName(publicUrl)}` : server.health),
              );
            }),
          ),
        ],
    // A probe's result: what blackbox_exporter measured, on each Prometheus that has one.
    probes
      ? servers
          .filter(([, server]) => server.probe !== undefined && probeResultText(server.probe) !== "")
          .map(([prometheus, server]) => [" ", h("span", { class: "probe-result" }, many ? `${probeResultText(server.probe)} · ${shortName(publicUrls.get(prometheus) ?? prometheus)}` : probeResultText(server.probe))])
      : "",
    // Only a scrape's (or probe's) own error: why a Prometheus did not answer is said once, in the sources line.
    servers
      .filter(([, server]) => server.health === "down" && server.error)
      .map(([prometheus, server]) => {
        const debug = server.debugUrl === undefined ? undefined : webUrl(server.debugUrl);
        return h(
          "p",
          { class: "error" },
          many ? `${shortName(publicUrls.get(prometheus) ?? prometheus)}: ${server.error}` : server.error,
          debug === undefined ? "" : [" (", h("a", { class: "debug", href: debug.href, title: `blackbox_exporter's log of this probe: ${debug.href}` }, "the exporter's log of it"), ")"],
        );
      }),
  );
}

/** `HTTP 200 · 12 ms`, `no HTTP answer · 3 ms`, `45 ms`: the probe's status code and duration. */
export function probeResultText(probe) {
  const parts = [];
  if (probe.httpStatusCode !== undefined) parts.push(probe.httpStatusCode === 0 ? "no HTTP answer" : `HTTP ${probe.httpStatusCode}`);
  const seconds = probe.durationSeconds;
  if (seconds !== undefined) parts.push(seconds < 0.0005 ? "<1 ms" : seconds < 1 ? `${Math.round(seconds * 1000)} ms` : `${seconds.toFixed(2)} s`);
  return parts.join(" · ");
}
