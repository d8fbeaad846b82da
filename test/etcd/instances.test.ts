import { randomUUID } from "node:crypto";
import { mkdir, readFile, rmdir, writeFile } from "node:fs/promises";
import { join } from "node:path";
import { Etcd3 } from "etcd3";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { serializeGroup } from "../../src/directory/group-file.js";
import { eventually, filesIn, startTestService, type TestService } from "../helpers.js";
import { AckLedger, readDirectoryState, readServedState, runWriters, seededRandom } from "../reliability/write-load.js";
import { startEtcdCluster, type EtcdCluster } from "../support/etcd.js";

/**
 * docs/etcd.md with a real three-member etcd cluster: several instances, each with
 * its own directory, serve one registry.
 */
describe("several instances, one registry in etcd", () => {
  let cluster: EtcdCluster;
  let instances: TestService[];
  let prefix: string;
  const report: string[] = [];

  const start = (env: Record<string, string> = {}): Promise<TestService> =>
    startTestService({ env: { ETCD_ENDPOINTS: cluster.endpoints.join(","), ETCD_PREFIX: prefix, ...env } });

  beforeAll(async () => {
    cluster = await startEtcdCluster();
    prefix = `/instances-${randomUUID()}/`;
    instances = await Promise.all([start(), start(), start()]);
  });
  afterAll(async () => {
    await Promise.all((instances ?? []).map((sd) => sd.close()));
    await cluster?.stop();
    console.log(`etcd instances:\n  ${report.join("\n  ")}`);
  });

  it("a write through any instance is in every directory and every GET, and etcd holds the file's bytes", async () => {
    const [a, b, c] = instances as [TestService, TestService, TestService];
    const put = await a.request("PUT", "/billing/prod", { body: "targets=h1:9100,h2:9100&team=core" });
    expect(put.status).toBe(200);
    const expected = [{ targets: ["h1:9100", "h2:9100"], labels: { job: "billing", env: "prod", team: "core" } }];
    // The instance that answered has the file already.
    expect(await a.fileOf("billing", "prod")).toEqual(expected);
    const ms = await eventually(
      async () => {
        for (const sd of [b, c]) if (JSON.stringify(await sd.fileOf("billing", "prod")) !== JSON.stringify(expected)) return false;
        return true;
      },
      1000,
      "the other directories",
    );
    report.push(`convergence of one PUT to two other instances: ${ms} ms`);
    for (const sd of instances) expect((await sd.request("GET", "/billing/prod")).body).toEqual(expected);

    const post = await b.request("POST", "/billing/prod", { body: { targets: ["h3:9100"] } });
    expect(post.status).toBe(200);
    expect((await b.request("POST", "/billing/prod", { body: { targets: ["h3:9100"] } })).status).toBe(400);
    const value = await cluster.etcdctl(["get", "--print-value-only", `${prefix}groups/billing@prod`]);
    expect(value.trimEnd()).toBe((await readFile(join(b.directory, "billing@prod.json"), "utf8")).trimEnd());

    expect((await c.request("DELETE", "/billing/prod")).status).toBe(200);
    await eventually(async () => (await Promise.all(instances.map((sd) => filesIn(sd.directory)))).every((names) => names.length === 0), 1000, "the files to go");
    expect((await a.request("GET", "/billing/prod")).body).toEqual([]);
  });

  for (const keys of [1, 50]) {
    it(`1,000 concurrent mutations over three instances on ${keys} key(s) lose nothing`, async () => {
      const groups = Array.from({ length: keys }, (_, i) => ({ application: "load", environment: `k${keys}-${i}` }));
      const ledger = new AckLedger();
      const started = Date.now();
      await Promise.all(
        instances.map((sd, i) =>
          runWriters({
            url: sd.url,
            groups,
            writers: 20,
            prefix: `k${keys}-i${i}`,
            ledger,
            random: seededRandom(1000 * keys + i),
            shouldStop: () => ledger.sent >= 1000,
          }),
        ),
      );
      const seconds = (Date.now() - started) / 1000;
      // Every instance converges on the same registry: in its directory and its GET.
      const keysOf = ledger.groupKeys();
      let problems: string[] = [];
      await eventually(
        async () => {
          problems = [];
          for (const [i, sd] of instances.entries()) {
            const directory = await readDirectoryState(sd.directory);
            problems.push(...directory.problems, ...ledger.contradictions(onlyLoad(directory.groups, keys), `instance ${i} directory`));
            problems.push(...ledger.contradictions(await readServedState(sd.url, keysOf), `instance ${i} GET`));
          }
          return problems.length === 0;
        },
        3000,
        "every instance to hold every acknowledged change",
      ).catch(() => undefined);
      expect(problems).toEqual([]);
      expect(ledger.unexpected).toEqual([]);
      report.push(
        `${keys} key(s): sent ${ledger.sent}, acknowledged ${ledger.acknowledged}, lost 0, refused ${ledger.unexpected.length}, ` +
          `${Math.round(ledger.sent / seconds)} req/s over 3 instances`,
      );
    }, 120_000);
  }

  it("GROUP_SELECTOR: two instances with different selectors write exactly their share, and serve everything", async () => {
    const eu = await start({ GROUP_SELECTOR: '{region="eu"}' });
    const rest = await start({ GROUP_SELECTOR: '{region!="eu",env=~"prod-.*"}' });
    try {
      const [a] = instances as [TestService];
      await a.request("PUT", "/shop/prod-fra", { body: "targets=a:1&region=eu" });
      await a.request("PUT", "/shop/prod-hou", { body: "targets=b:1&region=us" });
      await a.request("PUT", "/shop/dev-hou", { body: "targets=c:1&region=us" });
      await a.request("PUT", "/shop/prod-nolabel", { body: "targets=d:1" });
      await eventually(async () => sameNames(await filesIn(eu.directory), ["shop@prod-fra.json"]), 1000, "the eu share");
      await eventually(async () => sameNames(await filesIn(rest.directory), ["shop@prod-hou.json", "shop@prod-nolabel.json"]), 1000, "the other share");
      // The API still serves every group on both.
      expect((await eu.request("GET", "/shop/dev-hou")).body).toEqual([{ targets: ["c:1"], labels: { job: "shop", env: "dev-hou", region: "us" } }]);
      // A label change moves a group from one share to the other.
      expect((await eu.request("POST", "/shop/prod-hou", { body: "region=eu" })).status).toBe(200);
      expect(sameNames(await filesIn(eu.directory), ["shop@prod-fra.json", "shop@prod-hou.json"])).toBe(true);
      await eventually(async () => sameNames(await filesIn(rest.directory), ["shop@prod-nolabel.json"]), 1000, "the group to leave the other share");
      // /-/http_sd serves each instance's share too, the same groups as its files; the API and the index serve every group.
      const served = async (sd: TestService): Promise<string[]> =>
        ((await sd.request("GET", "/-/http_sd")).body as { labels: Record<string, string> }[]).map(({ labels }) => labels.__meta_filesd_file!).sort();
      expect(await served(eu)).toEqual(["shop@prod-fra.json", "shop@prod-hou.json"]);
      expect(await served(rest)).toEqual(["shop@prod-nolabel.json"]);
      expect((await served(a)).filter((file) => file.startsWith("shop@"))).toEqual(["shop@dev-hou.json", "shop@prod-fra.json", "shop@prod-hou.json", "shop@prod-nolabel.json"]);
      expect(((await rest.request("GET", "/?application=shop")).body as { groups: unknown[] }).groups).toHaveLength(4);
      // ?share=all (the page's script) serves every group, as the index does; any other share is a 400.
      const all = ((await rest.request("GET", "/-/http_sd?share=all&application=shop")).body as { labels: Record<string, string> }[]).map(({ labels }) => labels.__meta_filesd_file!);
      expect(all.sort()).toEqual(["shop@dev-hou.json", "shop@prod-fra.json", "shop@prod-hou.json", "shop@prod-nolabel.json"]);
      const refused = await rest.request("GET", "/-/http_sd?share=mine");
      expect(refused.status).toBe(400);
      expect((refused.body as { message: string }).message).toMatch(/\?share=all/);
      for (const path of ["/shop/prod-fra", "/shop/prod-hou", "/shop/dev-hou", "/shop/prod-nolabel"]) await a.request("DELETE", path);
    } finally {
      await eu.close();
      await rest.close();
    }
  });

  it("a key whose names the API would refuse (an earlier version's 128 + 128) is ignored: a new instance is ready, and serves the rest", async () => {
    const long = `${"a".repeat(128)}@${"e".repeat(128)}`;
    await cluster.etcdctl(["put", `${prefix}groups/${long}`, serializeGroup({ targets: ["old:1"], labels: { job: "a", env: "e" } })]);
    const [a] = instances as [TestService];
    expect((await a.request("PUT", "/fine/prod", { body: "targets=f:1" })).status).toBe(200);
    const fresh = await start();
    try {
      expect((await fresh.request("GET", "/fine/prod")).body).toEqual([{ targets: ["f:1"], labels: { job: "fine", env: "prod" } }]);
      expect(await fresh.fileOf("fine", "prod")).toEqual([{ targets: ["f:1"], labels: { job: "fine", env: "prod" } }]);
      expect((await filesIn(fresh.directory)).filter((name) => name.startsWith("aaaa"))).toEqual([]);
    } finally {
      await fresh.close();
      await cluster.etcdctl(["del", `${prefix}groups/${long}`]);
      await a.request("DELETE", "/fine/prod");
    }
  });

  it("a file an instance cannot write: it stays ready, and writes the file once it can", async () => {
    const [a, b] = instances as [TestService, TestService];
    // A directory where the file should be: every write of it fails with EISDIR.
    await mkdir(join(b.directory, "blocked@prod.json"));
    expect((await a.request("PUT", "/blocked/prod", { body: "targets=x:1" })).status).toBe(200);
    await new Promise((resolve) => setTimeout(resolve, 500));
    expect((await b.request("GET", "/-/ready")).status).toBe(200);
    expect((await b.request("GET", "/blocked/prod")).body).toEqual([{ targets: ["x:1"], labels: { job: "blocked", env: "prod" } }]);
    await rmdir(join(b.directory, "blocked@prod.json"));
    await eventually(async () => JSON.stringify(await b.fileOf("blocked", "prod")) === JSON.stringify([{ targets: ["x:1"], labels: { job: "blocked", env: "prod" } }]), 6000, "the file once it can be written");
    await a.request("DELETE", "/blocked/prod");
  });

  it("a group larger than etcd takes in one request is a 413 at once, naming the limit, and nothing changes", async () => {
    const big = await start({ MAX_BODY_BYTES: String(4 * 1024 * 1024) });
    try {
      const targets = Array.from({ length: 120_000 }, (_, i) => `h${i}:9100`).join(",");
      const started = Date.now();
      const answer = await big.request("PUT", "/huge/prod", { body: `targets=${targets}` });
      expect(answer.status, JSON.stringify(answer.body).slice(0, 300)).toBe(413);
      expect((answer.body as { message: string }).message).toMatch(/^huge@prod\.json would take \d+ bytes in etcd, more than etcd accepts in one request \(its --max-request-bytes/);
      expect(Date.now() - started).toBeLessThan(4000);
      expect((await big.request("GET", "/huge/prod")).body).toEqual([]);
      expect((await big.request("PUT", "/huge/prod", { body: "targets=small:1" })).status).toBe(200);
      await big.request("DELETE", "/huge/prod");
    } finally {
      await big.close();
    }
  });

  it("ETCD_PREFIX without a trailing / is a folder all the same", async () => {
    const bare = `/bare-${randomUUID()}`;
    const sd = await startTestService({ env: { ETCD_ENDPOINTS: cluster.endpoints.join(","), ETCD_PREFIX: bare } });
    try {
      expect((await sd.request("PUT", "/bare/prod", { body: "targets=a:1" })).status).toBe(200);
      const keys = (await cluster.etcdctl(["get", "--prefix", "--keys-only", bare])).trim().split(/\n+/).sort();
      expect(keys).toEqual([`${bare}/commits/bare@prod`, `${bare}/groups/bare@prod`]);
    } finally {
      await sd.close();
    }
  });

  it("a transaction computed while a group was absent, and delayed, cannot bring it back after a DELETE", async () => {
    // What a delayed transaction from before the group existed does: create it if it is still absent
    // (etcd compares the key's modification revision with 0). A deleted group's key must therefore not be absent.
    const client = new Etcd3({ hosts: [...cluster.endpoints] });
    try {
      const [a] = instances as [TestService];
      const key = `${prefix}groups/aba@prod`;
      expect((await a.request("PUT", "/aba/prod", { body: "targets=old:1" })).status).toBe(200);
      expect((await a.request("DELETE", "/aba/prod")).status).toBe(200);
      const stale = await client
        .if(key, "Mod", "==", 0)
        .then(client.put(key).value(serializeGroup({ targets: ["old:1"], labels: { job: "aba", env: "prod" } })))
        .commit();
      expect(stale.succeeded).toBe(false);
      expect(await client.get(key).string()).toBe("[]\n");
      await new Promise((resolve) => setTimeout(resolve, 300));
      for (const sd of instances) {
        expect((await sd.request("GET", "/aba/prod")).body).toEqual([]);
        expect(await sd.fileOf("aba", "prod")).toBeUndefined();
      }
      // Registering again works as for a group never seen.
      expect((await a.request("POST", "/aba/prod", { body: "targets=new:1" })).status).toBe(200);
      await eventually(async () => (await Promise.all(instances.map((sd) => sd.fileOf("aba", "prod")))).every((file) => file !== undefined), 1000, "the new group everywhere");
      await a.request("DELETE", "/aba/prod");
    } finally {
      client.close();
    }
  });

  it("an outside edit of a managed file is put back to etcd's value; foreign files are left alone", async () => {
    const [a, b] = instances as [TestService, TestService];
    await a.request("PUT", "/edit/prod", { body: "targets=a:1" });
    const file = join(b.directory, "edit@prod.json");
    await eventually(async () => (await b.fileOf("edit", "prod")) !== undefined, 1000, "the file on b");
    const good = await readFile(file, "utf8");
    await writeFile(join(b.directory, "someone-else.json"), "[]");
    await writeFile(file, '[{"targets":["evil:1"]}]');
    await eventually(async () => (await readFile(file, "utf8")) === good, 2000, "etcd's value to be put back");
    await writeFile(file, "not json");
    await eventually(async () => (await readFile(file, "utf8")) === good, 2000, "etcd's value to be put back over garbage");
    expect((await b.request("GET", "/edit/prod")).body).toEqual([{ targets: ["a:1"], labels: { job: "edit", env: "prod" } }]);
    expect(await readFile(join(b.directory, "someone-else.json"), "utf8")).toBe("[]");
    const metrics = await (await fetch(`${b.url}/metrics`)).text();
    expect(metrics).toMatch(/^file_sd_files_put_back_total [1-9]/m);
    await a.request("DELETE", "/edit/prod");
  });
});

function onlyLoad(groups: Map<string, readonly string[]>, keys: number): Map<string, readonly string[]> {
  return new Map([...groups].filter(([key]) => key.startsWith(`load/k${keys}-`)));
}

function sameNames(actual: string[], expected: string[]): boolean {
  return JSON.stringify([...actual].sort()) === JSON.stringify([...expected].sort());
}
