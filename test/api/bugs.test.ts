import { createServer, type Server } from "node:http";
import type { AddressInfo } from "node:net";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { createApp } from "../../src/app.js";
import { InternalError } from "../../src/errors.js";
import { createMetrics } from "../../src/metrics.js";
import type { GroupId } from "../../src/model.js";
import type { Mutation, Store } from "../../src/store.js";
import { request, silentLogger, startTestService, type TestService } from "../helpers.js";

/**
 * A bug inside a change (injected here: a mutation that throws, a result the
 * store cannot write) answers that request with a 500 that carries its request
 * id, is counted, and leaves the lane working: the next request to the same
 * application/environment succeeds. On both backends (vitest.config.ts).
 */
describe("a bug inside a change", () => {
  let sd: TestService;
  let server: Server;
  let url: string;
  const metrics = createMetrics();
  /** What the injected bug does to the next change of `boom/*`. */
  let inject: "throw" | "unwritable" | undefined;

  beforeAll(async () => {
    sd = await startTestService();
    // The running service's own store, behind an app whose store wrapper injects the bug.
    const real = sd.service.store;
    const buggy: Store = {
      get: (appEnv) => real.get(appEnv),
      list: () => real.list(),
      get size() {
        return real.size;
      },
      idle: () => real.idle(),
      update: (appEnv: GroupId, mutation: Mutation) =>
        real.update(appEnv, (current, now) => {
          const result = mutation(current, now);
          if (appEnv.application !== "boom" || inject === undefined || result === null) return result;
          if (inject === "throw") throw new TypeError("injected: a mutation with a bug");
          // A deadline that is not a time: the store finds out only when it writes the deadlines.
          return { ...result, expires: new Map([[result.group.targets[0]!, Number.NaN]]) };
        }),
    };
    metrics.measureRegistered(buggy);
    server = createServer(createApp({ store: buggy, logger: silentLogger, maxBodyBytes: 1024 * 1024, metrics }).callback());
    await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", () => resolve()));
    url = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
  });
  afterAll(async () => {
    await new Promise((resolve) => server.close(resolve));
    await sd.close();
  });

  /** The request counter is the app's above; the lane's is the store's, so the running service's. */
  const internalErrors = async (where: "request" | "lane"): Promise<number> => {
    const text = where === "request" ? await metrics.registry.metrics() : await (await fetch(`${sd.url}/metrics`)).text();
    return Number(new RegExp(`^file_sd_internal_errors_total\\{where="${where}"\\} (\\d+)`, "m").exec(text)?.[1]);
  };

  it.each(["throw", "unwritable"] as const)("(%s) answers 500 with the request id, and the next request to the same group succeeds", async (kind) => {
    const environment = `e-${kind}`;
    const before = { request: await internalErrors("request"), lane: await internalErrors("lane") };
    inject = kind;
    const answer = await request(url, "PUT", `/boom/${environment}?ttl=1h`, { body: "targets=a:1", headers: { "X-Request-Id": `bug-${kind}` } });
    inject = undefined;
    expect(answer.status).toBe(500);
    const message = (answer.body as { message: string }).message;
    expect(message).toMatch(/This is a bug; please report it with the service log of this request/);
    expect(message).toMatch(new RegExp(`\\(request id bug-${kind}\\)$`));
    expect(answer.headers.get("x-request-id")).toBe(`bug-${kind}`);

    // The lane goes on: the same group takes the next change, and reads stay consistent.
    const next = await request(url, "PUT", `/boom/${environment}?ttl=1h`, { body: "targets=b:1" });
    expect(next.status, JSON.stringify(next.body)).toBe(200);
    expect((await sd.request("GET", `/boom/${environment}`)).body).toEqual([{ targets: ["b:1"], labels: { job: "boom", env: environment } }]);
    expect(await sd.fileOf("boom", environment)).toEqual([{ targets: ["b:1"], labels: { job: "boom", env: environment } }]);

    // A throwing mutation is the handler's request failing; a result the store cannot write is the lane's.
    if (kind === "throw") expect(await internalErrors("request")).toBe(before.request + 1);
    else expect(await internalErrors("lane")).toBe(before.lane + 1);
  });

  it("a batch the store cannot write rejects with an InternalError and the lane takes the next batch", async () => {
    const appEnv = { kind: "targets", application: "direct", environment: "nan" } as const;
    const broken = sd.service.store.update(appEnv, () => ({ group: { targets: ["a:1"], labels: { job: "direct", env: "nan" } }, expires: new Map([["a:1", Number.NaN]]) }));
    await expect(broken).rejects.toBeInstanceOf(InternalError);
    await expect(broken).rejects.toThrow(/an internal error stopped the change to direct@nan\.json; it may or may not have been applied/);
    const fine = await sd.request("PUT", "/direct/nan", { body: "targets=c:1" });
    expect(fine.status).toBe(200);
    expect(await sd.fileOf("direct", "nan")).toEqual([{ targets: ["c:1"], labels: { job: "direct", env: "nan" } }]);
  });
});
