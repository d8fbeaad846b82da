import type { Browser } from "playwright-core";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { startTestService, type TestService } from "../helpers.js";
import { expectNothingWrong, launchChromium, nextRefreshes, openWatched } from "../support/browser.js";

/**
 * `__proto__`, `constructor`, `toString`… are valid applications, environments,
 * targets, label names and label values. With them registered (targets with a ttl
 * among them) the page must show them as they are and keep updating: its script
 * once threw `iso.slice is not a function` on a target `__proto__` with a ttl and
 * stopped for every group.
 */

const NAMES = ["__proto__", "constructor", "toString", "hasOwnProperty", "valueOf"] as const;

let sd: TestService;
let browser: Browser;

beforeAll(async () => {
  [sd, browser] = await Promise.all([startTestService(), launchChromium()]);
  const register = async (method: string, path: string, body: unknown): Promise<void> => {
    const answer = await sd.request(method, path, { body });
    expect(answer.status, `${method} ${path}: ${JSON.stringify(answer.body)}`).toBe(200);
  };
  // Targets with ?ttl=, in an ordinary group.
  await register("PUT", "/special/targets?ttl=1h", { targets: NAMES.map((name) => `${name}:9100`) });
  await register("POST", "/special/targets?ttl=30m", { targets: [...NAMES] });
  // As label names and values.
  await register("PUT", "/special/labels", { targets: ["host1:9100"], labels: Object.fromEntries(NAMES.map((name) => [name, name])) });
  // As application and environment.
  for (const name of NAMES) await register("PUT", `/${name}/${name}?ttl=1h`, { targets: [`${name}:1`], labels: { team: name } });
  // As probes: the names as application, environment, URL host, path and query, and labels.
  for (const name of NAMES) {
    await register("PUT", `/${name}/${name}/probes?ttl=1h`, { targets: [`https://${name}/${name}?${name}=${name}`, `${name}:443`], labels: { [name]: name } });
  }
}, 120_000);

afterAll(async () => {
  await browser?.close();
  await sd?.close();
}, 60_000);

describe("the page with JavaScript-special names registered", () => {
  it(
    "shows them as they are, scrape groups and probes, with their deadlines, filters on them, and keeps updating",
    async () => {
      const watched = await openWatched(browser);
      const { page } = watched;
      await page.goto(`${sd.url}/`);
      await nextRefreshes(page, 2);

      const targets = page.locator('tr[data-key="special@targets"]');
      expect(await targets.locator(".target").allTextContents()).toEqual([...NAMES.map((name) => `${name}:9100`), ...NAMES]);
      // Every one of them has its own deadline: 1 h for the first five, 30 min for the bare names.
      const deadlines = await targets.locator("time.expires").allTextContents();
      expect(deadlines).toEqual([...NAMES.map(() => expect.stringMatching(/^expires in (59|60) min$/)), ...NAMES.map(() => expect.stringMatching(/^expires in (29|30) min$/))]);
      const labels = page.locator('tr[data-key="special@labels"]');
      expect(await labels.locator(".labels li").allTextContents()).toEqual(["job=special", "env=labels", ...NAMES.map((name) => `${name}=${name}`)]);
      for (const name of NAMES) {
        const row = page.locator(`tr[data-key="${name}@${name}"]`);
        expect(await row.locator(".application").textContent()).toBe(name);
        expect(await row.locator(".environment").textContent()).toBe(name);
        expect(await row.locator("time.expires").textContent()).toMatch(/^expires in (59|60) min$/);
        expect(await row.locator(".links a").first().getAttribute("href")).toBe(`/${name}/${name}`);
      }

      // The filter: plain words, name=value, expiring.
      for (const name of NAMES) {
        await page.locator("#filter").fill(`${name}=${name}`);
        expect(await page.locator("#rows > tr:not([hidden])").evaluateAll((rows) => rows.map((row) => row.getAttribute("data-key"))), name).toEqual(["special@labels"]);
        await page.locator("#filter").fill(`team=${name}`);
        expect(await page.locator("#rows > tr:not([hidden])").evaluateAll((rows) => rows.map((row) => row.getAttribute("data-key"))), name).toEqual([`${name}@${name}`]);
      }
      await page.locator("#filter").fill("");

      // Still updating: a new registration and a renewal show up without a reload.
      expect((await sd.request("PUT", "/late/dev", { body: { targets: ["host2:9100"] } })).status).toBe(200);
      expect((await sd.request("POST", "/special/targets?ttl=90s", { body: { targets: ["__proto__"] } })).status).toBe(200);
      await page.locator('tr[data-key="late@dev"]').waitFor({ timeout: 10_000 });
      await page.locator('tr[data-key="special@targets"] li[data-key="__proto__"] time.expires', { hasText: /^expires in \d+ s$/ }).waitFor({ timeout: 10_000 });
      expect(await page.locator("#summary").textContent()).toMatch(/^8 groups, 17 targets · health needs PROMETHEUS_URL · 15 expiring$/);
      // The probe groups of the same names, apart, with their URLs and deadlines.
      expect(await page.locator("#probe-summary").textContent()).toBe("5 groups, 10 probes (blackbox_exporter) · 10 expiring");
      for (const name of NAMES) {
        const row = page.locator(`#probe-rows tr[data-key="probes/${name}@${name}"]`);
        expect(await row.locator(".target").allTextContents()).toEqual([`https://${name}/${name}?${name}=${name}`, `${name}:443`]);
        expect(await row.locator("time.expires").count()).toBe(2);
        expect(await row.locator(".labels li").allTextContents()).toEqual([`job=${name}`, `env=${name}`, `${name}=${name}`]);
        expect(await row.locator(".links a").first().getAttribute("href")).toBe(`/${name}/${name}/probes`);
      }
      await page.locator("#filter").fill("__proto__=__proto__");
      expect(await page.locator("#probe-rows > tr:not([hidden])").evaluateAll((rows) => rows.map((row) => row.getAttribute("data-key")))).toEqual(["probes/__proto__@__proto__"]);
      await page.locator("#filter").fill("");
      await nextRefreshes(page, 2);
      await expectNothingWrong(watched, new URL(sd.url).origin);
      await watched.close();
    },
    60_000,
  );
});
