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
  let cases = 0;
  beforeAll(async () => {
    directory = await makeTempDir("client-keys-");
  });
  afterAll(() => removeDir(directory));

  /**
   * Each case in a project of its own: typescript-eslint keeps the programs
   * it built for the process, and a file written after its project's program
   * was built is "not found in any of the provided projects".
   */
  async function problems(code: string, { typed = true } = {}): Promise<string[]> {
    const root = join(directory, `case-${++cases}`);
    await mkdir(join(root, "src"), { recursive: true });
    const file = join(root, "src", `case.${typed ? "ts" : "js"}`);
    await writeFile(file, code);
    await writeFile(join(root, "tsconfig.json"), JSON.stringify({ compilerOptions: { strict: true, target: "ES2022", module: "NodeNext", noEmit: true }, files: ["src/case.ts"] }));
    const eslint = new ESLint({
      cwd: root,
      overrideConfigFile: true,
      overrideConfig: [
        ...(typed
          ? [{ files: ["**/*.ts"], languageOptions: { parser: tseslint.parser, parserOptions: { project: "./tsconfig.json", tsconfigRootDir: root } } }]
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
    const found = await problems(code);
    expect(found).toHaveLength(1);
    expect(found[0]).toMatch(/keys from clients/);
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
    const found = await problems("function f(expires, target) { return expires[target]; }", { typed: false });
    expect(found).toHaveLength(1);
    expect(found[0]).toMatch(/keys from clients/);
    expect(await problems("function f(list) { return list[0] + list['x']; }", { typed: false })).toEqual([]);
  });
});
