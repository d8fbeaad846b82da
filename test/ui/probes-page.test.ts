import { join } from "node:path";
import type { Browser, Page } from "playwright-core";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { eventually, makeTempDir, removeDir, startTestService, type TestService } from "../helpers.js";
import { axeFindings, expectNothingWrong, launchChromium, nextRefreshes, openWatched } from "../support/browser.js";
import { startProbeStack, type ProbeStack } from "../support/probe-stack.js";
import type { RunningPrometheus } from "../support/prometheus.js";

/**
 * The page's probes, in a real headless Chromium, with their results from a real
 * blackbox_exporter through a real Prometheus (docs/probes.md's job, a scrape a second):
 * a URL this test serves answers 200, another 500, a closed port refuses. The probe groups
 * are listed apart from the scrape groups, problems first, each URL with its result, and
 * the script keeps them current in place.
 */

const TEST_TIMEOUT_MS = 120_000;
const INJECTION = "<img src=x onerror=alert(1)>";

let directory: string;
let stack: ProbeStack;
let okUrl: string;
let failUrl: string;
let refusedUrl: string;
let prometheus: RunningPrometheus;
let sd: TestService;
let browser: Browser;
/** Kept after the run, so the screenshots can be looked at. */
let screenshots: string;

beforeAll(async () => {
  directory = await makeTempDir("file-sd-probes-page-");
  screenshots = await makeTempDir("file-sd-probes-page-screenshots-");
  [stack, browser] = await Promise.all([startProbeStack(directory, { failPath: "/broken?deep=1,2" }), launchChromium()]);
  ({ okUrl, failUrl, refusedUrl, prometheus } = stack);
  const port = stack.webPort;
  sd = await startTestService({ directory, env: { PROMETHEUS_URL: prometheus.url } });
  const put = async (path: string, body: unknown): Promise<void> => {
    expect((await sd.request("PUT", path, { body })).status, path).toBe(200);
  };
  await put("/web/prod", { targets: [`127.0.0.1:${port}`], labels: { team: "core" } });
  await put("/web/prod/probes", { targets: [okUrl], labels: { __param_module: "http_2xx", note: INJECTION } });
  await put("/shop/prod/probes?ttl=1h", { targets: [failUrl, refusedUrl], labels: { team: "shop" } });
  // Until each probe has a result: up or down, nothing unknown or missing.
  await eventually(
    async () => {
      const answer = (await sd.request("GET", "/-/status?kind=probes")).body as { groups: { targets: { servers: { health: string; probe?: unknown }[] }[] }[] };
      return answer.groups.flatMap((group) => group.targets.flatMap((target) => target.servers)).every((server) => server.probe !== undefined);
    },
    60_000,
    "every probe to have a result",
  );
}, 120_000);

afterAll(async () => {
  await browser?.close();
  await sd?.close();
  await stack?.close();
  if (directory !== undefined) await removeDir(directory);
}, 60_000);

/** The visible probe rows' application / environment, in order. */
async function probeGroups(page: Page): Promise<string[]> {
  return page.locator("#probe-rows > tr:not([hidden])").evaluateAll((rows) =>
    rows.map((row) => `${row.querySelector(".application")?.textContent} / ${row.querySelector(".environment")?.textContent}`),
  );
}

