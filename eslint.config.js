import js from "@eslint/js";
import tseslint from "typescript-eslint";
import clientKeys from "./eslint/client-keys.js";

const project = { plugins: { local: { rules: { "client-keys": clientKeys } } } };

export default tseslint.config(
  { ignores: ["dist/", "dist-bench/", "node_modules/", "coverage/", "file_sd/"] },
  js.configs.recommended,
  ...tseslint.configs.recommended,
  {
    // The page's script runs in the browser as a classic script (ui/app.js, no build step).
    files: ["ui/**/*.js"],
    languageOptions: {
      sourceType: "script",
      globals: { document: "readonly", fetch: "readonly", setTimeout: "readonly" },
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
