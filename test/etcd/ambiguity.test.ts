import { randomUUID } from "node:crypto";
import { createServer, type Server } from "node:http";
import type { AddressInfo } from "node:net";
import type { Namespace } from "etcd3";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { createApp } from "../../src/app.js";
import { loadConfig } from "../../src/config.js";
import { connectEtcd } from "../../src/etcdstore/client.js";
import { EtcdStore } from "../../src/etcdstore/etcd-store.js";
import { Directory } from "../../src/directory/directory.js";
import { DirectoryView } from "../../src/directory/view.js";
import { eventually, makeTempDir, removeDir, request, silentLogger, startTestService, waitUntilReady, type TestService } from "../helpers.js";
import { startEtcdCluster, type EtcdCluster } from "../support/etcd.js";

/**
 * A transaction that reached etcd and was applied, whose answer was lost (a
 * member died mid-call): the instance sends it again. This injects the worst
 * order — the first attempt applied, then another instance's change to the
 * same group, then the retry — into a real cluster, and checks the change is
 * applied once: its answer is a 200, and what the other instance did after it
 * stands.
 */
describe("a change whose first attempt landed but whose answer was lost", () => {
  let cluster: EtcdCluster;
  let other: TestService;
  let server: Server;
  let url: string;
  let close: () => Promise<void>;
  const prefix = `/ambiguity-${randomUUID()}/`;
  /** Runs between the real commit of the next transaction and the error its caller sees instead of the answer. */
  let afterNextCommit: (() => Promise<void>) | undefined;

  beforeAll(async () => {
    cluster = await startEtcdCluster();
    const env = { ETCD_ENDPOINTS: cluster.endpoints.join(","), ETCD_PREFIX: prefix, ETCD_TIMEOUT: "5s" };
    other = await startTestService({ env });
    // The instance under test, built from its parts so that its etcd namespace can lose one answer.
    const directory = await makeTempDir();
    const config = loadConfig({ ...env, FILE_SD_DIRECTORY: directory });
    const { client, namespace } = await connectEtcd(config.etcd!);
    const view = await DirectoryView.open(await Directory.open(directory, silentLogger), silentLogger);
    const store = EtcdStore.open({ config: config.etcd!, client, namespace: losingOneAnswer(namespace, () => afterNextCommit), view, logger: silentLogger });
    server = createServer(createApp({ store, logger: silentLogger, maxBodyBytes: 1024 * 1024, readiness: store }).callback());
    await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", () => resolve()));
    url = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
    await waitUntilReady(url);
    close = async () => {
      await new Promise((resolve) => server.close(resolve));
      await store.close();
      await removeDir(directory);
    };
  });
  afterAll(async () => {
    await close?.();
    await other?.close();
    await cluster?.stop();
  });

  it("a POST whose answer was lost, then another instance's DELETE of its target: 200 once, and the DELETE stands", async () => {
    expect((await request(url, "PUT", "/amb/prod", { body: "targets=base:1" })).status).toBe(200);
    await eventually(async () => (await other.fileOf("amb", "prod")) !== undefined, 2000, "the group on the other instance");
    let deleted: number | undefined;
    afterNextCommit = async () => {
      afterNextCommit = undefined;
      // The POST is in etcd: the other instance sees x:1, and removes it, before the retry.
      await eventually(async () => JSON.stringify((await other.request("GET", "/amb/prod")).body).includes("x:1"), 2000, "x:1 on the other instance");
      deleted = (await other.request("DELETE", "/amb/prod", { body: "targets=x:1" })).status;
    };
    const post = await request(url, "POST", "/amb/prod", { body: "targets=x:1" });
    expect(deleted).toBe(200);
    expect(post.status, JSON.stringify(post.body)).toBe(200);
    expect(post.body).toEqual([{ targets: ["base:1", "x:1"], labels: { job: "amb", env: "prod" } }]);
    // Applied once: the DELETE that came after it stands, everywhere.
    const expected = [{ targets: ["base:1"], labels: { job: "amb", env: "prod" } }];
    expect(JSON.parse(await cluster.etcdctl(["get", "--print-value-only", `${prefix}groups/amb@prod`]))).toEqual(expected);
    await eventually(async () => JSON.stringify((await request(url, "GET", "/amb/prod")).body) === JSON.stringify(expected), 2000, "this instance to follow");
    expect((await other.request("GET", "/amb/prod")).body).toEqual(expected);
  });

  it("a PUT whose answer was lost, and nothing after it: applied once, the retry finds its own marker", async () => {
    afterNextCommit = async () => {
      afterNextCommit = undefined;
    };
    const put = await request(url, "PUT", "/amb/dev", { body: "targets=only:1" });
    expect(put.status, JSON.stringify(put.body)).toBe(200);
    // A second application of the same POST would be a 400 ("already registered"); this one is a 200 that adds it once.
    afterNextCommit = async () => {
      afterNextCommit = undefined;
    };
    const post = await request(url, "POST", "/amb/dev", { body: "targets=two:1" });
    expect(post.status, JSON.stringify(post.body)).toBe(200);
    expect(JSON.parse(await cluster.etcdctl(["get", "--print-value-only", `${prefix}groups/amb@dev`]))).toEqual([{ targets: ["only:1", "two:1"], labels: { job: "amb", env: "dev" } }]);
  });
});

/**
 * The namespace of ETCD_PREFIX, except that the first transaction committed
 * while a hook is set is applied by etcd and then reported to its caller as a
 * lost connection, as when a member dies between applying and answering.
 */
function losingOneAnswer(namespace: Namespace, hook: () => (() => Promise<void>) | undefined): Namespace {
  /** A transaction builder whose methods return this wrapper instead of the builder, and whose commit can lose its answer. */
  const wrap = (builder: object): object => {
    const wrapped: object = new Proxy(builder, {
      get(object, property, receiver) {
        const value: unknown = Reflect.get(object, property, receiver);
        if (typeof value !== "function") return value;
        const method = value as (...args: unknown[]) => unknown;
        if (property === "commit") {
          return async () => {
            const run = hook();
            const answer = await method.call(object);
            if (run === undefined) return answer;
            await run();
            throw Object.assign(new Error("14 UNAVAILABLE: Connection dropped (injected after the transaction was applied)"), { code: 14 });
          };
        }
        return (...args: unknown[]) => {
          const result = method.apply(object, args);
          return result === object ? wrapped : result;
        };
      },
    });
    return wrapped;
  };
  return new Proxy(namespace, {
    get(object, property, receiver) {
      const value: unknown = Reflect.get(object, property, receiver);
      if (typeof value !== "function") return value;
      const method = value as (...args: unknown[]) => unknown;
      if (property === "if") return (...args: unknown[]) => wrap(method.apply(object, args) as object);
      return method.bind(object);
    },
  });
}
