// The page's script (served at /-/ui/app.js; docs/page.md). No build step, no library. The
// service renders the whole page first; this keeps it current from the service's own JSON:
// GET / (labels, last change, deadlines), GET /-/http_sd and /-/http_sd?kind=probes (targets,
// probes) and, with PROMETHEUS_URL, GET /-/status and /-/status?kind=probes (health, probe results). Both sides render ui/view.js's description of the page; here it is
// compared with what the page has and only what differs is changed, so a selection, the focus
// and the scroll position survive every refresh, and countdowns change their text only.
// Every registered value goes into the page as text, never as markup.
import { pageParts, toggledProblems, untilText } from "./view.js";

const REFRESH_MS = 2000;
const TICK_MS = 1000;
const settings = JSON.parse(document.body.dataset.page || "{}");
const filter = document.getElementById("filter");
const form = document.getElementById("filter-form");
/** The page's own ?application= and ?environment=, passed on to every JSON request. */
const params = [...new URLSearchParams(window.location.search)].filter(([name]) => name === "application" || name === "environment");
/** The page as last fetched; undefined until the first refresh answers. */
let model;
let refreshed;
/** What each row was last rendered from: a row whose description did not change is not looked at. */
const rendered = new WeakMap();

// ---------------------------------------------------------------------------------------------
// Making the page equal to a description (ui/view.js's elements), changing only what differs.

function create(node) {
  if (typeof node === "string") return document.createTextNode(node);
  const element = document.createElement(node.tag);
  for (const [name, value] of node.attrs) element.setAttribute(name, value);
  for (const child of node.children) element.append(create(child));
  return element;
}

function keyOf(dom) {
  return dom.nodeType === Node.ELEMENT_NODE ? (dom.getAttribute("data-key") ?? undefined) : undefined;
}

function sameKind(dom, node) {
  if (typeof node === "string") return dom.nodeType === Node.TEXT_NODE;
  return dom.nodeType === Node.ELEMENT_NODE && dom.localName === node.tag && keyOf(dom) === node.key;
}

/** A countdown's text is the ticker's: the description only says when it is due. */
function signature(node) {
  return JSON.stringify(node, (_, value) => (value !== null && typeof value === "object" && value.live === true ? value.attrs : value));
}

function update(dom, node) {
  if (typeof node === "string") {
    if (dom.data !== node) dom.data = node;
    return;
  }
  const wanted = new Map(node.attrs);
  for (const name of dom.getAttributeNames()) if (!wanted.has(name)) dom.removeAttribute(name);
  for (const [name, value] of node.attrs) if (dom.getAttribute(name) !== value) dom.setAttribute(name, value);
  if (!node.live) updateChildren(dom, node.children);
}

/** Children with a data-key (rows, targets) are matched by it, the others by position. */
function updateChildren(parent, children) {
  if (children.length > 0 && children.every((node) => typeof node !== "string" && node.key !== undefined)) {
    updateKeyed(parent, children);
    return;
  }
  let cursor = parent.firstChild;
  for (const node of children) {
    if (cursor !== null && sameKind(cursor, node)) {
      update(cursor, node);
      cursor = cursor.nextSibling;
    } else {
      parent.insertBefore(create(node), cursor);
    }
  }
  while (cursor !== null) {
    const next = cursor.nextSibling;
    cursor.remove();
    cursor = next;
  }
}

/**
 * Rows and targets: each element is kept and changed where it differs. Moving an element
 * drops a selection inside it, so only the ones outside the longest run already in order
 * are moved: a row that turns into a problem moves up alone, and the others stay.
 */
function updateKeyed(parent, children) {
  const wanted = new Map(children.map((node) => [node.key, node]));
  for (const child of [...parent.childNodes]) {
    const node = wanted.get(keyOf(child));
    if (node === undefined || !sameKind(child, node)) child.remove();
  }
  const current = new Map([...parent.childNodes].map((child, i) => [keyOf(child), { child, i }]));
  const staying = longestRun(children.map((node) => current.get(node.key)?.i ?? -1));
  let next = null;
  for (let i = children.length - 1; i >= 0; i--) {
    const node = children.at(i);
    const known = current.get(node.key);
    let dom;
    if (known === undefined) {
      dom = create(node);
    } else {
      dom = known.child;
      const described = signature(node);
      if (rendered.get(dom) !== described) update(dom, node);
      rendered.set(dom, described);
    }
    if (!staying.has(i)) parent.insertBefore(dom, next);
    next = dom;
  }
}

