import { createServer, type Server } from "node:http";
import type { AddressInfo } from "node:net";
import { join } from "node:path";
import type { Browser, Page } from "playwright-core";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { HEALTH_WAIT_MS } from "../../src/handlers/page.js";
import { eventually, makeTempDir, removeDir, startTestService, type TestService } from "../helpers.js";
import { axeFindings, expectNothingWrong, launchChromium, nextRefreshes, openWatched } from "../support/browser.js";
import { freePort } from "../support/ports.js";
import { startPrometheus, type RunningPrometheus } from "../support/prometheus.js";

/**
 * The page in a real headless Chromium (Debian's), against the service and a real
 * Prometheus that reads the directory and scrapes every second: a tiny exporter this
 * test runs is up, a closed port and a name that does not resolve are down. Everything
 * the browser asks for must come from the service; no dialog may open; no CSP
 * violation may be logged. Chromium and Prometheus start once for the file.
 */

const INJECTION = "<img src=x onerror=alert(1)>";
const WAIT_MS = 60_000;
const TEST_TIMEOUT_MS = 120_000;
/** Where people open the Prometheus: not where the service asks it (PROMETHEUS_PUBLIC_URL). */
const PUBLIC_PROMETHEUS = "https://prometheus.example.com/eu";

let directory: string;
let sd: TestService;
let prometheus: RunningPrometheus;
let exporter: Server;
let exporterPort: number;
let exporterAddress: string;
let closedAddress: string;
let browser: Browser;
/** Kept after the run (unlike `directory`), so the screenshots can be looked at. */
let screenshots: string;
const measured: string[] = [];

async function put(path: string, body: unknown): Promise<void> {
  expect((await sd.request("PUT", path, { body })).status, path).toBe(200);
}

/** `app@env health…` for every target, from /-/status: what the page should show. */
async function healthNow(): Promise<Map<string, string>> {
  const answer = (await sd.request("GET", "/-/status")).body as {
    groups: { application: string; environment: string; targets: { target: string; servers: { health: string }[] }[] }[];
  };
  return new Map(
    answer.groups.flatMap((group) => group.targets.map((target) => [`${group.application}@${group.environment} ${target.target}`, target.servers.map((server) => server.health).join(",")])),
  );
}

/** Until Prometheus has scraped every registered target once: up or down, nothing missing or unknown. */
async function settled(): Promise<void> {
  let last = new Map<string, string>();
  await eventually(
    async () => {
      last = await healthNow();
      return [...last.values()].every((health) => health === "up" || health === "down");
    },
    WAIT_MS,
    "every target up or down",
  ).catch((error: Error) => {
    throw new Error(`${error.message}: ${JSON.stringify([...last])}`);
  });
}

/** The text of each visible row's application / environment, in order. */
async function visibleGroups(page: Page): Promise<string[]> {
  return page.locator("#rows > tr:not([hidden])").evaluateAll((rows) =>
    rows.map((row) => `${row.querySelector(".application")?.textContent} / ${row.querySelector(".environment")?.textContent}`),
  );
}

/** The column boxes of the table's head: where the columns are. */
async function columnBoxes(page: Page): Promise<string[]> {
  return page.locator("#groups thead th").evaluateAll((cells) =>
    cells.map((cell) => {
      const box = cell.getBoundingClientRect();
      return `${box.x},${box.width}`;
    }),
  );
}

/** The rows' HTML, countdowns left out (they follow the clock). */
async function rowsHtml(page: Page): Promise<string> {
  const html = await page.locator("#rows").evaluate((rows) => rows.outerHTML);
  return html.replace(/(<time class="expires"[^>]*>)[^<]*</g, "$1…<");
}

