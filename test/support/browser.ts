import { chromium, type Browser } from "playwright-core";
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
