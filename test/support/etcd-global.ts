import type { TestProject } from "vitest/node";
import { startEtcdCluster, type EtcdCluster } from "./etcd.js";

/**
 * For the `etcd` project of vitest.config.ts: one real three-member etcd
 * cluster for every test file of the API suite, which then runs against the
 * etcd backend. Each test service gets a prefix of its own (test/helpers.ts),
 * so files running in parallel never see each other's groups.
 */
let cluster: EtcdCluster | undefined;

export async function setup(project: TestProject): Promise<void> {
  cluster = await startEtcdCluster();
  project.provide("etcdEndpoints", [...cluster.endpoints]);
}

export async function teardown(): Promise<void> {
  await cluster?.stop();
}

declare module "vitest" {
  export interface ProvidedContext {
    /** Client URLs of the shared cluster; empty outside the `etcd` project. */
    etcdEndpoints: string[];
  }
}