beforeAll(async () => {
  directory = await makeTempDir("file-sd-page-");
  screenshots = await makeTempDir("file-sd-page-screenshots-");
  exporter = createServer((request, response) => {
    if (!request.url?.startsWith("/metrics")) return void response.writeHead(404).end();
    response.writeHead(200, { "content-type": "text/plain; version=0.0.4" }).end("# TYPE page_probe gauge\npage_probe 1\n");
  });
  await new Promise<void>((resolve) => exporter.listen(0, "127.0.0.1", () => resolve()));
  exporterPort = (exporter.address() as AddressInfo).port;
  exporterAddress = `127.0.0.1:${exporterPort}`;
  closedAddress = `127.0.0.1:${await freePort()}`;
  const files = join(directory, "sd");
  [prometheus, browser] = await Promise.all([
    startPrometheus({
      configYaml: `global:
  scrape_interval: 1s
  scrape_timeout: 1s
scrape_configs:
  - job_name: file_sd
    file_sd_configs:
      - files: ["${files}/*.json"]
        refresh_interval: 1s
`,
    }),
    launchChromium(),
  ]);
  sd = await startTestService({ directory: files, env: { PROMETHEUS_URL: prometheus.url, PROMETHEUS_PUBLIC_URL: PUBLIC_PROMETHEUS } });
  await put("/web/prod", { targets: [exporterAddress], labels: { team: "core", note: INJECTION } });
  await put("/backup/prod", { targets: [`localhost:${exporterPort}`], labels: { team: "ops", __param_module: "http_2xx" } });
  await put("/closed/staging", { targets: [closedAddress], labels: { team: "edge" } });
  // Down with an error that says "lookup": the plain word `up` must not find it.
  await put("/dns/prod", { targets: ["nowhere.invalid:9100"], labels: { team: "edge" } });
  await put("/billing/prod-hou?ttl=1h", { targets: ["127.0.0.2:9", exporterAddress], labels: { team: "payments", tier: "api" } });
  await settled();
}, 120_000);

afterAll(async () => {
  if (measured.length > 0) console.log(`page measurements:\n${measured.map((line) => `  ${line}`).join("\n")}`);
  await browser?.close();
  await sd?.close();
  await prometheus?.close();
  exporter?.closeAllConnections();
  await new Promise<void>((resolve) => (exporter === undefined ? resolve() : exporter.close(() => resolve())));
  await removeDir(directory);
}, 60_000);

describe("the first HTML, before any script", () => {
  it(
    "shows health from the real Prometheus with the last error, deadlines, counts, and links where they should go",
    async () => {
      const watched = await openWatched(browser, { javaScriptEnabled: false });
      const { page } = watched;
      const started = Date.now();
      const response = await page.goto(`${sd.url}/`);
      measured.push(`first HTML in Chromium (JavaScript off, Prometheus reachable): ${Date.now() - started} ms`);
      expect(response?.headers()["content-type"]).toBe("text/html; charset=utf-8");

      // Problems first: the three groups with a down target, then the healthy ones, each by name.
      expect(await visibleGroups(page)).toEqual(["billing / prod-hou", "closed / staging", "dns / prod", "backup / prod", "web / prod"]);
      const web = page.locator('tr[data-key="web@prod"]');
      expect(await web.locator(".value").allTextContents()).toEqual(["web", "prod", "core", INJECTION]);
      expect(await web.locator('.health[data-health="up"] .word').allTextContents()).toEqual(["up"]);
      const closed = page.locator('tr[data-key="closed@staging"]');
      expect(await closed.locator(".health").getAttribute("data-health")).toBe("down");
      expect(await closed.locator(".error").textContent()).toMatch(/connection refused/);
      expect(await page.locator('tr[data-key="dns@prod"] .error').textContent()).toMatch(/lookup nowhere\.invalid/);
      const billing = page.locator('tr[data-key="billing@prod-hou"]');
      expect(await billing.locator("time.expires").allTextContents()).toEqual([
        expect.stringMatching(/^expires in (59|60) min$/),
        expect.stringMatching(/^expires in (59|60) min$/),
      ]);
      expect(await billing.locator("time.expires").first().getAttribute("title")).toMatch(/^expires \d{4}-\d\d-\d\d \d\d:\d\d:\d\d UTC$/);

      expect(await page.locator("#summary").textContent()).toBe("5 groups, 6 targets · 3 up · 3 down · 2 expiring");
      expect(await page.locator("#problems").textContent()).toBe("Only problems (3)");
      expect(await page.locator("#sources").textContent()).toMatch(/^Health from prometheus\.example\.com\/eu \(answered \d\d:\d\d:\d\d UTC\)$/);
      expect(await page.locator("#refreshed").textContent()).toMatch(/^Updated \d\d:\d\d:\d\d UTC$/);

      // Links: the group's JSON and status, the scrape URL (Prometheus' own), the public /targets page.
      expect(await web.locator(".links a").evaluateAll((links) => links.map((link) => link.getAttribute("href")))).toEqual(["/web/prod", "/web/prod/status"]);
      expect(await web.locator("a.scrape").getAttribute("href")).toBe(`http://${exporterAddress}/metrics`);
      expect(await page.locator('tr[data-key="backup@prod"] a.scrape').getAttribute("href")).toBe(`http://localhost:${exporterPort}/metrics?module=http_2xx`);
      expect(await page.locator('tr[data-key="backup@prod"] a.scrape').textContent()).toBe("/metrics?module=http_2xx");
      expect(await web.locator("a.health").getAttribute("href")).toBe(`${PUBLIC_PROMETHEUS}/targets`);
      expect(await page.locator("#sources a").getAttribute("href")).toBe(`${PUBLIC_PROMETHEUS}/targets`);
      for (const path of ["/web/prod", "/web/prod/status"]) expect((await sd.request("GET", path)).status, path).toBe(200);

      // Without script the filter is a form: it asks the service for the filtered page.
      await page.locator("#filter").fill("health:down team=edge");
      await page.locator("#filter").press("Enter");
      await page.waitForURL(/\?q=/);
      expect(new URL(page.url()).searchParams.get("q")).toBe("health:down team=edge");
      expect(await visibleGroups(page)).toEqual(["closed / staging", "dns / prod"]);
      await page.locator("#problems").click();
      await page.waitForURL(/problems/);
      expect(await visibleGroups(page)).toEqual(["closed / staging", "dns / prod"]);
      expect(await page.locator("#problems").textContent()).toBe("Show everything");
      await expectNothingWrong(watched, new URL(sd.url).origin);
      await watched.close();
    },
    TEST_TIMEOUT_MS,
  );

  it("is rendered filtered by ?q=, with the same syntax as the script's filter", async () => {
    const watched = await openWatched(browser, { javaScriptEnabled: false });
    const { page } = watched;
    const cases: [string, string[]][] = [
      ["up", ["backup / prod"]],
      ["health:up", ["billing / prod-hou", "backup / prod", "web / prod"]],
      ["team=edge", ["closed / staging", "dns / prod"]],
      ["expiring", ["billing / prod-hou"]],
      ["problems", ["billing / prod-hou", "closed / staging", "dns / prod"]],
      ["nothing-like-this", []],
    ];
    for (const [query, groups] of cases) {
      await page.goto(`${sd.url}/?q=${encodeURIComponent(query)}`);
      expect(await visibleGroups(page), query).toEqual(groups);
      expect(await page.locator("#filter").inputValue()).toBe(query);
      expect(await page.locator("#empty").isVisible(), query).toBe(groups.length === 0);
    }
    await watched.close();
  });
});

