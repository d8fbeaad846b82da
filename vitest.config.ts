import { defineConfig } from "vitest/config";

/**
 * Two projects: every test, and the HTTP API suite (test/api) once more against
 * the etcd backend, with one real three-member cluster shared by its files
 * (test/support/etcd-global.ts). The rules are the same on both backends, so
 * the same tests must pass on both.
 */
export default defineConfig({
  test: {
    testTimeout: 30_000,
    hookTimeout: 60_000,
    reporters: ["default"],
    // A test fails when a bug surfaced while it ran: an unhandled rejection, or a child service's caught one.
    setupFiles: ["test/support/no-stray-errors.ts"],
    projects: [
      { extends: true, test: { name: "all", include: ["test/**/*.test.ts"], provide: { etcdEndpoints: [] } } },
      {
        extends: true,
        test: {
          name: "api-on-etcd",
          include: ["test/api/**/*.test.ts"],
          globalSetup: ["test/support/etcd-global.ts"],
        },
      },
    ],
  },
});
