import { readFileSync } from "node:fs";
import { createRequire } from "node:module";
import { chromium, type Browser, type BrowserContext, type BrowserContextOptions, type Page } from "playwright-core";
import { expect } from "vitest";
import { findChromium } from "./tools.js";

/**
 * Debian's headless chromium through playwright-core (which never downloads a browser).
 * Flags: no sandbox (CI containers run as root), nothing that calls home.
 */
export async function launchChromium(): Promise<Browser> {
  return chromium.launch({
    executablePath: findChromium(),
    headless: true,
    timeout: 60_000,
    args: [
      "--headless",
      "--no-sandbox",
      "--disable-gpu",
      "--disable-quic",
      "--no-first-run",
      "--disable-background-networking",
      "--disable-component-update",
      "--disable-sync",
    ],
  });
}

export const DESKTOP = { width: 1280, height: 800 } as const;
export const PHONE = { width: 390, height: 844 } as const;

/** A page with everything that could go wrong in it recorded: dialogs, requests, console errors, CSP violations. */
export interface Watched {
  readonly page: Page;
  readonly context: BrowserContext;
  readonly dialogs: string[];
  readonly requests: string[];
  readonly console: string[];
  readonly navigations: string[];
  violations(): Promise<string[]>;
  close(): Promise<void>;
}

export async function openWatched(browser: Browser, options: BrowserContextOptions & { phone?: boolean } = {}): Promise<Watched> {
  const { phone = false, ...rest } = options;
  const context = await browser.newContext({
    viewport: phone ? PHONE : DESKTOP,
    isMobile: phone,
    hasTouch: phone,
    deviceScaleFactor: phone ? 2 : 1,
    ...rest,
  });
  const page = await context.newPage();
  const watched: Watched = {
    page,
    context,
    dialogs: [],
    requests: [],
    console: [],
    navigations: [],
    violations: () => page.evaluate<string[]>("window.violations || []"),
    close: () => context.close(),
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

/** No dialog, no script error, no CSP violation, nothing asked of another origin, no image. */
export async function expectNothingWrong(watched: Watched, origin: string): Promise<void> {
  expect(watched.dialogs).toEqual([]);
  expect(watched.console.filter((line) => /Content Security Policy|Refused to|pageerror|error:/i.test(line))).toEqual([]);
  expect(await watched.violations()).toEqual([]);
  expect(watched.requests.filter((url) => new URL(url).origin !== origin)).toEqual([]);
  expect(await watched.page.locator("img").count()).toBe(0);
}

/** How many refreshes the page's script has finished (it counts them on <body>). */
export async function refreshesOf(page: Page): Promise<number> {
  return Number((await page.getAttribute("body", "data-refreshes")) ?? "0");
}

/** Waits until the script has finished `count` more refreshes than now (polled: the page's CSP forbids waitForFunction's eval). */
export async function nextRefreshes(page: Page, count = 1, timeoutMs = 15_000): Promise<void> {
  const target = (await refreshesOf(page)) + count;
  const started = Date.now();
  while ((await refreshesOf(page)) < target) {
    if (Date.now() - started > timeoutMs) throw new Error(`the page's script did not finish ${count} more refresh(es) within ${timeoutMs} ms`);
    await page.waitForTimeout(50);
  }
}

export interface AxeFinding {
  readonly id: string;
  readonly impact: string | null;
  readonly help: string;
  readonly nodes: string[];
}

const axeSource = readFileSync(createRequire(import.meta.url).resolve("axe-core/axe.min.js"), "utf8");

/**
 * axe-core's findings on the page as it is. Injected through DevTools (the page's CSP allows
 * no inline script, and must not be loosened for a test).
 */
export async function axeFindings(page: Page): Promise<AxeFinding[]> {
  await page.evaluate(axeSource);
  return page.evaluate<AxeFinding[]>(
    "axe.run(document, { resultTypes: ['violations'] }).then((result) => result.violations.map((v) => ({ id: v.id, impact: v.impact, help: v.help, nodes: v.nodes.map((n) => n.target.join(' ')).slice(0, 5) })))",
  );
}
