import { readFileSync } from "node:fs";
import type { Context, Middleware } from "koa";
import type { Entry } from "../filestore/store.js";

/**
 * The page for people (SPEC §12): `GET /` from a browser. Server-rendered, so it
 * shows everything without script; `ui/app.js` then keeps it current from the
 * JSON endpoints. Every registered value is HTML-escaped here and set with
 * textContent there: a label value `<img src=x onerror=alert(1)>` is printed.
 * Nothing comes from elsewhere, and the Content-Security-Policy says so.
 */

/** No inline script or style anywhere, so no 'unsafe-inline'. */
export const CONTENT_SECURITY_POLICY =
  "default-src 'none'; script-src 'self'; style-src 'self'; connect-src 'self'; img-src 'self'; " +
  "base-uri 'none'; form-action 'none'; frame-ancestors 'none'";

const SECURITY_HEADERS = {
  "Content-Security-Policy": CONTENT_SECURITY_POLICY,
  "X-Content-Type-Options": "nosniff",
  "Referrer-Policy": "no-referrer",
} as const;

/** What the page needs from the store, whichever backend keeps it. */
export interface Listing {
  list(): Iterable<Entry>;
}

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

/** `health`: PROMETHEUS_URL is set, so the script asks `/-/status` for the dots. */
export function page(listing: Listing, options: { readonly health: boolean }) {
  return (ctx: Context): void => {
    const entries = [...listing.list()].sort(byApplicationThenEnvironment);
    ctx.set(SECURITY_HEADERS);
    ctx.set("Cache-Control", "no-store");
    ctx.type = "html";
    ctx.body = renderPage(entries, options.health);
  };
}

const ASSETS = {
  "app.js": "text/javascript; charset=utf-8",
  "app.css": "text/css; charset=utf-8",
  "icon.svg": "image/svg+xml",
} as const;

/** The page's script, stylesheet and icon (else browsers ask for /favicon.ico), from `ui/` beside `src/` and `dist/`, read once. */
export function uiAsset(name: keyof typeof ASSETS) {
  const bytes = readFileSync(new URL(`../../ui/${name}`, import.meta.url));
  return (ctx: Context): void => {
    ctx.set(SECURITY_HEADERS);
    ctx.set("Cache-Control", "no-cache");
    ctx.type = ASSETS[name];
    ctx.body = bytes;
  };
}

export function escapeHtml(text: string): string {
  return text.replace(/[&<>"']/g, (character) => `&#${character.charCodeAt(0)};`);
}

/** The same words and times app.js writes, so the first paint and the updates look alike. */
export function shownTime(iso: string): string {
  return `${iso.slice(0, 10)} ${iso.slice(11, 19)} UTC`;
}

function renderPage(entries: readonly Entry[], health: boolean): string {
  const targets = entries.reduce((sum, entry) => sum + entry.group.targets.length, 0);
  return `<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>file_sd writer</title>
<link rel="stylesheet" href="/-/ui/app.css">
<link rel="icon" href="/-/ui/icon.svg" type="image/svg+xml">
<script src="/-/ui/app.js" defer></script>
</head>
<body data-health="${health ? "on" : "off"}">
<header>
<h1>file_sd writer</h1>
<div class="controls">
<label for="filter">Filter</label>
<input id="filter" type="search" autocomplete="off" spellcheck="false" placeholder="e.g. billing prod team=core">
</div>
<p id="summary" aria-live="polite">${entries.length} application/environments, ${targets} targets${health ? "" : ". Health needs PROMETHEUS_URL."}</p>
</header>
<main>
<table id="groups">
<caption class="visually-hidden">Registered targets by application and environment</caption>
<thead><tr><th scope="col">Application / environment</th><th scope="col">Targets</th><th scope="col">Labels</th><th scope="col">Changed</th></tr></thead>
<tbody>
${entries.map(renderRow).join("\n")}
</tbody>
</table>
<p id="empty"${entries.length === 0 ? "" : " hidden"}>Nothing registered yet: <code>curl -X PUT -d targets=host:9100 …/application/environment</code></p>
</main>
</body>
</html>
`;
}

function renderRow(entry: Entry): string {
  const { application, environment } = entry.appEnv;
  const labels = Object.entries(entry.group.labels);
  return (
    `<tr data-key="${escapeHtml(`${application}@${environment}`)}">` +
    `<th scope="row"><span class="application">${escapeHtml(application)}</span> / <span class="environment">${escapeHtml(environment)}</span></th>` +
    `<td><ul class="targets">${entry.group.targets
      .map((target) => `<li><span class="target">${escapeHtml(target)}</span></li>`)
      .join("")}</ul></td>` +
    `<td><ul class="labels">${labels
      .map(([name, value]) => `<li><span class="name">${escapeHtml(name)}</span>=<span class="value">${escapeHtml(value)}</span></li>`)
      .join("")}</ul></td>` +
    `<td><time datetime="${entry.changedAt.toISOString()}">${shownTime(entry.changedAt.toISOString())}</time></td>` +
    "</tr>"
  );
}

function byApplicationThenEnvironment(a: Entry, b: Entry): number {
  return compare(a.appEnv.application, b.appEnv.application) || compare(a.appEnv.environment, b.appEnv.environment);
}

function compare(a: string, b: string): number {
  return a < b ? -1 : a > b ? 1 : 0;
}
