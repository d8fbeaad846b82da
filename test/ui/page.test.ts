import { createServer, type Server } from "node:http";
import type { AddressInfo } from "node:net";
import { join } from "node:path";
import type { Browser, BrowserContext, Page } from "playwright-core";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { makeTempDir, removeDir, startTestService, type TestService } from "../helpers.js";
import { launchChromium } from "../support/browser.js";
import { freePort } from "../support/ports.js";
import { startPrometheus, type RunningPrometheus } from "../support/prometheus.js";

/**
 * The page in a real headless Chromium (Debian's), against the service and a real
 * Prometheus that reads the directory and scrapes every second. Everything the
 * browser asks for must come from the service; no dialog may open; no CSP
 * violation may be logged.
 */

const INJECTION = "<img src=x onerror=alert(1)>";
const WAIT_MS = 60_000;

let directory: string;
let sd: TestService;
let prometheus: RunningPrometheus;
let exporter: Server;
let exporterAddress: string;
let closedAddress: string;
let browser: Browser;
/** Kept after the run (unlike `directory`), so the screenshots can be looked at. */
let screenshots: string;

interface Watched {
  readonly page: Page;
  readonly context: BrowserContext;
  readonly dialogs: string[];
  readonly requests: string[];
  readonly console: string[];
  readonly navigations: string[];
  violations(): Promise<string[]>;
}

async function openPage(viewport: { width: number; height: number }, mobile = false): Promise<Watched> {
  const context = await browser.newContext({ viewport, isMobile: mobile, hasTouch: mobile, deviceScaleFactor: mobile ? 2 : 1 });
  const page = await context.newPage();
  const watched = {
    page,
    context,
    dialogs: [] as string[],
    requests: [] as string[],
    console: [] as string[],
    navigations: [] as string[],
    violations: () => page.evaluate<string[]>("window.violations"),
  };
  // Added through DevTools, so the page's CSP does not apply to it.
  // Strings, not functions: they run in the page, and the tests are compiled without the DOM types.
  await page.addInitScript(
    "window.violations = []; document.addEventListener('securitypolicyviolation', (e) => window.violations.push(e.violatedDirective + ' ' + e.blockedURI));",
  );
  page.on("dialog", (dialog) => {
    watched.dialogs.push(`${dialog.type()}: ${dialog.message()}`);
    void dialog.dismiss();
  });
  page.on("request", (request) => watched.requests.push(request.url()));
  page.on("console", (message) => watched.console.push(`${message.type()}: ${message.text()} (${message.location().url})`));
  page.on("pageerror", (error) => watched.console.push(`pageerror: ${error.message}`));
  page.on("framenavigated", (frame) => {
    if (frame === page.mainFrame()) watched.navigations.push(frame.url());
  });
  return watched;
}

async function expectNothingWrong(watched: Watched): Promise<void> {
  expect(watched.dialogs).toEqual([]);
  expect(watched.console.filter((line) => /Content Security Policy|Refused to|pageerror|error:/i.test(line))).toEqual([]);
  expect(await watched.violations()).toEqual([]);
  const origin = new URL(sd.url).origin;
  expect(watched.requests.filter((url) => new URL(url).origin !== origin)).toEqual([]);
  expect(await watched.page.locator("img").count()).toBe(0);
}

/** The text of each visible row's heading, e.g. "web / prod". */
async function visibleGroups(page: Page): Promise<string[]> {
  return page.locator("#groups tbody tr:not([hidden]) th").allTextContents();
}

beforeAll(async () => {
  directory = await makeTempDir("file-sd-page-");
  screenshots = await makeTempDir("file-sd-page-screenshots-");
  exporter = createServer((request, response) => {
    if (request.url !== "/metrics") return void response.writeHead(404).end();
    response.writeHead(200, { "content-type": "text/plain; version=0.0.4" }).end("# TYPE page_probe gauge\npage_probe 1\n");
  });
  await new Promise<void>((resolve) => exporter.listen(0, "127.0.0.1", () => resolve()));
  exporterAddress = `127.0.0.1:${(exporter.address() as AddressInfo).port}`;
  closedAddress = `127.0.0.1:${await freePort()}`;
  const files = join(directory, "sd");
  prometheus = await startPrometheus({
    configYaml: `global:
  scrape_interval: 1s
  scrape_timeout: 1s
scrape_configs:
  - job_name: file_sd
    file_sd_configs:
      - files: ["${files}/*.json"]
        refresh_interval: 1s
`,
  });
  sd = await startTestService({ directory: files, env: { PROMETHEUS_URL: prometheus.url } });
  const put = async (path: string, body: unknown): Promise<void> => {
    expect((await sd.request("PUT", path, { body })).status, path).toBe(200);
  };
  await put("/web/prod", { targets: [exporterAddress], labels: { team: "core", note: INJECTION } });
  await put("/closed/staging", { targets: [closedAddress], labels: { team: "edge" } });
  // Expiring (SPEC §10): the page shows each target's deadline.
  await put("/billing/prod-hou?ttl=1h", { targets: ["127.0.0.2:9", "127.0.0.3:9"], labels: { team: "payments", tier: "api" } });
  browser = await launchChromium();
}, 120_000);

