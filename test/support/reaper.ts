import type { ChildProcess } from "node:child_process";

/**
 * Every server a test starts (the built service, etcd members) dies with the
 * test process: a test that fails before its `afterAll` or `finally` must
 * still not leave servers behind.
 */
const live = new Set<ChildProcess>();
let exitHookInstalled = false;

export function killOnExit(child: ChildProcess): void {
  if (!exitHookInstalled) {
    exitHookInstalled = true;
    process.once("exit", () => {
      for (const running of live) running.kill("SIGKILL");
    });
  }
  live.add(child);
  child.once("exit", () => live.delete(child));
}