describe("the page's probes", () => {
  it(
    "the first HTML lists the probe groups apart, problems first, each URL with its result and the reason it failed",
    async () => {
      const watched = await openWatched(browser, { javaScriptEnabled: false });
      const { page } = watched;
      await page.goto(`${sd.url}/`);
      // The scrape group stays in its own table; the probes are under their heading.
      expect(await page.locator("#rows > tr").count()).toBe(1);
      expect(await page.locator("#probes h2").textContent()).toBe("Probes");
      expect(await probeGroups(page)).toEqual(["shop / prod", "web / prod"]);
      expect(await page.locator("#probe-summary").textContent()).toBe("2 groups, 3 probes (blackbox_exporter) · 1 up · 2 down · 2 expiring");
      // The problems toggle counts the failing probes too.
      expect(await page.locator("#problems").textContent()).toBe("Only problems (2)");

      const shop = page.locator('#probe-rows tr[data-key="probes/shop@prod"]');
      expect(await shop.getAttribute("class")).toBe("problem");
      const failing = shop.locator(`li[data-key="${failUrl}"]`);
      expect(await failing.locator(".target").textContent()).toBe(failUrl);
      expect(await failing.locator(".health").getAttribute("data-health")).toBe("down");
      expect(await failing.locator(".probe-result").textContent()).toMatch(/^HTTP 500 · <?\d+ ms$/);
      expect(await failing.locator(".error").textContent()).toBe("the probe failed: HTTP status 500 (the exporter's log of it)");
      expect(await failing.locator(".error a.debug").getAttribute("href")).toBe(`http://${stack.exporter.address}/probe?target=${encodeURIComponent(failUrl)}&debug=true`);
      const refused = shop.locator(`li[data-key="${refusedUrl}"]`);
      expect(await refused.locator(".probe-result").textContent()).toMatch(/^no HTTP answer · <?\d+ ms$/);
      expect(await refused.locator(".error").textContent()).toMatch(/^the probe failed: no HTTP answer \(connection refused, DNS, TLS or timeout\) \(the exporter's log of it\)$/);
      expect(await shop.locator("time.expires").count()).toBe(2);

      const ok = page.locator('#probe-rows tr[data-key="probes/web@prod"]');
      expect(await ok.locator(".health .word").allTextContents()).toEqual(["up"]);
      expect(await ok.locator(".probe-result").textContent()).toMatch(/^HTTP 200 · <?\d+ ms$/);
      expect(await ok.locator(".value").allTextContents()).toEqual(["web", "prod", "http_2xx", INJECTION]);
      // No scrape link for a probe: what Prometheus scrapes is the exporter, not the URL.
      expect(await ok.locator("a.scrape").count()).toBe(0);
      expect(await ok.locator(".links a").evaluateAll((links) => links.map((link) => link.getAttribute("href")))).toEqual(["/web/prod/probes", "/web/prod/probes/status"]);
      for (const path of ["/web/prod/probes", "/web/prod/probes/status"]) expect((await sd.request("GET", path)).status, path).toBe(200);
      await expectNothingWrong(watched, new URL(sd.url).origin);
      await watched.close();
    },
    TEST_TIMEOUT_MS,
  );

  it(
    "the script changes nothing that did not change, then shows a new probe and its result in place, and filters probes like targets",
    async () => {
      const watched = await openWatched(browser);
      const { page } = watched;
      await page.goto(`${sd.url}/`);
      const first = await page.locator("#probes").evaluate((section) => section.outerHTML.replace(/(<time class="expires"[^>]*>)[^<]*</g, "$1…<"));
      await page.evaluate("window.kept = document.querySelector('#probe-rows tr')");
      await nextRefreshes(page, 2);
      const refreshed = await page.locator("#probes").evaluate((section) => section.outerHTML.replace(/(<time class="expires"[^>]*>)[^<]*</g, "$1…<"));
      // Durations change from probe to probe; nothing else may.
      const withoutDurations = (html: string): string => html.replace(/(&lt;)?\d+ ms</g, "… ms<");
      expect(withoutDurations(refreshed)).toBe(withoutDurations(first));

      expect((await sd.request("POST", "/web/prod/probes", { body: { targets: [`${okUrl}?again=1`] } })).status).toBe(200);
      const added = page.locator(`#probe-rows li[data-key="${okUrl}?again=1"]`);
      await eventually(async () => (await added.locator('.health[data-health="up"]').count()) === 1, 30_000, "the new probe to be up on the page");
      expect(await page.evaluate<boolean>("window.kept === document.querySelector('#probe-rows tr')")).toBe(true);
      expect(await page.locator("#probe-summary").textContent()).toBe("2 groups, 4 probes (blackbox_exporter) · 2 up · 2 down · 2 expiring");

      await page.locator("#filter").fill("health:down");
      expect(await probeGroups(page)).toEqual(["shop / prod"]);
      expect(await page.locator("#rows > tr:not([hidden])").count()).toBe(0);
      await page.locator("#filter").fill("again");
      expect(await probeGroups(page)).toEqual(["web / prod"]);
      expect(await page.locator("#probe-rows li:not([hidden]) .target").allTextContents()).toEqual([`${okUrl}?again=1`]);
      await page.locator("#filter").fill("");
      await expectNothingWrong(watched, new URL(sd.url).origin);
      await watched.close();
      expect((await sd.request("DELETE", "/web/prod/probes", { body: { targets: [`${okUrl}?again=1`] } })).status).toBe(200);
    },
    TEST_TIMEOUT_MS,
  );

  for (const colorScheme of ["light", "dark"] as const) {
    for (const phone of [false, true]) {
      const size = phone ? "phone" : "desktop";
      it(
        `${size}, ${colorScheme}: no serious or critical axe finding, no sideways scrolling; a screenshot of the probes to look at`,
        async () => {
          const watched = await openWatched(browser, { colorScheme, phone });
          const { page } = watched;
          await page.goto(`${sd.url}/`);
          await nextRefreshes(page);
          const findings = await axeFindings(page);
          expect(findings.filter((finding) => finding.impact === "serious" || finding.impact === "critical")).toEqual([]);
          expect(await page.evaluate<number>("document.documentElement.scrollWidth")).toBeLessThanOrEqual(phone ? 390 : 1280);
          const file = join(screenshots, `probes-${size}-${colorScheme}.png`);
          await page.screenshot({ path: file, fullPage: true });
          console.log(`screenshot (${size}, ${colorScheme}): ${file}`);
          await watched.close();
        },
        TEST_TIMEOUT_MS,
      );
    }
  }
});
