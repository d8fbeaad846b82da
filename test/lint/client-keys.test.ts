import { mkdir, writeFile } from "node:fs/promises";
import { join } from "node:path";
import { ESLint } from "eslint";
import tseslint from "typescript-eslint";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import clientKeys from "../../eslint/client-keys.js";
import { makeTempDir, removeDir } from "../helpers.js";

/**
 * The rule that keeps client strings out of ordinary objects' keys
 * (src/model.ts, keys from clients), on code it must refuse and code it must
 * let through, with types as in src/ and without them as in ui/.
 */
describe("eslint/client-keys", () => {
  let directory: string;
  beforeAll(async () => {
    directory = await makeTempDir("client-keys-");
    await mkdir(join(directory, "src"));
    await writeFile(join(directory, "tsconfig.json"), JSON.stringify({ compilerOptions: { strict: true, target: "ES2022", module: "NodeNext", noEmit: true }, include: ["src"] }));
  });
  afterAll(() => removeDir(directory));

  async function problems(code: string, { typed = true } = {}): Promise<string[]> {
    const file = join(directory, "src", `case-${Math.random().toString(36).slice(2)}.${typed ? "ts" : "js"}`);
    await writeFile(file, code);
    const eslint = new ESLint({
      cwd: directory,
      overrideConfigFile: true,
      overrideConfig: [
        ...(typed
          ? [{ files: ["**/*.ts"], languageOptions: { parser: tseslint.parser, parserOptions: { project: "./tsconfig.json", tsconfigRootDir: directory } } }]
          : [{ files: ["**/*.js"], languageOptions: { sourceType: "script" as const } }]),
        { plugins: { local: { rules: { "client-keys": clientKeys } } }, rules: { "local/client-keys": "error" as const } },
      ],
    });
    const [result] = await eslint.lintFiles([file]);
    return (result?.messages ?? []).map((message) => `${message.line}: ${message.message}`);
  }

  it.each([
    ["a string index read", "export function f(labels: Record<string, string>, name: string) { return labels[name]; }"],
    ["a string index write", "export function f(expires: Record<string, number>, target: string) { expires[target] = 1; }"],
    ["a delete", "export function f(expires: Record<string, number>, target: string) { delete expires[target]; }"],
    ["a template-literal key", "export function f(o: Record<string, number>, a: string) { return o[`${a}@x`]; }"],
    ["an in test", "export function f(o: object, key: string) { return key in o; }"],
    ["a for…in", "export function f(o: Record<string, number>) { let n = 0; for (const k in o) n += k.length; return n; }"],
  ])("refuses %s", async (_what, code) => {
    expect(await problems(code)).toHaveLength(1);
  });

  it.each([
    ["a Map", "export function f(m: Map<string, number>, k: string) { return m.get(k); }"],
    ["an array index", "export function f(a: string[], i: number) { return a[i]; }"],
    ["a literal key", 'export function f(o: Record<string, number>) { return o["job"]; }'],
    ["a key of a literal union", 'const RANK = { up: 2, down: 0 } as const; export function f(h: "up" | "down") { return RANK[h]; }'],
    ["a string's character", "export function f(s: string, i: number) { return s[i]; }"],
    ["Object.hasOwn", "export function f(o: object, k: string) { return Object.hasOwn(o, k); }"],
  ])("lets %s through", async (_what, code) => {
    expect(await problems(code)).toEqual([]);
  });

  it("in the browser script, refuses every computed key that is not a literal", async () => {
    expect(await problems("function f(expires, target) { return expires[target]; }", { typed: false })).toHaveLength(1);
    expect(await problems("function f(list) { return list[0] + list['x']; }", { typed: false })).toEqual([]);
  });
});
