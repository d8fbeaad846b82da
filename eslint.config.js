import js from "@eslint/js";
import tseslint from "typescript-eslint";

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
);
