import { createHash } from "node:crypto";
import { writeFile } from "node:fs/promises";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { CONTENT_SECURITY_POLICY, prefersHtml } from "../../src/handlers/page.js";
import { makeTempDir, removeDir, startTestService, type TestService } from "../helpers.js";

/** Who gets the page and who gets JSON at `/`, and what the page's HTML holds before any script runs. */

const CHROME = "text/html,application/xhtml+xml,application/xml;q=0.9,image/avif,image/webp,image/apng,*/*;q=0.8,application/signed-exchange;v=b3;q=0.7";
const FIREFOX = "text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8";
const INJECTION = "<img src=x onerror=alert(1)>";

describe("prefersHtml", () => {
  it.each([
    [CHROME, true],
    [FIREFOX, true],
    ["text/html", true],
    ["text/*", true],
    ["text/html;q=0.9, application/json;q=0.8", true],
    [undefined, false],
    ["", false],
    ["*/*", false],
    ["application/json", false],
    ["application/json, text/html", false],
    ["text/html, application/json", false],
    ["text/html;q=0.5, */*", false],
    ["text/html;q=0, */*;q=0.1", false],
    ["application/*, text/html;q=0.9", false],
  ])("Accept: %s → html %s", (accept, html) => {
    expect(prefersHtml(accept)).toBe(html);
  });
});

describe("GET / with content negotiation", () => {
  let service: TestService;
  beforeAll(async () => {
    service = await startTestService();
    await service.request("PUT", "/billing/prod", { body: { targets: ["b1:9100", "b2:9100"], labels: { team: "core", note: INJECTION } } });
  });
  afterAll(async () => {
    await service.close();
  });

  it("curl, scripts and a tie keep the JSON index; it varies with Accept", async () => {
    for (const accept of ["*/*", "application/json", "text/html, application/json"]) {
      const answer = await fetch(`${service.url}/`, { headers: { accept } });
      expect(answer.headers.get("content-type"), accept).toBe("application/json; charset=utf-8");
      expect(answer.headers.get("vary")).toBe("Accept");
      expect(((await answer.json()) as { groups: unknown[] }).groups).toHaveLength(1);
    }
  });

  it("a browser gets the page with a strict CSP, every registered value escaped, even without script", async () => {
    const answer = await fetch(`${service.url}/`, { headers: { accept: FIREFOX } });
    expect(answer.status).toBe(200);
    expect(answer.headers.get("content-type")).toBe("text/html; charset=utf-8");
    expect(answer.headers.get("content-security-policy")).toBe(CONTENT_SECURITY_POLICY);
    expect(answer.headers.get("x-content-type-options")).toBe("nosniff");
    expect(answer.headers.get("vary")).toBe("Accept");
    const html = await answer.text();
    expect(html).toContain('<meta name="viewport" content="width=device-width, initial-scale=1">');
    expect(html).toContain('<span class="name">note</span>=<span class="value">&lt;img src=x onerror=alert(1)&gt;</span>');
    expect(html).not.toContain(INJECTION);
    expect(html).toContain('<span class="target">b1:9100</span>');
    // Nothing inline: no style or script element with content, no on… attributes, no outside URL.
    expect(html).not.toMatch(/<script(?! type="module" src="\/-\/ui\/app\.js"><\/script>)/);
    expect(html).not.toMatch(/<style|<[^>]*\son[a-z]+=|\ssrc="(?!\/-\/ui\/)|<link(?![^>]*href="\/-\/ui\/)/);
    // Links to outside (a target's scrape URL) are only ever <a href>, opened by a person.
    expect(html).toContain('<a class="scrape" href="http://b1:9100/metrics"');
    expect(html).toContain("health needs PROMETHEUS_URL");
  });

  it("serves the scripts, the stylesheet and the icon from /-/ui/ with their types", async () => {
    for (const [path, type] of [
      ["/-/ui/app.js", "text/javascript; charset=utf-8"],
      ["/-/ui/view.js", "text/javascript; charset=utf-8"],
      ["/-/ui/app.css", "text/css; charset=utf-8"],
      ["/-/ui/icon.svg", "image/svg+xml"],
    ] as const) {
      const answer = await fetch(service.url + path);
      expect(answer.status, path).toBe(200);
      expect(answer.headers.get("content-type")).toBe(type);
      expect((await answer.text()).length).toBeGreaterThan(50);
    }
    expect((await service.request("GET", "/-/ui/other.js")).status).toBe(404);
  });
});

describe("the page follows the read policy of /", () => {
  it("with read: token a browser without the token gets the 401, the assets stay public", async () => {
    const directory = await makeTempDir();
    const tokensFile = join(directory, "tokens.yaml");
    const token = "a".repeat(64);
    await writeFile(tokensFile, `read: token\ntokens:\n  - name: reader\n    sha256: ${createHash("sha256").update(token).digest("hex")}\n`);
    const service = await startTestService({ env: { AUTH_TOKENS_FILE: tokensFile } });
    try {
      expect((await fetch(`${service.url}/`, { headers: { accept: CHROME } })).status).toBe(401);
      const allowed = await fetch(`${service.url}/`, { headers: { accept: CHROME, authorization: `Bearer ${token}` } });
      expect(allowed.status).toBe(200);
      expect(allowed.headers.get("content-type")).toBe("text/html; charset=utf-8");
      expect((await fetch(`${service.url}/-/status`)).status).toBe(401);
      expect((await fetch(`${service.url}/x/y/status`)).status).toBe(401);
      expect((await fetch(`${service.url}/-/ui/app.js`)).status).toBe(200);
    } finally {
      await service.close();
      await removeDir(directory);
    }
  });
});
