import { rm } from "node:fs/promises";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { eventually, removeDir, startTestService, type TestService } from "../helpers.js";
import { writeAtomically } from "./support.js";

let service: TestService;

beforeAll(async () => {
  service = await startTestService();
  await service.request("PUT", "/search/prod", { body: "targets=s1:9100" });
  await service.request("PUT", "/billing/prod", {
    body: { targets: ["b1:9100", "b2:9100"], labels: { team: "core", __metrics_path__: "/probe" } },
  });
  // A registration cannot pass a group off as another application's: __meta_* labels are refused.
  const disguised = await service.request("PUT", "/billing/dev", {
    body: { targets: ["b3:9100"], labels: { __meta_filesd_application: "search" } },
  });
  expect(disguised.status).toBe(400);
  expect((disguised.body as { message: string }).message).toMatch(/^label "__meta_filesd_application" is reserved/);
  await service.request("PUT", "/billing/dev", { body: { targets: ["b3:9100"] } });
});

afterAll(async () => {
  await service.close();
  await removeDir(service.directory);
});

type Groups = { targets: string[]; labels: Record<string, string> }[];

describe("GET /-/http_sd", () => {
  it("answers every group in http_sd format, sorted, with meta labels naming its source", async () => {
    const response = await fetch(`${service.url}/-/http_sd`);
    expect(response.status).toBe(200);
    // Prometheus refuses any other content type.
    expect(response.headers.get("content-type")).toBe("application/json; charset=utf-8");
    expect(await response.json()).toEqual([
      {
        targets: ["b3:9100"],
        labels: {
          job: "billing",
          env: "dev",
          __meta_filesd_application: "billing",
          __meta_filesd_environment: "dev",
          __meta_filesd_file: "billing@dev.json",
        },
      },
      {
        targets: ["b1:9100", "b2:9100"],
        labels: {
          job: "billing",
          env: "prod",
          team: "core",
          __metrics_path__: "/probe",
          __meta_filesd_application: "billing",
          __meta_filesd_environment: "prod",
          __meta_filesd_file: "billing@prod.json",
        },
      },
      {
        targets: ["s1:9100"],
        labels: {
          job: "search",
          env: "prod",
          __meta_filesd_application: "search",
          __meta_filesd_environment: "prod",
          __meta_filesd_file: "search@prod.json",
        },
      },
    ]);
  });

  it("holds the same targets and labels as the files Prometheus reads", async () => {
    const answer = await service.request("GET", "/-/http_sd?application=billing&environment=prod");
    const [group] = answer.body as Groups;
    const [file] = (await service.fileOf("billing", "prod")) as Groups;
    expect(group?.targets).toEqual(file?.targets);
    const { __meta_filesd_application, __meta_filesd_environment, __meta_filesd_file, ...labels } = group?.labels ?? {};
    expect([__meta_filesd_application, __meta_filesd_environment, __meta_filesd_file]).toEqual([
      "billing",
      "prod",
      "billing@prod.json",
    ]);
    expect(labels).toEqual(file?.labels);
  });

  it("takes the same filters as the index", async () => {
    const sources = async (query: string) =>
      ((await service.request("GET", `/-/http_sd${query}`)).body as Groups).map(
        ({ labels }) => `${labels.__meta_filesd_application}/${labels.__meta_filesd_environment}`,
      );
    expect(await sources("?application=billing")).toEqual(["billing/dev", "billing/prod"]);
    expect(await sources("?environment=prod")).toEqual(["billing/prod", "search/prod"]);
    expect(await sources("?application=nobody")).toEqual([]);
    expect((await service.request("GET", "/-/http_sd?environment=-x")).status).toBe(400);
  });

  it("answers [] when nothing is registered", async () => {
    const empty = await startTestService();
    try {
      const answer = await empty.request("GET", "/-/http_sd");
      expect(answer.status).toBe(200);
      expect(answer.body).toEqual([]);
    } finally {
      await empty.close();
      await removeDir(empty.directory);
    }
  });

  it("follows every change, ours and outside ones, in the unfiltered answer too", async () => {
    const everything = async (): Promise<Record<string, string[]>> =>
      Object.fromEntries(
        ((await service.request("GET", "/-/http_sd")).body as Groups).map(({ targets, labels }) => [
          labels.__meta_filesd_file,
          targets,
        ]),
      );
    expect(await everything()).toMatchObject({ "search@prod.json": ["s1:9100"] });

    await service.request("POST", "/search/prod", { body: "targets=s2:9100" });
    expect(await everything()).toMatchObject({ "search@prod.json": ["s1:9100", "s2:9100"] });

    await service.request("DELETE", "/billing/dev");
    expect(Object.keys(await everything())).toEqual(["billing@prod.json", "search@prod.json"]);

    // A new file, then its removal. (An outside edit of search@prod.json right after our POST could
    // go unseen: chokidar drops a `change` that follows another within 50 ms; see the report.)
    const outside = join(service.directory, "outside@prod.json");
    await writeAtomically(outside, JSON.stringify([{ targets: ["o1:9100"], labels: { job: "outside", env: "prod" } }]));
    await eventually(async () => (await everything())["outside@prod.json"]?.[0] === "o1:9100", 10_000, "the new file in http_sd");
    await rm(outside);
    await eventually(async () => !("outside@prod.json" in (await everything())), 10_000, "the removal in http_sd");
  });
});
