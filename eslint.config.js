import js from "@eslint/js";
import tseslint from "typescript-eslint";
import clientKeys from "./eslint/client-keys.js";

const project = { plugins: { local: { rules: { "client-keys": clientKeys } } } };

export default tseslint.config(
  { ignores: ["dist/", "dist-bench/", "node_modules/", "coverage/", "file_sd/"] },
  js.configs.recommended,
  ...tseslint.configs.recommended,
  {
    // The page's scripts run in the browser as modules (ui/app.js, no build step); ui/view.js runs in Node too.
    files: ["ui/**/*.js"],
    languageOptions: {
      sourceType: "module",
      globals: Object.fromEntries(
        ["document", "window", "fetch", "setTimeout", "clearTimeout", "setInterval", "Node", "Element", "HTMLElement", "URL", "URLSearchParams"].map((name) => [name, "readonly"]),
      ),
    },
  },
  {
    rules: {
      "@typescript-eslint/no-explicit-any": "error",
      "@typescript-eslint/no-unused-vars": ["error", { argsIgnorePattern: "^_" }],
    },
  },
  // Keys from clients (src/model.ts): checked with types in src/, by syntax alone in the browser script.
  {
    ...project,
    files: ["src/**/*.ts"],
    languageOptions: { parserOptions: { projectService: true, tsconfigRootDir: import.meta.dirname } },
    rules: { "local/client-keys": "error" },
  },
  { ...project, files: ["ui/**/*.js"], rules: { "local/client-keys": "error" } },
);
