import { METHODS } from "node:http";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { complete, createRouter } from "../../src/app.js";
import { FileStore } from "../../src/filestore/store.js";
import { OPENAPI } from "../../src/openapi.js";
import { makeTempDir, removeDir, silentLogger, startTestService, type TestService } from "../helpers.js";
import { freePort } from "../support/ports.js";

/** `/:application/:environment` → `/{application}/{environment}` */
const asOpenApiPath = (path: string): string => path.replace(/:([A-Za-z_]+)/g, "{$1}");

/** path → methods, from the router the app really uses. A layer that takes every method is a 405 answer. */
async function servedRoutes(): Promise<{ operations: Map<string, Set<string>>; answers405: Set<string> }> {
  const directory = await makeTempDir();
  try {
    const store = await FileStore.open({ directory, logger: silentLogger });
    const router = createRouter(complete({ store, logger: silentLogger, maxBodyBytes: 1024 }));
    const operations = new Map<string, Set<string>>();
    const answers405 = new Set<string>();
    for (const layer of router.stack) {
      // The catch-all that answers unknown /-/ paths with a 404 is not an endpoint.
      if (String(layer.path) === "/-/{*rest}") continue;
      const path = asOpenApiPath(String(layer.path));
      if (METHODS.every((method) => layer.methods.includes(method))) {
        answers405.add(path);
        continue;
      }
      const methods = operations.get(path) ?? new Set<string>();
      // The router answers HEAD wherever it answers GET; the description says so once.
      for (const method of layer.methods) if (method !== "HEAD") methods.add(method.toLowerCase());
      operations.set(path, methods);
    }
    return { operations, answers405 };
  } finally {
    await removeDir(directory);
  }
}

function documentedRoutes(): Map<string, Set<string>> {
  return new Map(Object.entries(OPENAPI.paths).map(([path, item]) => [path, new Set(Object.keys(item))]));
}

const sorted = (map: Map<string, Set<string>>) =>
  Object.fromEntries([...map].sort(([a], [b]) => (a < b ? -1 : 1)).map(([path, methods]) => [path, [...methods].sort()]));

describe("the OpenAPI description", () => {
  let service: TestService;
  beforeAll(async () => {
    // The status routes need a PROMETHEUS_URL to answer 200; nothing listens there, so targets are `unreachable`.
    service = await startTestService({ env: { PROMETHEUS_URL: `http://127.0.0.1:${await freePort()}` } });
  });
  afterAll(async () => {
    await service.close();
    await removeDir(service.directory);
  });

  it("lists every route and method the router serves, and nothing it does not", async () => {
    const { operations } = await servedRoutes();
    expect(sorted(documentedRoutes())).toEqual(sorted(operations));
  });

  it("every documented path answers 405 with an Allow header to the methods it does not document", async () => {
    const { answers405 } = await servedRoutes();
    expect([...answers405].sort()).toEqual(Object.keys(OPENAPI.paths).sort());
    for (const [path, methods] of documentedRoutes()) {
      const answer = await service.request("PATCH", path.replace(/\{[a-z]+\}/g, "sample"));
      expect(answer.status, `PATCH ${path}`).toBe(405);
      const allowed = (answer.headers.get("allow") ?? "").split(", ").filter((method) => method !== "HEAD");
      expect(allowed.map((method) => method.toLowerCase()).sort()).toEqual([...methods].sort());
    }
  });

  it("every documented operation is answered by the running service (no 404, no 405)", async () => {
    // In document order (get, put, post, delete), each body is one the rules accept at that point.
    const bodies: Record<string, string | undefined> = { put: "targets=a:9100", post: "targets=b:9100", delete: "targets=b:9100" };
    for (const [path, methods] of documentedRoutes()) {
      for (const method of methods) {
        const body = bodies[method];
        const answer = await fetch(service.url + path.replace(/\{[a-z]+\}/g, "sample"), {
          method: method.toUpperCase(),
          body,
          headers: body === undefined ? {} : { "content-type": "application/x-www-form-urlencoded" },
        });
        expect(answer.status, `${method} ${path}: ${await answer.text()}`).toBe(200);
      }
    }
  });

  it("each operation takes exactly the query parameters it documents: those are not refused, any other is a 400", async () => {
    const parameters = OPENAPI.components.parameters as Record<string, { name: string; in: string }>;
    for (const [path, item] of Object.entries(OPENAPI.paths)) {
      for (const [method, operation] of Object.entries(item as Record<string, { parameters?: readonly ({ $ref: string } | { name: string; in: string })[] }>)) {
        const query = (operation.parameters ?? [])
          .map((parameter) => ("$ref" in parameter ? parameters[parameter.$ref.split("/").at(-1)!]! : parameter))
          .filter((parameter) => parameter.in === "query")
          .map((parameter) => parameter.name);
        const url = service.url + path.replace(/\{[a-z]+\}/g, "sample");
        const body = method === "put" || method === "post" ? "targets=q:9100" : undefined;
        const send = (search: string) =>
          fetch(`${url}?${search}`, { method: method.toUpperCase(), body, headers: body === undefined ? {} : { "content-type": "application/x-www-form-urlencoded" } }).then(
            async (answer) => ({ status: answer.status, text: await answer.text() }),
          );
        for (const name of query) {
          const value = name === "ttl" ? "60s" : name === "wait" ? "1s" : "sample";
          const answer = await send(`${name}=${value}`);
          expect(answer.text, `${method} ${path}?${name}=`).not.toMatch(/unknown query parameter/);
        }
        const refused = await send("undocumented=1");
        expect(refused.status, `${method} ${path}?undocumented=1`).toBe(400);
        expect(refused.text).toMatch(/unknown query parameter \\"undocumented\\"/);
      }
    }
  });

  it("is served at /-/openapi.json", async () => {
    const answer = await fetch(`${service.url}/-/openapi.json`);
    expect(answer.status).toBe(200);
    expect(answer.headers.get("content-type")).toBe("application/json; charset=utf-8");
    expect(await answer.json()).toEqual(JSON.parse(JSON.stringify(OPENAPI)));
  });

  it("every $ref points at something the document defines, and operation ids are unique", () => {
    const references = JSON.stringify(OPENAPI).match(/"\$ref":"[^"]+"/g) ?? [];
    expect(references.length).toBeGreaterThan(0);
    for (const reference of references) {
      const pointer = reference.slice('"$ref":"#/'.length, -1).split("/");
      let target: unknown = OPENAPI;
      for (const key of pointer) target = (target as Record<string, unknown> | undefined)?.[key];
      expect(target, reference).toBeDefined();
    }
    const ids = Object.values(OPENAPI.paths).flatMap((item) => Object.values(item).map((operation) => operation.operationId));
    expect(new Set(ids).size).toBe(ids.length);
  });
});