describe("the script takes over", () => {
  it(
    "without moving a column or changing a row: the same HTML and boxes as the first response",
    async () => {
      // Not the dns group: a resolver's error text may change between two scrapes, and then the row rightly does.
      const path = "/?application=web&application=closed&application=billing&application=backup";
      const still = await openWatched(browser, { javaScriptEnabled: false });
      await still.page.goto(sd.url + path);
      const boxesWithout = await columnBoxes(still.page);
      const htmlWithout = await rowsHtml(still.page);
      await still.close();

      const watched = await openWatched(browser);
      const { page } = watched;
      // Every change to the rows after the first paint, except a countdown's text: which row, and what.
      await page.addInitScript(`document.addEventListener("DOMContentLoaded", () => {
        window.rowChanges = [];
        const tbody = document.getElementById("rows");
        const keys = (nodes) => [...nodes].map((node) => node.dataset ? node.dataset.key : "#text");
        new MutationObserver((records) => {
          for (const r of records) {
            const parent = r.target.nodeType === 3 ? r.target.parentElement : r.target;
            if (r.type === "characterData" && parent && parent.matches("time.expires")) continue;
            const row = parent === tbody ? "tbody" : parent.closest("#rows > tr").dataset.key;
            window.rowChanges.push({ type: r.type, row, added: keys(r.addedNodes), removed: keys(r.removedNodes) });
          }
        }).observe(tbody, { subtree: true, childList: true, attributes: true, characterData: true });
      });`);
      await page.goto(sd.url + path);
      expect(await visibleGroups(page)).toEqual(["billing / prod-hou", "closed / staging", "backup / prod", "web / prod"]);
      const boxesFirst = await columnBoxes(page);
      await nextRefreshes(page, 2);
      expect(await page.evaluate<unknown[]>("window.rowChanges")).toEqual([]);
      expect(await columnBoxes(page)).toEqual(boxesWithout);
      expect(boxesFirst).toEqual(boxesWithout);
      expect(await rowsHtml(page)).toBe(htmlWithout);

      // A change: only its row changes, and the columns stay where they were, even for a long target.
      await sd.request("POST", "/web/prod", { body: { targets: [`a-rather-long-host-name-that-could-push-columns.example.com:${exporterPort}`] } });
      await page.locator('tr[data-key="web@prod"] li[data-key^="a-rather-long"]').waitFor({ timeout: 10_000 });
      expect(await columnBoxes(page)).toEqual(boxesWithout);
      // Every change is inside the web row, or moves that row (a problem now: its new target is not scraped yet).
      const changes = await page.evaluate<{ type: string; row: string; added: string[]; removed: string[] }[]>("window.rowChanges");
      expect(changes.length).toBeGreaterThan(0);
      for (const change of changes) {
        if (change.row === "tbody") expect([...change.added, ...change.removed].every((key) => key === "web@prod"), JSON.stringify(change)).toBe(true);
        else expect(change.row, JSON.stringify(change)).toBe("web@prod");
      }
      await sd.request("DELETE", "/web/prod", { body: { targets: [`a-rather-long-host-name-that-could-push-columns.example.com:${exporterPort}`] } });
      await page.locator('li[data-key^="a-rather-long"]').waitFor({ state: "detached", timeout: 10_000 });
      await expectNothingWrong(watched, new URL(sd.url).origin);
      await watched.close();
      await settled();
    },
    TEST_TIMEOUT_MS,
  );
});