afterAll(async () => {
  await browser?.close();
  await sd?.close();
  await prometheus?.close();
  exporter?.closeAllConnections();
  await new Promise<void>((resolve) => (exporter === undefined ? resolve() : exporter.close(() => resolve())));
  await removeDir(directory);
}, 60_000);

describe("the page in a real Chromium", () => {
  it(
    "lists what is registered, shows health with the last error, filters from the keyboard, follows a PUT without a reload, and runs no registered value",
    async () => {
      const watched = await openPage({ width: 1280, height: 800 });
      const { page } = watched;
      const response = await page.goto(`${sd.url}/`);
      expect(response?.headers()["content-type"]).toBe("text/html; charset=utf-8");

      // Server-rendered, then kept by the script: the same rows either way.
      expect(await visibleGroups(page)).toEqual(["billing / prod-hou", "closed / staging", "web / prod"]);
      const web = page.locator('tr[data-key="web@prod"]');
      expect(await web.locator(".value").allTextContents()).toEqual(["web", "prod", "core", INJECTION]);
      expect(await web.locator(".target").allTextContents()).toEqual([exporterAddress]);

      // Deadlines of expiring targets, once the script has rendered the rows.
      const billing = page.locator('tr[data-key="billing@prod-hou"]');
      await billing.locator("time.expires").first().waitFor({ timeout: 10_000 });
      expect(await billing.locator("time.expires").allTextContents()).toEqual([expect.stringMatching(/^expires in (59|60) min$/), expect.stringMatching(/^expires in (59|60) min$/)]);
      expect(await web.locator("time.expires").count()).toBe(0);

      // Health: the exporter comes up, the closed port goes down with Prometheus' error.
      const started = Date.now();
      await web.locator('.health[data-health="up"]').waitFor({ timeout: WAIT_MS });
      const closed = page.locator('tr[data-key="closed@staging"]');
      await closed.locator('.health[data-health="down"]').waitFor({ timeout: WAIT_MS });
      console.log(`page showed up and down ${Date.now() - started} ms after loading`);
      expect(await closed.locator(".error").textContent()).toMatch(/connection refused/);
      expect(await web.locator(".health .word").textContent()).toBe("up");

      // Keyboard: the filter is the first thing Tab reaches, and it narrows the rows as one types.
      await page.keyboard.press("Tab");
      expect(await page.evaluate<string>("document.activeElement.id")).toBe("filter");
      await page.keyboard.type("payments");
      expect(await visibleGroups(page)).toEqual(["billing / prod-hou"]);
      expect(await page.locator("#summary").textContent()).toMatch(/^1 of 3 application\/environments shown, 2 targets/);
      await page.locator("#filter").fill("prod core");
      expect(await visibleGroups(page)).toEqual(["web / prod"]);
      await page.locator("#filter").fill("");
      expect(await visibleGroups(page)).toHaveLength(3);

      // A PUT elsewhere shows up without a reload, through the script's own rendering, still as text.
      await page.locator("#filter").fill("late");
      expect(await visibleGroups(page)).toEqual([]);
      const put = await sd.request("PUT", "/late/dev", {
        body: { targets: [closedAddress], labels: { [`x_${"y".repeat(5)}`]: `"><script>alert(2)</script>`, owner: INJECTION } },
      });
      expect(put.status).toBe(200);
      const putAt = Date.now();
      await page.locator('tr[data-key="late@dev"]:not([hidden])').waitFor({ timeout: 10_000 });
      console.log(`page showed the PUT ${Date.now() - putAt} ms after its answer`);
      expect(await visibleGroups(page)).toEqual(["late / dev"]);
      expect(await page.locator('tr[data-key="late@dev"] .value').allTextContents()).toEqual([
        "late",
        "dev",
        `"><script>alert(2)</script>`,
        INJECTION,
      ]);
      expect(await page.locator("script:not([src])").count()).toBe(0);
      expect(await page.locator("img").count()).toBe(0);
      expect(watched.navigations).toHaveLength(1);

      await page.locator("#filter").fill("");
      await page.locator('tr[data-key="late@dev"] .health[data-health="down"]').waitFor({ timeout: WAIT_MS });
      const desktop = join(screenshots, "page-desktop.png");
      await page.screenshot({ path: desktop, fullPage: true });
      console.log(`screenshot (desktop): ${desktop}`);

      await page.waitForTimeout(2500); // one more refresh, for the checks below
      await expectNothingWrong(watched);
      await watched.context.close();
    },
    120_000,
  );

  it(
    "fits a phone: no sideways scrolling, and the same content",
    async () => {
      const watched = await openPage({ width: 390, height: 844 }, true);
      const { page } = watched;
      await page.goto(`${sd.url}/`);
      await page.locator('tr[data-key="web@prod"] .health[data-health="up"]').waitFor({ timeout: WAIT_MS });
      expect(await page.evaluate<number>("document.documentElement.scrollWidth")).toBeLessThanOrEqual(390);
      const phone = join(screenshots, "page-phone.png");
      await page.screenshot({ path: phone, fullPage: true });
      console.log(`screenshot (phone): ${phone}`);
      await expectNothingWrong(watched);
      await watched.context.close();
    },
    120_000,
  );
});
