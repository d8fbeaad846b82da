import { randomUUID } from "node:crypto";
import { writeFile } from "node:fs/promises";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { eventually, makeTempDir, removeDir, request, startTestService, type TestService } from "../helpers.js";
import { startEtcdCluster, type EtcdCluster } from "../support/etcd.js";

/** The service as an etcd client over TLS with a client certificate, and with etcd's user/password auth. */
describe("etcd over TLS with client certificates", () => {
  let cluster: EtcdCluster;
  beforeAll(async () => {
    cluster = await startEtcdCluster({ tls: true });
  });
  afterAll(() => cluster?.stop());

  const tlsEnv = (caFile: string): Record<string, string> => ({
    ETCD_ENDPOINTS: cluster.endpoints.join(","),
    ETCD_PREFIX: `/tls-${randomUUID()}/`,
    ETCD_CA_FILE: caFile,
    ETCD_CERT_FILE: cluster.tls!.certFile,
    ETCD_KEY_FILE: cluster.tls!.keyFile,
    ETCD_TIMEOUT: "2s",
  });

  it("registers through etcd with the right CA and a client certificate", async () => {
    const env = tlsEnv(cluster.tls!.caFile);
    const sd = await startTestService({ env });
    try {
      expect((await sd.request("PUT", "/secure/prod", { body: "targets=a:1" })).status).toBe(200);
      expect(await sd.fileOf("secure", "prod")).toEqual([{ targets: ["a:1"], labels: { job: "secure", env: "prod" } }]);
      const keys = await cluster.etcdctl(["get", "--prefix", "--keys-only", env.ETCD_PREFIX!]);
      // The group, and the marker of the change that wrote it (src/etcdstore/keys.ts).
      expect(keys.trim().split(/\n+/).sort()).toEqual([`${env.ETCD_PREFIX!}commits/secure@prod`, `${env.ETCD_PREFIX!}groups/secure@prod`]);
    } finally {
      await sd.close();
    }
  });

  it("refuses a server certificate from another CA, naming the endpoints, and writes answer 503", async () => {
    const directory = await makeTempDir();
    const { loadConfig } = await import("../../src/config.js");
    const { startService } = await import("../../src/server.js");
    const { silentLogger } = await import("../helpers.js");
    const service = await startService(loadConfig({ BIND: "127.0.0.1:0", FILE_SD_DIRECTORY: directory, ...tlsEnv(cluster.tls!.otherCaFile) }), silentLogger);
    try {
      let message = "";
      await eventually(async () => {
        const ready = await request(service.url, "GET", "/-/ready");
        message = (ready.body as { message?: string }).message ?? "";
        return ready.status === 503 && message.includes(cluster.endpoints[0]!);
      }, 10_000, "/-/ready to explain");
      expect(message).toMatch(/cannot sync with etcd|unreachable/);
      expect(message).toMatch(/certificate/);
      console.log(`wrong CA: /-/ready says: ${message}`);
      const put = await request(service.url, "PUT", "/secure/prod", { body: "targets=a:1" });
      expect(put.status).toBe(503);
      expect((put.body as { message: string }).message).toContain(cluster.endpoints[0]!);
    } finally {
      await service.close();
      await removeDir(directory);
    }
  });
});

describe("etcd with user/password auth", () => {
  let cluster: EtcdCluster;
  const prefix = `/auth-${randomUUID()}/`;
  let secrets: string;
  beforeAll(async () => {
    cluster = await startEtcdCluster();
    await cluster.enableAuth({ rootPassword: "root-secret", user: "file-sd", password: "registry-secret", prefix });
    secrets = await makeTempDir();
  });
  afterAll(async () => {
    await cluster?.stop();
    await removeDir(secrets);
  });

  it("works with ETCD_USERNAME and ETCD_PASSWORD_FILE, and the key is readable only with credentials", async () => {
    const passwordFile = join(secrets, "password");
    await writeFile(passwordFile, "registry-secret\n", { mode: 0o600 });
    let sd: TestService | undefined;
    try {
      sd = await startTestService({
        env: { ETCD_ENDPOINTS: cluster.endpoints.join(","), ETCD_PREFIX: prefix, ETCD_USERNAME: "file-sd", ETCD_PASSWORD_FILE: passwordFile },
      });
      expect((await sd.request("PUT", "/guarded/prod", { body: "targets=a:1" })).status).toBe(200);
      const value = await cluster.etcdctl(["get", "--print-value-only", `${prefix}groups/guarded@prod`], { user: "file-sd:registry-secret" });
      expect(JSON.parse(value)).toEqual([{ targets: ["a:1"], labels: { job: "guarded", env: "prod" } }]);
      await expect(cluster.etcdctl(["get", `${prefix}groups/guarded@prod`])).rejects.toThrow(/user name is empty|permission denied|authentication/i);
    } finally {
      await sd?.close();
    }
  });

  it("a wrong password keeps the instance not ready, with etcd's reason", async () => {
    const directory = await makeTempDir();
    const { loadConfig } = await import("../../src/config.js");
    const { startService } = await import("../../src/server.js");
    const { silentLogger } = await import("../helpers.js");
    const service = await startService(
      loadConfig({
        BIND: "127.0.0.1:0",
        FILE_SD_DIRECTORY: directory,
        ETCD_ENDPOINTS: cluster.endpoints.join(","),
        ETCD_PREFIX: prefix,
        ETCD_USERNAME: "file-sd",
        ETCD_PASSWORD: "wrong",
        ETCD_TIMEOUT: "2s",
      }),
      silentLogger,
    );
    try {
      let message = "";
      await eventually(async () => {
        const ready = await request(service.url, "GET", "/-/ready");
        message = (ready.body as { message?: string }).message ?? "";
        return ready.status === 503 && /authentication failed|invalid user ID or password/i.test(message);
      }, 10_000, "/-/ready to say the password is wrong").catch(() => undefined);
      expect(message).toMatch(/authentication failed|invalid user ID or password/i);
    } finally {
      await service.close();
      await removeDir(directory);
    }
  });
});