describe("the filter", () => {
  it(
    "follows the syntax as one types, keeps ?q= in the address without new history entries, and a reload keeps it",
    async () => {
      const watched = await openWatched(browser);
      const { page } = watched;
      await page.goto(`${sd.url}/?q=${encodeURIComponent("team=edge")}`);
      const historyLength = await page.evaluate<number>("history.length");
      expect(await page.locator("#filter").inputValue()).toBe("team=edge");
      expect(await visibleGroups(page)).toEqual(["closed / staging", "dns / prod"]);
      await nextRefreshes(page);
      expect(await visibleGroups(page)).toEqual(["closed / staging", "dns / prod"]);

      // Keyboard: the filter is the first thing Tab reaches.
      await page.locator("#filter").fill("");
      await page.locator("body").click({ position: { x: 5, y: 5 } });
      await page.keyboard.press("Tab");
      expect(await page.evaluate<string>("document.activeElement.id")).toBe("filter");
      await page.keyboard.type("up");
      // `up` is in the dns group's error ("lookup") and is the health of web and backup: neither counts.
      expect(await visibleGroups(page)).toEqual(["backup / prod"]);
      expect(new URL(page.url()).searchParams.get("q")).toBe("up");
      await page.locator("#filter").fill("health:up");
      expect(await visibleGroups(page)).toEqual(["billing / prod-hou", "backup / prod", "web / prod"]);
      await page.locator("#filter").fill("health:down billing");
      expect(await visibleGroups(page)).toEqual(["billing / prod-hou"]);
      // Only the down one of billing's two targets.
      expect(await page.locator('tr[data-key="billing@prod-hou"] li:not([hidden]) .target').allTextContents()).toEqual(["127.0.0.2:9"]);
      await page.locator("#filter").fill("tier=API");
      expect(await visibleGroups(page)).toEqual(["billing / prod-hou"]);
      await page.locator("#filter").fill("team=pay");
      expect(await visibleGroups(page)).toEqual([]);
      expect(await page.locator("#empty").textContent()).toBe("Nothing matches the filter.");
      await page.locator("#filter").fill("health:sad");
      expect(await page.locator("#summary .note").textContent()).toMatch(/^health:sad is not a health; use one of health:up/);
      await page.locator("#filter").fill("expiring");
      expect(await visibleGroups(page)).toEqual(["billing / prod-hou"]);
      expect(await page.locator("#summary").textContent()).toMatch(/ · showing 2 of 6$/);
      await page.locator("#filter").fill("prod core");
      expect(await visibleGroups(page)).toEqual(["web / prod"]);
      expect(new URL(page.url()).searchParams.get("q")).toBe("prod core");

      await page.reload();
      expect(await page.locator("#filter").inputValue()).toBe("prod core");
      expect(await visibleGroups(page)).toEqual(["web / prod"]);
      // Escape clears it, and the address with it.
      await page.locator("#filter").press("Escape");
      expect(await visibleGroups(page)).toHaveLength(5);
      expect(new URL(page.url()).search).toBe("");
      expect(await page.evaluate<number>("history.length")).toBe(historyLength);
      expect(await page.evaluate<number>("performance.getEntriesByType('navigation').length")).toBe(1);
      await expectNothingWrong(watched, new URL(sd.url).origin);
      await watched.close();
    },
    TEST_TIMEOUT_MS,
  );

  it("shows only problems by a click or the p key, and / goes to the filter", async () => {
    const watched = await openWatched(browser);
    const { page } = watched;
    await page.goto(`${sd.url}/`);
    await nextRefreshes(page);
    await page.evaluate("window.sameDocument = true");
    const historyLength = await page.evaluate<number>("history.length");
    await page.locator("#problems").click();
    expect(await visibleGroups(page)).toEqual(["billing / prod-hou", "closed / staging", "dns / prod"]);
    expect(await page.locator("#problems").textContent()).toBe("Show everything");
    expect(await page.locator("#filter").inputValue()).toBe("problems");
    expect(new URL(page.url()).searchParams.get("q")).toBe("problems");
    await page.locator("#problems").click();
    expect(await visibleGroups(page)).toHaveLength(5);

    await page.locator("body").click({ position: { x: 5, y: 5 } });
    await page.keyboard.press("p");
    expect(await visibleGroups(page)).toEqual(["billing / prod-hou", "closed / staging", "dns / prod"]);
    await page.keyboard.press("p");
    expect(await visibleGroups(page)).toHaveLength(5);
    // A count is a filter too.
    await page.locator('#summary a.count[data-health="down"]').click();
    expect(await page.locator("#filter").inputValue()).toBe("health:down");
    expect(await visibleGroups(page)).toEqual(["billing / prod-hou", "closed / staging", "dns / prod"]);

    await page.locator("body").click({ position: { x: 5, y: 5 } });
    await page.keyboard.press("/");
    expect(await page.evaluate<string>("document.activeElement.id")).toBe("filter");
    // Typing a p in the filter is a p, not the toggle.
    await page.keyboard.type("p");
    expect(await page.locator("#filter").inputValue()).toBe("p");
    // In place: the same document all along (address changes are replaceState, not loads).
    expect(await page.evaluate<boolean>("window.sameDocument === true")).toBe(true);
    expect(await page.evaluate<number>("history.length")).toBe(historyLength);
    await expectNothingWrong(watched, new URL(sd.url).origin);
    await watched.close();
  });
});

