import { stat } from "node:fs/promises";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { eventually, removeDir, startTestService, type TestService } from "../helpers.js";
import { writeAtomically } from "./support.js";

let service: TestService;

beforeAll(async () => {
  service = await startTestService();
  // Registered out of order, so the test sees the sorting.
  await service.request("PUT", "/search/prod", { body: "targets=s1:9100" });
  await service.request("PUT", "/billing/prod", { body: { targets: ["b1:9100", "b2:9100"], labels: { team: "core" } } });
  await service.request("PUT", "/billing/dev", { body: "targets=b3:9100" });
  await service.request("PUT", "/Billing/dev", { body: "targets=b4:9100" });
});

afterAll(async () => {
  await service.close();
  await removeDir(service.directory);
});

interface IndexLine {
  application: string;
  environment: string;
  file: string;
  targets: number;
  labels: Record<string, string>;
  changedAt: string;
}

async function indexOf(query = ""): Promise<{ status: number; groups: IndexLine[] }> {
  const answer = await service.request("GET", `/${query}`);
  return { status: answer.status, groups: (answer.body as { groups: IndexLine[] }).groups };
}

describe("GET /", () => {
  it("lists every application/environment with its file, target count, labels and last change, sorted", async () => {
    const before = Date.now();
    const { status, groups } = await indexOf();
    expect(status).toBe(200);
    expect(groups.map((line) => `${line.application}/${line.environment}`)).toEqual([
      "Billing/dev",
      "billing/dev",
      "billing/prod",
      "search/prod",
    ]);
    const billing = groups.find((line) => line.application === "billing" && line.environment === "prod");
    expect(billing).toMatchObject({
      file: "billing@prod.json",
      targets: 2,
      labels: { job: "billing", env: "prod", team: "core" },
    });
    expect(Date.parse(billing?.changedAt ?? "")).toBeLessThanOrEqual(before);
    expect(billing?.changedAt).toMatch(/^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$/);
  });

  it("filters by ?application= and ?environment=, each repeatable", async () => {
    const names = async (query: string) =>
      (await indexOf(query)).groups.map((line) => `${line.application}/${line.environment}`);
    expect(await names("?application=billing")).toEqual(["billing/dev", "billing/prod"]);
    expect(await names("?environment=prod")).toEqual(["billing/prod", "search/prod"]);
    expect(await names("?application=billing&environment=dev")).toEqual(["billing/dev"]);
    expect(await names("?application=billing&application=search&environment=prod")).toEqual(["billing/prod", "search/prod"]);
    expect(await names("?application=nobody")).toEqual([]);
  });

  it("refuses a filter that is not a valid name", async () => {
    const answer = await service.request("GET", "/?application=..%2Fetc");
    expect(answer.status).toBe(400);
    expect(answer.body).toEqual({
      message:
        '?application="../etc" is not a valid name: use 1-128 characters from [A-Za-z0-9_.-], starting with a letter, digit or underscore',
    });
  });

  it("shows a file changed from outside with its modification time", async () => {
    const path = join(service.directory, "outside@prod.json");
    await writeAtomically(path, JSON.stringify([{ targets: ["o:9100"], labels: { job: "outside", env: "prod" } }]));
    const mtime = (await stat(path)).mtime.toISOString();
    await eventually(async () => (await indexOf("?application=outside")).groups.length === 1, 10_000, "the outside file in the index");
    expect((await indexOf("?application=outside")).groups[0]).toMatchObject({
      file: "outside@prod.json",
      targets: 1,
      changedAt: mtime,
    });
  });
});
