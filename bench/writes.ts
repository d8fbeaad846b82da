import { readFile } from "node:fs/promises";
import { join } from "node:path";
import { formBody, type Group } from "./data.js";
import { formRequest, KeepAliveConnection } from "./keep-alive.js";
import { problemsOf, sustained, type LoadResult } from "./load.js";
import { Latencies, type Summary } from "./stats.js";

/** The write scenarios, each checking afterwards that every acknowledged change is in the file Prometheus reads. */

const FORM = { "content-type": "application/x-www-form-urlencoded" };

export interface Checked<Result> {
  readonly result: Result;
  readonly problems: string[];
}

export interface PutOptions {
  readonly url: string;
  readonly directory: string;
  /** One connection per application, so each application sees one write at a time. */
  readonly applications: readonly string[];
  readonly targets: readonly string[];
  readonly seconds: number;
}

/**
 * PUTs spread over applications: every connection replaces its own
 * application's group over and over, with a `seq` label counting up. The
 * file must end up with the last acknowledged `seq` (or the one still in
 * flight when the run stopped), never an older one.
 */
export async function putSpread(options: PutOptions): Promise<Checked<LoadResult>> {
  const acknowledged = new Map<string, number>();
  const result = await sustained({
    url: options.url,
    connections: options.applications.length,
    seconds: options.seconds,
    requestsOf: (connection) => {
      const application = options.applications[connection % options.applications.length] as string;
      let seq = 0;
      return [
        {
          method: "PUT",
          path: `/${application}/prod`,
          headers: FORM,
          setupRequest: (request) => ({ ...request, body: formBody(options.targets, { team: "core", seq: String(++seq) }) }),
          onResponse: (status, body) => {
            if (status !== 200) return;
            const answered = Number((JSON.parse(body) as Group[])[0]?.labels.seq);
            acknowledged.set(application, Math.max(acknowledged.get(application) ?? 0, answered));
          },
        },
      ];
    },
  });
  const problems = problemsOf("PUT", result);
  for (const [application, seq] of acknowledged) {
    const onDisk = await seqOnDisk(options.directory, application);
    if (!(onDisk >= seq)) {
      problems.push(`PUT: ${application}@prod.json holds seq ${onDisk} but seq ${seq} was acknowledged: a write was lost`);
    }
  }
  if (acknowledged.size === 0) problems.push("PUT: no write was acknowledged");
  return { result, problems };
}

async function seqOnDisk(directory: string, application: string): Promise<number> {
  try {
    const groups = JSON.parse(await readFile(join(directory, `${application}@prod.json`), "utf8")) as Group[];
    return Number(groups[0]?.labels.seq);
  } catch {
    return Number.NaN;
  }
}

export interface BurstOptions {
  readonly url: string;
  readonly directory: string;
  readonly application: string;
  readonly concurrency: number;
  readonly seconds: number;
}

/**
 * Bursts of `concurrency` POSTs to one application, all sent at once on open
 * keep-alive connections, each adding its own target. Between bursts the group
 * is reset with a PUT (not timed). req/s is requests over the time from the
 * first request sent to the last answer received, summed over bursts. After
 * every burst the file must hold every target that was acknowledged.
 */
export async function postBurst(options: BurstOptions): Promise<Checked<Summary>> {
  const port = Number(new URL(options.url).port);
  const path = `/${options.application}/prod`;
  const connections = await Promise.all(
    Array.from({ length: options.concurrency }, () => KeepAliveConnection.open(port)),
  );
  const problems: string[] = [];
  const latencies = new Latencies();
  let measuredMs = 0;
  try {
    const deadline = performance.now() + options.seconds * 1000;
    for (let round = 0; round === 0 || performance.now() < deadline; round++) {
      const reset = await connections[0]!.send(formRequest("PUT", path, formBody(["seed.example.net:9100"], {})));
      if (reset.status !== 200) problems.push(`POST burst: the reset PUT answered ${reset.status}: ${reset.body}`);

      const targets = connections.map((_, index) => `burst-${round}-${index}.example.net:9100`);
      const requests = targets.map((target) => formRequest("POST", path, formBody([target], {})));
      const started = performance.now();
      const answers = await Promise.all(
        connections.map(async (connection, index) => {
          const sent = performance.now();
          const answer = await connection.send(requests[index]!);
          latencies.add(performance.now() - sent);
          return answer;
        }),
      );
      measuredMs += performance.now() - started;

      const acknowledged = targets.filter((_, index) => answers[index]!.status === 200);
      for (const answer of answers) {
        if (answer.status !== 200) problems.push(`POST burst: answered ${answer.status}: ${answer.body}`);
      }
      const groups = JSON.parse(await readFile(join(options.directory, `${options.application}@prod.json`), "utf8")) as Group[];
      const onDisk = new Set(groups[0]?.targets);
      const lost = acknowledged.filter((target) => !onDisk.has(target));
      if (lost.length > 0) problems.push(`POST burst: ${lost.length} acknowledged targets are not in the file, e.g. ${lost[0]}`);
      if (problems.length > 0) break;
    }
  } finally {
    for (const connection of connections) connection.close();
  }
  return { result: latencies.summary(measuredMs / 1000), problems };
}
