import { randomUUID } from "node:crypto";
import { createServer, type Server } from "node:http";
import type { AddressInfo } from "node:net";
import type { ITxnRequest, ITxnResponse, Namespace } from "etcd3";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { createApp } from "../../src/app.js";
import { loadConfig } from "../../src/config.js";
import { connectEtcd } from "../../src/etcdstore/client.js";
import { EtcdStore, FLUSH_TICK_MS } from "../../src/etcdstore/etcd-store.js";
import { RENEWAL_FLUSH_MS } from "../../src/rules/registration.js";
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
  /** Runs before the next transaction is sent, after it was computed. */
  let beforeNextTxn: ((request: ITxnRequest) => Promise<void>) | undefined;
  /** Every transaction this instance sent, with etcd's answer. */
  const sent: { request: ITxnRequest; response: ITxnResponse }[] = [];
  /** A key's value in etcd, parsed. */
  const inEtcd = async (key: string): Promise<unknown> => JSON.parse(await cluster.etcdctl(["get", "--print-value-only", `${prefix}${key}`]));

  beforeAll(async () => {
    cluster = await startEtcdCluster();
    const env = { ETCD_ENDPOINTS: cluster.endpoints.join(","), ETCD_PREFIX: prefix, ETCD_TIMEOUT: "5s" };
    other = await startTestService({ env });
    // The instance under test, built from its parts so that its etcd namespace can lose one answer.
    const directory = await makeTempDir();
    const config = loadConfig({ ...env, FILE_SD_DIRECTORY: directory });
    const { client, namespace } = await connectEtcd(config.etcd!);
    const view = await DirectoryView.open(await Directory.open(directory, silentLogger), silentLogger);
    const store = EtcdStore.open({ config: config.etcd!, client, namespace: intercepted(namespace, { after: () => afterNextCommit, before: () => beforeNextTxn, sent }), view, logger: silentLogger });
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

  it("renewals of three groups flushed in one transaction whose answer was lost, then another instance's DELETE in one of them: the flush counts once, the DELETE stands", async () => {
    const paths = ["/amb/f1", "/amb/f2", "/amb/f3"];
    for (const path of paths) expect((await request(url, "POST", `${path}?ttl=1h`, { body: "targets=t:1,t:2" })).status).toBe(200);
    await eventually(async () => (await other.fileOf("amb", "f3")) !== undefined, 2000, "the groups on the other instance");
    const etcdValue = async (key: string): Promise<{ value: string; modRevision: string }> => {
      const { value, mod_revision } = JSON.parse(await cluster.etcdctl(["get", "-w", "json", `${prefix}${key}`])).kvs[0] as { value: string; mod_revision: number };
      return { value: Buffer.from(value, "base64").toString("utf8"), modRevision: String(mod_revision) };
    };
    let deleted: number | undefined;
    afterNextCommit = async () => {
      afterNextCommit = undefined;
      deleted = (await other.request("DELETE", "/amb/f2", { body: "targets=t:1" })).status;
    };
    // The three flushes are due in the same tick (flushDelay) when their renewals are answered early in one.
    while ((performance.now() + RENEWAL_FLUSH_MS) % FLUSH_TICK_MS > FLUSH_TICK_MS / 5) await new Promise((resolve) => setTimeout(resolve, 1));
    const renewed = await Promise.all(paths.map((path) => request(url, "POST", `${path}?ttl=1h`, { body: "targets=t:1,t:2" })));
    for (const answer of renewed) expect(answer.status).toBe(200);
    const served = (await request(url, "GET", "/")).body as { groups: { environment: string; expires: Record<string, string> }[] };
    const servedOf = (environment: string): Record<string, string> => served.groups.find((group) => group.environment === environment)!.expires;
    await eventually(() => deleted !== undefined, 5000, "the flush and the other instance's DELETE");
    expect(deleted).toBe(200);
    await eventually(async () => JSON.stringify(JSON.parse((await etcdValue("expires/amb@f1")).value)) === JSON.stringify(servedOf("f1")), 3000, "f1's renewal in etcd");
    // One transaction carried the three flushes: their commit markers were written at one revision.
    const [f1, f3] = [await etcdValue("commits/amb@f1"), await etcdValue("commits/amb@f3")];
    expect(f3.modRevision).toBe(f1.modRevision);
    expect(JSON.parse((await etcdValue("expires/amb@f3")).value)).toEqual(servedOf("f3"));
    // f2: the DELETE that came after the flush stands, and t:2 keeps its renewal.
    expect(JSON.parse((await etcdValue("groups/amb@f2")).value)).toEqual([{ targets: ["t:2"], labels: { job: "amb", env: "f2" } }]);
    expect(JSON.parse((await etcdValue("expires/amb@f2")).value)).toEqual({ "t:2": servedOf("f2")["t:2"] });
    await eventually(async () => JSON.stringify((await request(url, "GET", "/amb/f2")).body) === JSON.stringify([{ targets: ["t:2"], labels: { job: "amb", env: "f2" } }]), 2000, "this instance to follow");
  });

  it("renewals of three groups flushed together while another instance changes one of them first: the other two commit in that transaction, that one is computed again", async () => {
    const paths = ["/amb/c1", "/amb/c2", "/amb/c3"];
    for (const path of paths) expect((await request(url, "POST", `${path}?ttl=1h`, { body: "targets=t:1,t:2" })).status).toBe(200);
    await eventually(async () => (await other.fileOf("amb", "c3")) !== undefined, 2000, "the groups on the other instance");
    let added: number | undefined;
    beforeNextTxn = async () => {
      beforeNextTxn = undefined;
      // Committed before this instance's flush reaches etcd, which compares c2's revisions from before it.
      added = (await other.request("POST", "/amb/c2", { body: "targets=u:1" })).status;
    };
    const from = sent.length;
    while ((performance.now() + RENEWAL_FLUSH_MS) % FLUSH_TICK_MS > FLUSH_TICK_MS / 5) await new Promise((resolve) => setTimeout(resolve, 1));
    const renewed = await Promise.all(paths.map((path) => request(url, "POST", `${path}?ttl=1h`, { body: "targets=t:1,t:2" })));
    for (const answer of renewed) expect(answer.status).toBe(200);
    const served = (await request(url, "GET", "/")).body as { groups: { environment: string; expires: Record<string, string> }[] };
    const servedOf = (environment: string): Record<string, string> => served.groups.find((group) => group.environment === environment)!.expires;
    await eventually(async () => JSON.stringify(await inEtcd("expires/amb@c2")) === JSON.stringify(servedOf("c2")), 3000, "c2's renewal in etcd");
    expect(added).toBe(200);
    // The first transaction carried the three flushes; only c2's part failed its comparison.
    const [first, ...later] = sent.slice(from);
    const parts = first!.request.success!.filter((op) => op.request_txn !== undefined).map((op) => op.request_txn!.compare![0]!.key!.toString("utf8"));
    expect(parts.map((key) => key.slice(key.lastIndexOf("@"))).sort()).toEqual(["@c1", "@c2", "@c3"]);
    const succeeded = Object.fromEntries(parts.map((key, i) => [key.slice(key.lastIndexOf("@") + 1), first!.response.responses[i]!.response_txn!.succeeded]));
    expect(succeeded).toEqual({ c1: true, c2: false, c3: true });
    // c2 again, alone, computed from the other instance's change: both stand.
    expect(later).toHaveLength(1);
    expect(later[0]!.response.responses[0]!.response_txn!.succeeded).toBe(true);
    expect(await inEtcd("groups/amb@c2")).toEqual([{ targets: ["t:1", "t:2", "u:1"], labels: { job: "amb", env: "c2" } }]);
    for (const environment of ["c1", "c3"]) expect(await inEtcd(`expires/amb@${environment}`)).toEqual(servedOf(environment));
  });

  it("writes that come while another is on its way to etcd share transactions, each answered by its own part: one another instance changed first is computed again", async () => {
    const groupsOf = (request: ITxnRequest): string[] =>
      request.success!.filter((op) => op.request_txn !== undefined).map((op) => op.request_txn!.compare![0]!.key!.toString("utf8").split("@").pop()!);
    const paths = Array.from({ length: 10 }, (_, i) => `/amb/w${i}`);
    // Ten connections open before the writes, so that the nine arrive within a millisecond or two.
    await Promise.all(paths.map((path) => request(url, "GET", path)));
    const from = sent.length;
    let added: number | undefined;
    let release: () => void = () => undefined;
    const released = new Promise<void>((resolve) => (release = resolve));
    beforeNextTxn = async (txn) => {
      // The first write's transaction is held, so the nine that follow find a write on its way.
      if (groupsOf(txn).includes("w0")) await released;
      if (groupsOf(txn).includes("w5") && added === undefined) {
        beforeNextTxn = undefined;
        // Committed before this transaction reaches etcd, which compares w5's revisions from before it.
        added = (await other.request("POST", "/amb/w5", { body: "targets=u:1" })).status;
      }
    };
    const first = request(url, "POST", "/amb/w0", { body: "targets=t:1" });
    await eventually(() => beforeNextTxn !== undefined && sent.length === from, 2000, "the first write on its way");
    await new Promise((resolve) => setTimeout(resolve, 50));
    const nine = paths.slice(1).map((path, i) => request(url, "POST", path, { body: `targets=t:${i + 2}` }));
    const answers = await Promise.all(nine);
    release();
    answers.unshift(await first);
    for (const answer of answers) expect(answer.status, JSON.stringify(answer.body)).toBe(200);
    expect(added).toBe(200);
    const txns = sent.slice(from).map(({ request, response }) => ({ groups: groupsOf(request), succeeded: response.responses.map((answer) => answer.response_txn?.succeeded) }));
    const carrying = (group: string): typeof txns => txns.filter((txn) => txn.groups.includes(group));
    // Each group's part commits once; w5's first part failed (the other instance was first), and w5 went again on its own.
    for (const path of paths) {
      const group = path.split("/").pop()!;
      const parts = carrying(group).map((txn) => txn.succeeded[txn.groups.indexOf(group)]);
      expect(parts, group).toEqual(group === "w5" ? [false, true] : [true]);
    }
    expect(carrying("w5")[1]!.groups).toEqual(["w5"]);
    // The nine went in fewer transactions than nine: writes share a transaction under load.
    expect(new Set(paths.slice(1).map((path) => carrying(path.split("/").pop()!)[0])).size).toBeLessThan(9);
    // w5's POST, computed again on the other instance's value, comes after u:1.
    for (let i = 0; i < 10; i++) {
      const expected = [{ targets: i === 5 ? ["u:1", "t:6"] : [`t:${i + 1}`], labels: { job: "amb", env: `w${i}` } }];
      expect(await inEtcd(`groups/amb@w${i}`)).toEqual(expected);
      expect(answers[i]!.body).toEqual(expected);
    }
  });
});