/** The indexes of a longest increasing run of `positions` (-1: new, never in it). */
function longestRun(positions) {
  const tails = [];
  const previous = new Map();
  for (const [i, position] of positions.entries()) {
    if (position < 0) continue;
    let low = 0;
    let high = tails.length;
    while (low < high) {
      const middle = (low + high) >> 1;
      if (positions.at(tails.at(middle)) < position) low = middle + 1;
      else high = middle;
    }
    if (low > 0) previous.set(i, tails.at(low - 1));
    tails.splice(low, 1, i);
  }
  const run = new Set();
  for (let i = tails.at(-1); i !== undefined; i = previous.get(i)) run.add(i);
  return run;
}

// ---------------------------------------------------------------------------------------------
// The page's data, from the three JSON answers.

function groupKey(application, environment) {
  return `${application}@${environment}`;
}

/** Built from Object.entries, into Maps: a target or label may be called __proto__ or constructor. */
function groupsOf(lines, httpSd, status) {
  const targetsOf = new Map();
  for (const group of httpSd) {
    const labels = new Map(Object.entries(group.labels || {}));
    targetsOf.set(groupKey(labels.get("__meta_filesd_application"), labels.get("__meta_filesd_environment")), group.targets || []);
  }
  const healthOf = new Map();
  for (const groupStatus of (status && status.groups) || []) {
    healthOf.set(groupKey(groupStatus.application, groupStatus.environment), new Map((groupStatus.targets || []).map((target) => [target.target, target])));
  }
  const groups = [];
  for (const line of lines || []) {
    const key = groupKey(line.application, line.environment);
    const deadlines = new Map(Object.entries(line.expires || {}));
    const seen = healthOf.get(key) || new Map();
    groups.push({
      application: line.application,
      environment: line.environment,
      labels: new Map(Object.entries(line.labels || {})),
      changedAt: line.changedAt || "",
      targets: (targetsOf.get(key) || []).map((target) => ({
        target,
        deadline: deadlines.get(target),
        servers: new Map(((seen.get(target) || {}).servers || []).map((server) => [server.prometheus, serverHealth(server)])),
      })),
    });
  }
  return groups;
}

function pageOf(index, { targets, probes }, status, statusError, at) {
  const groups = groupsOf(index.groups, targets.httpSd, status && status.targets);
  const probeGroups = groupsOf(index.probes, probes.httpSd, status && status.probes);
  const prometheus = (settings.prometheus || []).map(({ url, publicUrl }) => {
    if (statusError !== undefined) return { url, publicUrl, answer: { kind: "failed", at, error: statusError } };
    for (const group of [...groups, ...probeGroups]) {
      for (const target of group.targets) {
        const server = target.servers.get(url);
        if (server && server.health === "unreachable") return { url, publicUrl, answer: { kind: "failed", at, error: server.error || "no answer" } };
      }
    }
    return { url, publicUrl, answer: { kind: "live", at } };
  });
  return { groups, probes: probeGroups, prometheus, health: settings.health === true, params };
}

/** The same fields, in the same order, as the service's first HTML (src/handlers/page.ts). */
function serverHealth(server) {
  const health = { health: server.health };
  if (server.error !== undefined) health.error = server.error;
  if (server.scrapeUrl) health.scrapeUrl = server.scrapeUrl;
  if (server.probe !== undefined) health.probe = server.probe;
  if (server.debugUrl !== undefined) health.debugUrl = server.debugUrl;
  return health;
}

/** `path` with the page's own filters, and `extra` ([name, value] pairs) after them. */
async function getJson(path, extra = []) {
  const search = new URLSearchParams([...params, ...extra]).toString();
  const response = await fetch(search === "" ? path : `${path}?${search}`, { headers: { Accept: "application/json" }, cache: "no-store" });
  const body = await response.json().catch(() => ({}));
  if (!response.ok) throw new Error(`${path} answered ${response.status}${body.message ? `: ${body.message}` : ""}`);
  return body;
}

// ---------------------------------------------------------------------------------------------
// Rendering, the filter and the keys.

const PARTS = ["refreshed", "problems", "summary", "sources", "rows", "empty", "probes"];

function render() {
  if (model === undefined) return;
  const parts = new Map(Object.entries(pageParts({ ...model, refreshed, now: Date.now() }, filter.value)));
  const anchor = viewAnchor();
  for (const id of PARTS) {
    const element = document.getElementById(id);
    const node = parts.get(id);
    if (element !== null && node !== undefined) update(element, node);
  }
  keepInView(anchor);
  tick();
}

