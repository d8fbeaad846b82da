import autocannon from "autocannon";
import { Latencies, type Summary } from "./stats.js";

/** Sustained load with autocannon; latencies are collected here, at full resolution (autocannon rounds to ms). */

export interface LoadResult extends Summary {
  /** Answers per status code, e.g. { "200": 51234 }. */
  readonly statuses: Readonly<Record<string, number>>;
  readonly non2xx: number;
  /** Connection errors and timeouts. */
  readonly errors: number;
}

export interface LoadOptions {
  readonly url: string;
  readonly connections: number;
  readonly seconds: number;
  readonly method?: string;
  readonly path?: string;
  readonly headers?: Record<string, string>;
  readonly body?: string;
  /** Called once per connection with its index: gives that connection its own requests. */
  readonly requestsOf?: (connection: number) => autocannon.Request[];
}

export function sustained(options: LoadOptions): Promise<LoadResult> {
  const latencies = new Latencies();
  let next = 0;
  const requestsOf = options.requestsOf;
  return new Promise((resolve, reject) => {
    const instance = autocannon(
      {
        url: options.url + (options.path ?? ""),
        connections: options.connections,
        duration: options.seconds,
        timeout: 30,
        method: options.method ?? "GET",
        ...(options.headers === undefined ? {} : { headers: options.headers }),
        ...(options.body === undefined ? {} : { body: options.body }),
        ...(requestsOf === undefined ? {} : { setupClient: (client) => client.setRequests(requestsOf(next++)) }),
      },
      (error, result) => {
        if (error !== null) {
          reject(error);
          return;
        }
        const statuses = Object.fromEntries(
          Object.entries(result.statusCodeStats).map(([status, { count }]) => [status, count]),
        );
        resolve({
          ...latencies.summary(result.duration),
          statuses,
          non2xx: result.non2xx,
          errors: result.errors + result.timeouts,
        });
      },
    );
    instance.on("response", (_client: unknown, _status: number, _bytes: number, milliseconds: number) =>
      latencies.add(milliseconds),
    );
  });
}

/** A short run that is thrown away, so that both sides are measured with warm JITs and open files. */
export async function warmUp(options: LoadOptions): Promise<void> {
  await sustained({ ...options, seconds: 1 });
}

export function problemsOf(scenario: string, result: LoadResult): string[] {
  const problems: string[] = [];
  if (result.non2xx > 0) {
    problems.push(`${scenario}: ${result.non2xx} answers were not 2xx (${JSON.stringify(result.statuses)})`);
  }
  if (result.errors > 0) problems.push(`${scenario}: ${result.errors} connection errors or timeouts`);
  if (result.count === 0) problems.push(`${scenario}: no request was answered`);
  return problems;
}
