import fc from "fast-check";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { startTestService, type TestService } from "../helpers.js";

/**
 * Random sequences of requests against a live service: after every request the
 * file on disk equals what GET returns, and a refused request changes neither.
 */
describe("random request sequences", () => {
  let sd: TestService;
  beforeAll(async () => {
    sd = await startTestService();
  });
  afterAll(() => sd.close());

  const mostly = <T>(good: fc.Arbitrary<T>, bad: T) => fc.oneof({ weight: 19, arbitrary: good }, { weight: 1, arbitrary: fc.constant(bad) });
  const target = mostly(fc.constantFrom("a:1", "b:2", "c:3", "10.0.0.1:9100", "[::1]:9100"), "bad target");
  const labelName = mostly(fc.constantFrom("job", "env", "team", "tier", "__metrics_path__"), "bad-name");
  const labelValue = mostly(fc.constantFrom("core", "edge", "/metrics", "seq"), "");
  const body = fc.record(
    { targets: fc.array(target, { maxLength: 3 }), labels: fc.dictionary(labelName, labelValue, { maxKeys: 2 }) },
    { requiredKeys: [] },
  );
  const step = fc.record({ method: fc.constantFrom("PUT", "POST", "DELETE"), body: fc.option(body, { nil: undefined }) });

  it("keeps the file and GET equal, and refusals change nothing", async () => {
    let requests = 0;
    let refusals = 0;
    await fc.assert(
      fc.asyncProperty(fc.array(step, { minLength: 1, maxLength: 12 }), async (steps) => {
        await sd.request("DELETE", "/seq/prod");
        for (const { method, body } of steps) {
          const before = await sd.fileOf("seq", "prod");
          const answer = await sd.request(method, "/seq/prod", body === undefined ? {} : { body });
          requests++;
          const file = await sd.fileOf("seq", "prod");
          const served = (await sd.request("GET", "/seq/prod")).body;
          expect(answer.status === 200 || answer.status === 400 || answer.status === 404).toBe(true);
          expect(served).toEqual(file ?? []);
          if (answer.status !== 200) {
            refusals++;
            expect(file).toEqual(before);
            expect(answer.body).toEqual({ message: expect.any(String) });
          } else if (file !== undefined) {
            const [group] = file as [{ targets: string[]; labels: Record<string, string> }];
            expect(group.targets.length).toBeGreaterThan(0);
            expect(new Set(group.targets).size).toBe(group.targets.length);
            expect(group.labels.job).toBeTruthy();
            expect(group.labels.env).toBeTruthy();
          }
        }
      }),
      { numRuns: 80 },
    );
    console.log(`random sequences: ${requests} requests, ${refusals} refused`);
    expect(refusals).toBeGreaterThan(0);
    expect(refusals).toBeLessThan(requests);
  });
});
