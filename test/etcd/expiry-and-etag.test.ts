import { randomUUID } from "node:crypto";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { eventually, request, startTestService, type TestService } from "../helpers.js";
import { startEtcdCluster, type EtcdCluster } from "../support/etcd.js";

/** SPEC §10 and §11 across instances, with a real three-member etcd cluster. */
describe("ETag and expiry across instances", () => {
  let cluster: EtcdCluster;
  const started: TestService[] = [];
  const report: string[] = [];

  const start = async (prefix: string, options: { env?: Record<string, string> } = {}): Promise<TestService> => {
    const sd = await startTestService({ env: { ETCD_ENDPOINTS: cluster.endpoints.join(","), ETCD_PREFIX: prefix, ...options.env } });
    started.push(sd);
    return sd;
  };

  beforeAll(async () => {
    cluster = await startEtcdCluster();
  });
  afterAll(async () => {
    await Promise.all(started.map((sd) => sd.close()));
    await cluster?.stop();
    console.log(`etcd §10/§11:\n  ${report.join("\n  ")}`);
  });

  it("every instance gives the same ETag; a stale If-Match from another instance is a 412 that changes nothing", async () => {
    const prefix = `/etag-${randomUUID()}/`;
    const [a, b, c] = [await start(prefix), await start(prefix), await start(prefix)];
    const tag = (await a.request("PUT", "/shop/prod", { body: "targets=a:1&team=core" })).headers.get("etag")!;
    await eventually(async () => (await c.request("GET", "/shop/prod")).headers.get("etag") === tag, 1000, "c to have the group");
    expect((await b.request("GET", "/shop/prod")).headers.get("etag")).toBe(tag);

    const changed = await b.request("PUT", "/shop/prod", { body: "team=edge", headers: { "If-Match": tag } });
    expect(changed.status).toBe(200);
    // c may not have seen b's change yet: the check runs on etcd's value, not on c's memory.
    const stale = await c.request("PUT", "/shop/prod", { body: "team=web", headers: { "If-Match": tag } });
    expect(stale.status).toBe(412);
    expect(stale.headers.get("etag")).toBe(changed.headers.get("etag"));
    await eventually(async () => JSON.stringify((await a.request("GET", "/shop/prod")).body).includes("edge"), 1000, "a to see b's change");
    for (const sd of [a, b, c]) {
      expect((await sd.request("GET", "/shop/prod")).body).toEqual([{ targets: ["a:1"], labels: { job: "shop", env: "prod", team: "edge" } }]);
    }
  });

  it("read-modify-write loops with If-Match through three instances: every acknowledged change survives", async () => {
    const prefix = `/rmw-${randomUUID()}/`;
    const instances = [await start(prefix), await start(prefix), await start(prefix)];
    await instances[0]!.request("PUT", "/rmw/prod", { body: "targets=a:1" });
    const acknowledged: string[] = [];
    let conflicts = 0;
    const rounds = 10;
    await Promise.all(
      Array.from({ length: 6 }, async (_, client) => {
        const sd = instances[client % instances.length]!;
        for (let round = 0; round < rounds; round++) {
          for (let attempt = 0; ; attempt++) {
            expect(attempt).toBeLessThan(300);
            const read = await request(sd.url, "GET", "/rmw/prod");
            const [group] = read.body as [{ labels: Record<string, string> }];
            const name = `c${client}_${round}`;
            const answer = await request(sd.url, "PUT", "/rmw/prod", {
              body: { labels: { ...group.labels, [name]: "x" } },
              headers: { "If-Match": read.headers.get("etag")! },
            });
            if (answer.status === 200) {
              acknowledged.push(name);
              break;
            }
            expect(answer.status).toBe(412);
            conflicts++;
          }
        }
      }),
    );
    for (const sd of instances) {
      await eventually(
        async () => {
          const [group] = (await sd.fileOf("rmw", "prod")) as [{ labels: Record<string, string> }];
          return acknowledged.every((name) => group.labels[name] === "x");
        },
        2000,
        "every acknowledged label in every directory",
      );
    }
    report.push(`read-modify-write over 3 instances: ${acknowledged.length} acknowledged, ${conflicts} answered 412 and retried, none lost`);
  }, 60_000);
});