/**
 * Scrolled down the page, someone is reading a row: a problem that turns up above it must
 * not push it away. The first row in view stays where it is on the screen. At the top of
 * the page nothing is held, so new problems are seen.
 */
function viewAnchor() {
  if (window.scrollY === 0) return undefined;
  for (const row of document.getElementById("rows").children) {
    const box = row.getBoundingClientRect();
    if (box.bottom > 0 && box.height > 0) return { row, top: box.top };
  }
  return undefined;
}

function keepInView(anchor) {
  if (anchor === undefined || !anchor.row.isConnected) return;
  const moved = anchor.row.getBoundingClientRect().top - anchor.top;
  if (moved !== 0) window.scrollBy(0, moved);
}

/** Countdowns: only their text changes. */
function tick() {
  const now = Date.now();
  for (const time of document.querySelectorAll("time.expires")) {
    const text = untilText(time.getAttribute("datetime") || "", now);
    const node = time.firstChild;
    if (node === null) time.append(text);
    else if (node.nodeType === Node.TEXT_NODE && node.data !== text) node.data = text;
  }
}

/** The filter is shareable: the address keeps ?q= in step, without a new history entry. */
function keepAddress() {
  const url = new URL(window.location.href);
  const query = filter.value.trim();
  if (query === "") url.searchParams.delete("q");
  else url.searchParams.set("q", query);
  if (url.href !== window.location.href) window.history.replaceState(null, "", url);
}

function setFilter(text) {
  filter.value = text;
  render();
  keepAddress();
}

async function refresh() {
  const at = Date.now();
  try {
    // Every group, as the index lists them: GROUP_SELECTOR chooses what this instance writes, not what the page shows.
    const all = ["share", "all"];
    const probes = ["kind", "probes"];
    const health = settings.health === true;
    const [index, httpSd, probesSd, status] = await Promise.all([
      getJson("/"),
      getJson("/-/http_sd", [all]),
      getJson("/-/http_sd", [probes, all]),
      health
        ? Promise.all([getJson("/-/status"), getJson("/-/status", [probes])]).then(([targets, probed]) => ({ targets, probes: probed })).catch((error) => ({ error }))
        : Promise.resolve(undefined),
    ]);
    const statusError = status && status.error instanceof Error ? status.error.message : undefined;
    model = pageOf(index, { targets: { httpSd }, probes: { httpSd: probesSd } }, statusError === undefined ? status : undefined, statusError, at);
    refreshed = { at };
  } catch (error) {
    refreshed = { at, error: error instanceof Error ? error.message : String(error) };
  }
  render();
  document.body.dataset.refreshes = String(Number(document.body.dataset.refreshes || "0") + 1);
}

let timer;
async function loop() {
  clearTimeout(timer);
  await refresh();
  // A hidden tab does not poll; it refreshes when it is shown again.
  if (!document.hidden) timer = setTimeout(loop, REFRESH_MS);
}

function typing(target) {
  return target instanceof HTMLElement && (target.isContentEditable || ["INPUT", "TEXTAREA", "SELECT"].includes(target.tagName));
}

filter.addEventListener("input", () => {
  render();
  keepAddress();
});
form.addEventListener("submit", (event) => event.preventDefault());
document.addEventListener("click", (event) => {
  // The toggle and the counts are links to a filtered page (they work without script too): here they filter in place.
  const link = event.target instanceof Element ? event.target.closest("#problems, #summary a.count") : null;
  if (link === null || event.button !== 0 || event.ctrlKey || event.metaKey || event.shiftKey || event.altKey) return;
  event.preventDefault();
  setFilter(new URL(link.href).searchParams.get("q") || "");
});
document.addEventListener("keydown", (event) => {
  if (event.ctrlKey || event.metaKey || event.altKey) return;
  if (event.target === filter && event.key === "Escape") {
    if (filter.value !== "") setFilter("");
    return;
  }
  if (typing(event.target)) return;
  if (event.key === "/") {
    event.preventDefault();
    filter.focus();
    filter.select();
  } else if (event.key === "p" || event.key === "P") {
    event.preventDefault();
    setFilter(toggledProblems(filter.value));
  }
});
document.addEventListener("visibilitychange", () => {
  if (!document.hidden) loop();
});
setInterval(tick, TICK_MS);
loop();
