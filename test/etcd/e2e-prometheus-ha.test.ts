import { randomUUID } from "node:crypto";
import { join } from "node:path";
import { dump } from "js-yaml";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { startTestService, type TestService } from "../helpers.js";
import { startEtcdCluster, type EtcdCluster } from "../support/etcd.js";
import { startPrometheus, targetsFromFile, waitForTargets, type RunningPrometheus } from "../support/prometheus.js";

/**
 * An HA Prometheus pair the way docs/etcd.md means it: two real Prometheus servers,
 * each reading the directory of its own instance, one registry in etcd.
 */
describe("an HA Prometheus pair, each beside its own instance", () => {
  let cluster: EtcdCluster;
  const instances: TestService[] = [];
  const servers: RunningPrometheus[] = [];
  const seen: string[] = [];

  beforeAll(async () => {
    cluster = await startEtcdCluster();
    const prefix = `/ha-${randomUUID()}/`;
    for (let i = 0; i < 2; i++) {
      const sd = await startTestService({ env: { ETCD_ENDPOINTS: cluster.endpoints.join(","), ETCD_PREFIX: prefix } });
      instances.push(sd);
      servers.push(
        await startPrometheus({
          configYaml: dump({
            global: { scrape_interval: "1h" },
            scrape_configs: [{ job_name: "file_sd", file_sd_configs: [{ files: [join(sd.directory, "*.json")] }] }],
          }),
        }),
      );
    }
  }, 120_000);
  afterAll(async () => {
    await Promise.all(servers.map((server) => server.close()));
    await Promise.all(instances.map((sd) => sd.close()));
    await cluster?.stop();
    console.log(`HA pair:\n  ${seen.join("\n  ")}`);
  }, 60_000);

  it("a target registered through one instance is listed by both servers, and its removal too", async () => {
    const [first, second] = instances as [TestService, TestService];
    expect((await first.request("PUT", "/billing/prod", { body: "targets=db1.example:9100,db2.example:9100&team=core" })).status).toBe(200);
    for (const [i, server] of servers.entries()) {
      const { targets, ms } = await waitForTargets(server.url, (list) => targetsFromFile(list, "billing@prod.json").length === 2, {
        what: "both targets",
      });
      const listed = targetsFromFile(targets, "billing@prod.json");
      expect(listed.map((target) => target.labels.instance).sort()).toEqual(["db1.example:9100", "db2.example:9100"]);
      expect(listed.every((target) => target.labels.team === "core" && target.labels.job === "billing")).toBe(true);
      seen.push(`Prometheus ${i} listed the registration after ${ms} ms`);
    }

    expect((await second.request("DELETE", "/billing/prod", { body: { targets: ["db2.example:9100"] } })).status).toBe(200);
    for (const [i, server] of servers.entries()) {
      const { ms } = await waitForTargets(
        server.url,
        (list) => targetsFromFile(list, "billing@prod.json").map((target) => target.labels.instance).join() === "db1.example:9100",
        { what: "the removal" },
      );
      seen.push(`Prometheus ${i} dropped the removed target after ${ms} ms`);
    }
  }, 180_000);
});
