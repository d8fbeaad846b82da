import { readFileSync } from "node:fs";
import type { Context, Middleware } from "koa";
import { RuleError } from "../errors.js";
import type { Entry } from "../store.js";
import type { Answer, GroupStatus, Health, StatusService } from "../status/status.js";
import type { ProbeResult } from "../status/prometheus-targets.js";
import { selectedEntries } from "./group-filter.js";

/**
 * The page for people: `GET /` from a browser (docs/page.md). The first HTML is
 * complete: rows, deadlines and, with PROMETHEUS_URL, health (waiting at most
 * HEALTH_WAIT_MS for Prometheus, else its last known answer, and the page says
 * which). `ui/app.js` then keeps it current from the JSON endpoints. Both render
 * the same description of the page, `ui/view.js`, so the script's first refresh
 * changes nothing that did not change. Every registered value is escaped here and
 * set as text there: a label value `<img src=x onerror=alert(1)>` is printed.
 * Nothing comes from elsewhere, and the Content-Security-Policy says so.
 */

/**
 * How long the first HTML waits for a Prometheus that has not answered within the
 * last second. Long enough for a healthy Prometheus with thousands of targets
 * (tens of ms), short enough that a hung one does not hold the page: after it, the
 * page shows the last known answer and the script fills in the live one.
 */
export const HEALTH_WAIT_MS = 300;

/** No inline script or style anywhere, so no 'unsafe-inline'. The filter form may submit to the page itself (without script). */
export const CONTENT_SECURITY_POLICY =
  "default-src 'none'; script-src 'self'; style-src 'self'; connect-src 'self'; img-src 'self'; " +
  "base-uri 'none'; form-action 'self'; frame-ancestors 'none'";

const SECURITY_HEADERS = {
  "Content-Security-Policy": CONTENT_SECURITY_POLICY,
  "X-Content-Type-Options": "nosniff",
  "Referrer-Policy": "no-referrer",
} as const;

/** What the page needs from the store, whichever backend keeps it. */
export interface Listing {
  list(): Iterable<Entry>;
}

// ui/view.js is the browser's module too (no build step), so it is plain JavaScript, loaded
// here at run time from ui/ beside src/ and dist/ (the image copies ui/, see Dockerfile).
// These are the shapes it works with (its header comment says the same).
type ServerHealthView = { readonly health: Health; readonly error?: string; readonly scrapeUrl?: string; readonly probe?: ProbeResult; readonly debugUrl?: string };
interface TargetView {
  readonly target: string;
  readonly deadline: string | undefined;
  readonly servers: ReadonlyMap<string, ServerHealthView>;
}
interface GroupView {
  readonly application: string;
  readonly environment: string;
  readonly labels: ReadonlyMap<string, string>;
  readonly changedAt: string;
  readonly targets: readonly TargetView[];
}
interface PageView {
  readonly groups: readonly GroupView[];
  readonly probes: readonly GroupView[];
  readonly prometheus: readonly { readonly url: string; readonly publicUrl: string; readonly answer: Answer }[];
  readonly health: boolean;
  readonly refreshed: { readonly at: number };
  readonly params: readonly (readonly [string, string])[];
  readonly now: number;
}
interface Element {
  readonly tag: string;
  readonly attrs: readonly (readonly [string, string])[];
  readonly children: readonly (Element | string)[];
}
type PagePart = "refreshed" | "problems" | "summary" | "sources" | "rows" | "empty" | "probes";
interface ViewModule {
  pageParts(page: PageView, filterText: string): Readonly<Record<PagePart, Element>>;
  toHtml(node: Element | string): string;
  escapeHtml(text: string): string;
}

const view = (await import(new URL("../../ui/view.js", import.meta.url).href)) as ViewModule;

/**
 * True only when the client ranks text/html strictly above application/json:
 * browsers do (`text/html,…,*\/*;q=0.8`); curl (`*\/*`), scripts and
 * Prometheus keep getting JSON, and so does a tie.
 */
export function prefersHtml(accept: string | undefined): boolean {
  if (accept === undefined || accept.trim() === "") return false;
  const ranges = accept.split(",").map((part) => {
    const [range = "", ...parameters] = part.split(";").map((piece) => piece.trim().toLowerCase());
    const qParameter = parameters.find((parameter) => parameter.startsWith("q="));
    const q = qParameter === undefined ? 1 : Number(qParameter.slice(2));
    const [type = "", subtype = ""] = range.split("/");
    return { type, subtype, q: Number.isFinite(q) ? q : 0 };
  });
  const quality = (type: string, subtype: string): number => {
    let best = { specificity: -1, q: 0 };
    for (const range of ranges) {
      const specificity =
        range.type === type && range.subtype === subtype ? 2 : range.type === type && range.subtype === "*" ? 1 : range.type === "*" ? 0 : -1;
      if (specificity > best.specificity) best = { specificity, q: range.q };
    }
    return best.q;
  };
  return quality("text", "html") > quality("application", "json");
}

/** `GET /`: the page for a browser, else the JSON index. Either way it varies with Accept. */
export function htmlOrJson(html: Middleware, json: Middleware): Middleware {
  return (ctx, next) => {
    ctx.vary("Accept");
    return prefersHtml(ctx.get("Accept")) ? html(ctx, next) : json(ctx, next);
  };
}