describe("updates in place", () => {
  it(
    "a selection in a target, the focus and the scroll position survive 10 s of updates while countdowns count down",
    async () => {
      // Enough rows for the page to scroll, all up before the page opens.
      for (let i = 0; i < 24; i++) await put(`/filler${String(i).padStart(2, "0")}/prod`, { targets: [`localhost:${exporterPort}`], labels: { team: "filler" } });
      await put("/beat/prod?ttl=100s", { targets: ["127.0.0.9:9"], labels: { team: "beat" } });
      await put("/heart/prod?ttl=60s", { targets: [exporterAddress], labels: { team: "heart" } });
      await settled();

      const watched = await openWatched(browser, { viewport: { width: 1280, height: 600 } });
      const { page } = watched;
      try {
        await page.goto(`${sd.url}/`);
        await nextRefreshes(page);
        // Select the beat target's address, as someone about to copy it would; focus a link further down; scroll.
        await page.evaluate(`(() => {
          const span = document.querySelector('tr[data-key="beat@prod"] .target');
          const range = document.createRange();
          range.selectNodeContents(span);
          getSelection().removeAllRanges();
          getSelection().addRange(range);
          window.selectedSpan = span;
          window.selected = span.firstChild;
          window.countdown = document.querySelector('tr[data-key="beat@prod"] time.expires').firstChild;
          document.querySelector('tr[data-key="filler12@prod"] .links a').focus();
          window.focused = document.activeElement;
          window.scrollTo(0, 400);
          window.rows = [...document.querySelectorAll("#rows > tr")];
        })()`);
        // The row someone scrolled to and reads, 100 px down the window.
        const inView = await page.evaluate<string>("document.elementFromPoint(640, 100).closest('#rows > tr').dataset.key");
        const anchor = `tr[data-key="${inView}"]`;
        const before = {
          selection: await page.evaluate<string>("getSelection().toString()"),
          countdown: await page.locator('tr[data-key="beat@prod"] time.expires').textContent(),
          top: await page.locator(anchor).evaluate((row) => row.getBoundingClientRect().top),
          scrollY: await page.evaluate<number>("window.scrollY"),
        };
        expect(before.selection).toBe("127.0.0.9:9");
        expect(before.scrollY).toBe(400);
        const refreshesBefore = Number(await page.getAttribute("body", "data-refreshes"));

        // Ten seconds of changes elsewhere: renewals, a label, a new problem group above the row in view.
        const started = Date.now();
        for (let round = 0; Date.now() - started < 10_000; round++) {
          await sd.request("POST", "/heart/prod?ttl=60s", { body: { targets: [exporterAddress] } });
          await sd.request("POST", "/filler20/prod", { body: { labels: { round: String(round) } } });
          if (round === 2) await put("/aa-late/dev", { targets: [closedAddress], labels: { owner: INJECTION } });
          await page.waitForTimeout(1000);
        }
        await page.locator('tr[data-key="aa-late@dev"]').waitFor({ timeout: 10_000 });
        await page.locator('tr[data-key="filler20@prod"] .value', { hasText: /^\d+$/ }).waitFor({ timeout: 10_000 });

        const after = {
          selection: await page.evaluate<string>("getSelection().toString()"),
          sameTextNode: await page.evaluate<boolean>(
            "getSelection().anchorNode === window.selectedSpan && window.selectedSpan.firstChild === window.selected && window.selectedSpan.isConnected",
          ),
          sameFocus: await page.evaluate<boolean>("document.activeElement === window.focused"),
          sameCountdownNode: await page.evaluate<boolean>("document.querySelector('tr[data-key=\"beat@prod\"] time.expires').firstChild === window.countdown"),
          rowsKept: await page.evaluate<number>("window.rows.filter((row) => row.isConnected).length"),
          rows: await page.evaluate<number>("window.rows.length"),
          countdown: await page.locator('tr[data-key="beat@prod"] time.expires').textContent(),
          top: await page.locator(anchor).evaluate((row) => row.getBoundingClientRect().top),
          scrollY: await page.evaluate<number>("window.scrollY"),
          refreshes: Number(await page.getAttribute("body", "data-refreshes")) - refreshesBefore,
        };
        measured.push(
          `10 s of updates: ${after.refreshes} refreshes; countdown "${before.countdown}" → "${after.countdown}"; ` +
            `row in view at ${before.top} → ${after.top} px, scrollY ${before.scrollY} → ${after.scrollY}`,
        );
        expect(after.refreshes).toBeGreaterThanOrEqual(4);
        expect(after.selection).toBe("127.0.0.9:9");
        expect(after.sameTextNode).toBe(true);
        expect(after.sameFocus).toBe(true);
        expect(after.sameCountdownNode).toBe(true);
        expect(after.rowsKept).toBe(after.rows);
        // What is in view stays in view: a new problem row above it (aa-late, sorted first) scrolls the page by its height.
        expect(Math.abs(after.top - before.top), "the row in view moved on the screen").toBeLessThan(1);
        expect(after.scrollY).toBeGreaterThan(400);
        const seconds = (text: string | null): number => Number(/expires in (\d+) s/.exec(text ?? "")?.[1]);
        expect(seconds(before.countdown)).toBeGreaterThan(80);
        expect(seconds(before.countdown) - seconds(after.countdown)).toBeGreaterThanOrEqual(9);
        expect(await page.locator('tr[data-key="aa-late@dev"] .value').allTextContents()).toContain(INJECTION);
        await expectNothingWrong(watched, new URL(sd.url).origin);
      } finally {
        await watched.close();
        for (let i = 0; i < 24; i++) await sd.request("DELETE", `/filler${String(i).padStart(2, "0")}/prod`);
        for (const path of ["/beat/prod", "/heart/prod", "/aa-late/dev"]) await sd.request("DELETE", path);
      }
    },
    TEST_TIMEOUT_MS,
  );
});

