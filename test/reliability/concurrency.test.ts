import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { removeDir, startTestService, type Answer, type TestService } from "../helpers.js";

/**
 * The Python original answered 500 concurrent POSTs with 200 and kept 437 of
 * them; concurrent DELETE and POST brought deleted targets back. Here every
 * request goes out at once over real HTTP, and afterwards GET and the file
 * must hold every acknowledged change and nothing else.
 */

interface Tally {
  sent: number;
  acknowledged: number;
}

function groupOf(answer: unknown): { targets: string[]; labels: Record<string, string> } | undefined {
  return (answer as { targets: string[]; labels: Record<string, string> }[] | undefined)?.[0];
}

describe("concurrency: every acknowledged change, and nothing else", () => {
  let sd: TestService;
  const report: string[] = [];

  beforeAll(async () => {
    sd = await startTestService();
  });
  afterAll(async () => {
    await sd.close();
    await removeDir(sd.directory);
    console.log(`concurrency:\n  ${report.join("\n  ")}`);
  });

  const post = (path: string, targets: string[], tally: Tally): Promise<Answer> => {
    tally.sent++;
    return sd.request("POST", path, { body: { targets } }).then((answer) => {
      if (answer.status === 200) tally.acknowledged++;
      return answer;
    });
  };
  const remove = (path: string, targets: string[], tally: Tally): Promise<Answer> => {
    tally.sent++;
    return sd.request("DELETE", path, { body: { targets } }).then((answer) => {
      if (answer.status === 200) tally.acknowledged++;
      return answer;
    });
  };

  /** GET and the file agree, and hold exactly `expected` (in any order) with the default labels. */
  async function expectExactly(application: string, environment: string, expected: ReadonlySet<string>): Promise<number> {
    const served = groupOf((await sd.request("GET", `/${application}/${environment}`)).body);
    const onDisk = await sd.fileOf(application, environment);
    expect(onDisk).toEqual(served === undefined ? undefined : [served]);
    const actual = new Set(served?.targets ?? []);
    expect(served?.targets.length ?? 0).toBe(actual.size);
    const lost = [...expected].filter((target) => !actual.has(target));
    const extra = [...actual].filter((target) => !expected.has(target));
    expect({ lost, extra }).toEqual({ lost: [], extra: [] });
    if (served !== undefined) expect(served.labels).toEqual({ job: application, env: environment });
    return lost.length;
  }

  it("1,000 concurrent POSTs of distinct targets to one application/environment all land", async () => {
    const tally: Tally = { sent: 0, acknowledged: 0 };
    const targets = Array.from({ length: 1000 }, (_, index) => `one-${index}.example:9100`);
    const answers = await Promise.all(targets.map((target) => post("/billing/prod", [target], tally)));

    expect(answers.filter((answer) => answer.status !== 200)).toEqual([]);
    for (const [index, answer] of answers.entries()) {
      expect(groupOf(answer.body)?.targets).toContain(targets[index]);
    }
    const lost = await expectExactly("billing", "prod", new Set(targets));
    report.push(`one group: ${tally.sent} POSTs sent, ${tally.acknowledged} acknowledged, ${lost} lost`);
  });

  it("1,000 concurrent POSTs spread over 50 application/environments all land", async () => {
    const tally: Tally = { sent: 0, acknowledged: 0 };
    const groups = Array.from({ length: 50 }, (_, index) => ({ application: `app${index % 10}`, environment: `env${Math.floor(index / 10)}` }));
    const sends = Array.from({ length: 1000 }, (_, index) => ({
      group: groups[index % groups.length] as (typeof groups)[number],
      target: `spread-${index}.example:9100`,
    }));
    const answers = await Promise.all(
      sends.map(({ group, target }) => post(`/${group.application}/${group.environment}`, [target], tally)),
    );

    expect(answers.filter((answer) => answer.status !== 200)).toEqual([]);
    let lost = 0;
    for (const group of groups) {
      const expected = new Set(sends.filter((send) => send.group === group).map((send) => send.target));
      expect(expected.size).toBe(20);
      lost += await expectExactly(group.application, group.environment, expected);
    }
    report.push(`50 groups: ${tally.sent} POSTs sent, ${tally.acknowledged} acknowledged, ${lost} lost`);
  });

  it("interleaved POSTs and DELETEs on one application/environment: deleted targets stay deleted", async () => {
    // Each target's requests are causally ordered (the next is sent once the
    // previous is answered), so its last acknowledged request decides whether it
    // is there, whatever order the server interleaved the targets in.
    const tally: Tally = { sent: 0, acknowledged: 0 };
    const refused: string[] = [];
    const check = (answer: Answer, what: string): void => {
      if (answer.status !== 200) refused.push(`${what}: ${answer.status} ${JSON.stringify(answer.body)}`);
    };
    const path = "/search/prod";
    const expected = new Set<string>();

    const churn = Array.from({ length: 400 }, async (_, index) => {
      const target = `churn-${index}.example:9100`;
      check(await post(path, [target], tally), `POST ${target}`);
      check(await remove(path, [target], tally), `DELETE ${target}`);
      if (index % 3 === 0) {
        check(await post(path, [target], tally), `POST ${target} again`);
        expected.add(target);
      }
    });
    const steady = Array.from({ length: 300 }, async (_, index) => {
      const target = `steady-${index}.example:9100`;
      check(await post(path, [target], tally), `POST ${target}`);
      expected.add(target);
    });
    await Promise.all([...churn, ...steady]);

    expect(refused).toEqual([]);
    expect(tally.sent).toBeGreaterThanOrEqual(1000);
    const lost = await expectExactly("search", "prod", expected);
    report.push(
      `POST/DELETE interleaved: ${tally.sent} mutations sent, ${tally.acknowledged} acknowledged, ${lost} lost, ` +
        `${expected.size} targets expected at the end`,
    );
  });

  it("concurrent label POSTs on one group each keep their own label", async () => {
    const tally: Tally = { sent: 0, acknowledged: 0 };
    await post("/mail/prod", ["mail.example:9100"], tally);
    const answers = await Promise.all(
      Array.from({ length: 300 }, (_, index) => {
        tally.sent++;
        return sd.request("POST", "/mail/prod", { body: { labels: { [`owner_${index}`]: `team-${index}` } } });
      }),
    );
    tally.acknowledged += answers.filter((answer) => answer.status === 200).length;
    expect(answers.filter((answer) => answer.status !== 200)).toEqual([]);
    const labels = groupOf((await sd.request("GET", "/mail/prod")).body)?.labels ?? {};
    const expected = Object.fromEntries([
      ["job", "mail"],
      ["env", "prod"],
      ...Array.from({ length: 300 }, (_, index) => [`owner_${index}`, `team-${index}`]),
    ]);
    expect(labels).toEqual(expected);
    expect(groupOf(((await sd.fileOf("mail", "prod")) as unknown[] | undefined))?.labels).toEqual(expected);
    report.push(`labels: ${tally.sent} POSTs sent, ${tally.acknowledged} acknowledged, 0 lost`);
  });
});