/**
 * The namespace of ETCD_PREFIX, except that transactions are recorded in
 * `sent`, `before` runs before the next one is sent, and the first one
 * committed while `after` is set is applied by etcd and then reported to its
 * caller as a lost connection, as when a member dies between applying and
 * answering.
 */
function intercepted(
  namespace: Namespace,
  hooks: { after(): (() => Promise<void>) | undefined; before(): ((request: ITxnRequest) => Promise<void>) | undefined; sent: { request: ITxnRequest; response: ITxnResponse }[] },
): Namespace {
  const kv = new Proxy(namespace.kv, {
    get(object, property, receiver) {
      const value: unknown = Reflect.get(object, property, receiver);
      if (typeof value !== "function") return value;
      const method = value as (...args: unknown[]) => Promise<unknown>;
      if (property !== "txn") return method.bind(object);
      return async (request: ITxnRequest, ...rest: unknown[]) => {
        await hooks.before()?.(request);
        const run = hooks.after();
        const response = (await method.call(object, request, ...rest)) as ITxnResponse;
        hooks.sent.push({ request, response });
        if (run === undefined) return response;
        await run();
        throw Object.assign(new Error("14 UNAVAILABLE: Connection dropped (injected after the transaction was applied)"), { code: 14 });
      };
    },
  });
  return new Proxy(namespace, {
    get(object, property, receiver) {
      if (property === "kv") return kv;
      const value: unknown = Reflect.get(object, property, receiver);
      return typeof value === "function" ? (value as (...args: unknown[]) => unknown).bind(object) : value;
    },
  });
}