describe("accessibility and looks", () => {
  for (const colorScheme of ["light", "dark"] as const) {
    for (const phone of [false, true]) {
      const size = phone ? "phone" : "desktop";
      it(
        `${size}, ${colorScheme}: no serious or critical axe finding, no sideways scrolling; a screenshot to look at`,
        async () => {
          const watched = await openWatched(browser, { colorScheme, phone });
          const { page } = watched;
          await page.goto(`${sd.url}/`);
          await nextRefreshes(page);
          const findings = await axeFindings(page);
          const minor = findings.filter((finding) => finding.impact !== "serious" && finding.impact !== "critical");
          if (minor.length > 0) console.log(`axe (${size}, ${colorScheme}), minor or moderate: ${JSON.stringify(minor)}`);
          expect(findings.filter((finding) => finding.impact === "serious" || finding.impact === "critical")).toEqual([]);
          expect(await page.evaluate<number>("document.documentElement.scrollWidth")).toBeLessThanOrEqual(phone ? 390 : 1280);
          for (const [what, fullPage] of [["screen", false], ["full", true]] as const) {
            const file = join(screenshots, `page-${size}-${colorScheme}-${what}.png`);
            await page.screenshot({ path: file, fullPage });
            console.log(`screenshot (${size}, ${colorScheme}, ${what}): ${file}`);
          }
          await watched.close();
        },
        TEST_TIMEOUT_MS,
      );
    }
  }
});