/** `status`: from PROMETHEUS_URL; without it the page says that health needs it. */
export function page(listing: Listing, status: StatusService | undefined) {
  return async (ctx: Context): Promise<void> => {
    const filterText = filterOf(ctx);
    const entries = selectedEntries(ctx, listing.list(), "targets");
    const probes = selectedEntries(ctx, listing.list(), "probes");
    // One look at each Prometheus for both tables; its answer is split back in the same order.
    const health = status === undefined ? undefined : await status.ofEntriesWithin([...entries, ...probes], HEALTH_WAIT_MS);
    const now = Date.now();
    const params: [string, string][] = [];
    for (const name of ["application", "environment"] as const) {
      const given = ctx.query[name];
      for (const value of given === undefined ? [] : typeof given === "string" ? [given] : given) params.push([name, value]);
    }
    const pageView: PageView = {
      groups: groupViews(entries, health?.groups.slice(0, entries.length)),
      probes: groupViews(probes, health?.groups.slice(entries.length)),
      prometheus:
        status === undefined || health === undefined
          ? []
          : status.servers.map((server, i) => ({
              url: server.url,
              publicUrl: status.publicUrls.at(i) ?? server.url,
              answer: health.answers.at(i) ?? { kind: "none", waitedMs: HEALTH_WAIT_MS },
            })),
      health: status !== undefined,
      refreshed: { at: now },
      params,
      now,
    };
    ctx.set(SECURITY_HEADERS);
    ctx.set("Cache-Control", "no-store");
    ctx.type = "html";
    ctx.body = renderPage(pageView, filterText);
  };
}

/** `?q=`, the filter (docs/page.md); once. */
function filterOf(ctx: Context): string {
  const given = ctx.query.q;
  if (given === undefined) return "";
  if (typeof given !== "string") throw new RuleError(400, "give ?q= once; put several filter words in it, separated by spaces (?q=billing+health:down)", {}, "bad_request");
  return given;
}

function groupViews(entries: readonly Entry[], statuses: readonly GroupStatus[] | undefined): GroupView[] {
  return entries.map((entry, i) => {
    const status = statuses?.at(i);
    const byTarget = new Map(status?.targets.map((target) => [target.target, target]));
    return {
      application: entry.id.application,
      environment: entry.id.environment,
      labels: new Map(Object.entries(entry.group.labels)),
      changedAt: entry.changedAt.toISOString(),
      targets: entry.group.targets.map((target): TargetView => {
        const deadline = deadlineOf(entry, target);
        return {
          target,
          deadline: deadline === undefined ? undefined : new Date(deadline).toISOString(),
          servers: new Map(
            (byTarget.get(target)?.servers ?? []).map((server) => [
              server.prometheus,
              {
                health: server.health,
                ...(server.error === undefined ? {} : { error: server.error }),
                ...(server.scrapeUrl ? { scrapeUrl: server.scrapeUrl } : {}),
                ...(server.probe === undefined ? {} : { probe: server.probe }),
                ...(server.debugUrl === undefined ? {} : { debugUrl: server.debugUrl }),
              },
            ]),
          ),
        };
      }),
    };
  });
}

function deadlineOf(entry: Entry, target: string): number | undefined {
  return entry.expires.get(target);
}

const ASSETS = {
  "app.js": "text/javascript; charset=utf-8",
  "view.js": "text/javascript; charset=utf-8",
  "app.css": "text/css; charset=utf-8",
  "icon.svg": "image/svg+xml",
} as const;

/** The page's scripts, stylesheet and icon (else browsers ask for /favicon.ico), from `ui/` beside `src/` and `dist/`, read once. */
export function uiAsset(name: keyof typeof ASSETS) {
  const bytes = readFileSync(new URL(`../../ui/${name}`, import.meta.url));
  return (ctx: Context): void => {
    ctx.set(SECURITY_HEADERS);
    ctx.set("Cache-Control", "no-cache");
    ctx.type = ASSETS[name];
    ctx.body = bytes;
  };
}

/** The parts ui/app.js keeps current, each rendered where the page has it. */
function renderPage(pageView: PageView, filterText: string): string {
  const parts = view.pageParts(pageView, filterText);
  const html = (part: PagePart): string => view.toHtml(parts[part]);
  const settings = JSON.stringify({
    health: pageView.health,
    prometheus: pageView.prometheus.map(({ url, publicUrl }) => ({ url, publicUrl })),
  });
  const hidden = pageView.params.map(([name, value]) => `<input type="hidden" name="${name}" value="${view.escapeHtml(value)}">`).join("");
  return `<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>file_sd writer</title>
<link rel="stylesheet" href="/-/ui/app.css">
<link rel="icon" href="/-/ui/icon.svg" type="image/svg+xml">
<script type="module" src="/-/ui/app.js"></script>
</head>
<body data-page="${view.escapeHtml(settings)}">
<header>
<div class="title"><h1>file_sd writer</h1>${html("refreshed")}</div>
<form id="filter-form" role="search" method="get" action="/">
<label for="filter">Filter</label>
<input id="filter" name="q" type="search" value="${view.escapeHtml(filterText)}" autocomplete="off" spellcheck="false" placeholder="billing health:down team=core" aria-describedby="filter-help">${hidden}
${html("problems")}
</form>
<p id="filter-help">Words match names, targets and label values; also <code>name=value</code>, <code>health:down</code>, <code>expiring</code>, <code>problems</code>.<span class="keys"> Keys: <kbd>/</kbd> filter, <kbd>p</kbd> problems, <kbd>Esc</kbd> clear.</span></p>
${html("summary")}
${html("sources")}
</header>
<main>
<table id="groups">
<caption class="visually-hidden">Registered targets by application and environment, problems first</caption>
<colgroup><col class="col-group"><col class="col-targets"><col class="col-labels"><col class="col-changed"></colgroup>
<thead><tr><th scope="col">Application / environment</th><th scope="col">Targets</th><th scope="col">Labels</th><th scope="col">Changed</th></tr></thead>
${html("rows")}
</table>
${html("empty")}
${html("probes")}
</main>
</body>
</html>
`;
}