describe("a Prometheus that does not answer", () => {
  it(
    `holds the first HTML at most ${HEALTH_WAIT_MS} ms, then shows the last known answer, or says there is none yet`,
    async () => {
      const html = async (service: TestService): Promise<{ ms: number; text: string; bytes: number }> => {
        const started = Date.now();
        const answer = await fetch(`${service.url}/`, { headers: { accept: "text/html" } });
        const text = await answer.text();
        return { ms: Date.now() - started, text, bytes: Buffer.byteLength(text) };
      };
      // Reachable, the cache a second old: the page asks Prometheus itself.
      await new Promise((resolve) => setTimeout(resolve, 1100));
      const reachable = await html(sd);
      expect(reachable.text).toMatch(/\(answered \d\d:\d\d:\d\d UTC\)/);
      const assets = await Promise.all(["/-/ui/app.js", "/-/ui/view.js", "/-/ui/app.css", "/-/ui/icon.svg"].map(async (path) => (await fetch(sd.url + path)).arrayBuffer()));
      measured.push(
        `first HTML with Prometheus reachable: ${reachable.ms} ms; page weight ${reachable.bytes} B HTML (5 groups) + ${assets.map((bytes) => bytes.byteLength).join(" + ")} B app.js, view.js, app.css, icon.svg, uncompressed`,
      );

      // Refused at once: a live answer that says why, no wait.
      const refusing = await startTestService({ env: { PROMETHEUS_URL: `http://${closedAddress}` } });
      try {
          await refusing.request("PUT", "/web/prod", { body: { targets: [exporterAddress] } });
          const refused = await html(refusing);
          measured.push(`first HTML with Prometheus' port closed: ${refused.ms} ms`);
          expect(refused.text).toMatch(/did not answer: <span class="source-error">[^<]*ECONNREFUSED/);
          expect(refused.text).toContain('data-health="unreachable"');
      } finally {
        await refusing.close();
      }

      // Stopped (SIGSTOP): it takes the connection and never answers.
      expect(prometheus.pid).toBeDefined();
      process.kill(prometheus.pid!, "SIGSTOP");
      const fresh = await startTestService({ directory: sd.directory, env: { PROMETHEUS_URL: prometheus.url } });
      try {
          await new Promise((resolve) => setTimeout(resolve, 1100));
          const stale = await html(sd);
          const none = await html(fresh);
          measured.push(`first HTML with Prometheus stopped: ${stale.ms} ms (last known answer), ${none.ms} ms (no answer yet)`);
          expect(stale.text).toMatch(new RegExp(`\\(no answer within ${HEALTH_WAIT_MS} ms: last known answer, from \\d\\d:\\d\\d:\\d\\d UTC\\)`));
          expect(stale.text).toContain('data-health="up"');
          expect(stale.text).toContain('class="expires"');
          expect(none.text).toContain("(no answer yet)");
          expect(none.text).not.toContain('class="health"');
          // Bounded by the page's wait, not by the status' 2 s timeout.
          for (const ms of [stale.ms, none.ms]) {
            expect(ms).toBeGreaterThanOrEqual(HEALTH_WAIT_MS - 10);
            expect(ms).toBeLessThan(1500);
          }
      } finally {
        process.kill(prometheus.pid!, "SIGCONT");
        await fresh.close();
      }
    },
    TEST_TIMEOUT_MS,
  );
});
