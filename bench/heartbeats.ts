import { mkdir } from "node:fs/promises";
import { join } from "node:path";
import { formRequest, KeepAliveConnection } from "./keep-alive.js";
import { startService } from "./processes.js";
import { median, percentile } from "./stats.js";

/**
 * Expiring registrations under load: 10,000 targets (100 groups of 100) whose hosts send a
 * heartbeat, `POST /hb/g<k>?ttl=10m` with their own target, about 1,000 a
 * second in all, beside the same targets registered permanently and the same
 * requests without `?ttl=` (each then a 400 "already registered": the HTTP,
 * parsing and rule cost with no write). Also both registries idle, to show
 * what the expiry scan costs on its own.
 */

const GROUPS = 100;
const PER_GROUP = 100;
const CONNECTIONS = 20;

export interface HeartbeatRow {
  readonly scenario: string;
  readonly requestsPerSecond: number;
  readonly statuses: string;
  readonly p50Ms: number;
  readonly p99Ms: number;
  /** CPU time the service used per wall-clock second, as a share of one core. */
  readonly cpuShare: number;
  readonly rssMb: number;
  readonly peakMb: number;
}

const targetOf = (group: number, i: number): string => `h${group}-${i}.example.net:9100`;

export async function heartbeats(work: string, seconds: number, rate: number): Promise<HeartbeatRow[]> {
  const rows: HeartbeatRow[] = [];
  for (const withTtl of [false, true]) {
    const directory = join(work, withTtl ? "hb-ttl" : "hb-permanent");
    await mkdir(directory, { recursive: true });
    const service = await startService({ directory, logFile: join(work, `${withTtl ? "hb-ttl" : "hb-permanent"}.log`), logLevel: "info" });
    try {
      const port = Number(new URL(service.url).port);
      const setup = await KeepAliveConnection.open(port);
      for (let group = 0; group < GROUPS; group++) {
        const targets = Array.from({ length: PER_GROUP }, (_, i) => targetOf(group, i)).join(",");
        const answer = await setup.send(formRequest("PUT", `/hb/g${group}${withTtl ? "?ttl=10m" : ""}`, `targets=${targets}`));
        if (answer.status !== 200) throw new Error(`setup PUT answered ${answer.status}: ${answer.body}`);
      }
      setup.close();
      const label = withTtl ? "10,000 targets with ?ttl=10m" : "10,000 permanent targets";
      rows.push({ ...(await idle(service, seconds)), scenario: `${label}, idle` });
      const suffix = withTtl ? "?ttl=10m" : "";
      rows.push({
        ...(await drive(service, port, seconds, rate, (n) => {
          const group = n % GROUPS;
          const i = Math.floor(n / GROUPS) % PER_GROUP;
          return formRequest("POST", `/hb/g${group}${suffix}`, `targets=${targetOf(group, i)}`);
        })),
        scenario: withTtl ? `${label}, ${rate}/s heartbeats (renewals, written)` : `${label}, ${rate}/s POSTs without ttl (400, nothing written)`,
      });
    } finally {
      await service.stop();
    }
  }
  return rows;
}

export type Measured = Omit<HeartbeatRow, "scenario"> & { readonly count: number };

async function idle(service: Awaited<ReturnType<typeof startService>>, seconds: number): Promise<Measured> {
  const cpuBefore = await service.cpuSeconds();
  const started = performance.now();
  await new Promise((resolve) => setTimeout(resolve, seconds * 1000));
  const cpu = (await service.cpuSeconds()) - cpuBefore;
  const memory = await service.memory();
  return { count: 0, requestsPerSecond: 0, statuses: "-", p50Ms: 0, p99Ms: 0, cpuShare: cpu / ((performance.now() - started) / 1000), rssMb: memory.rssMb, peakMb: memory.peakMb };
}

/**
 * `rate` requests a second, paced over `connectionCount` keep-alive connections (a late one is
 * sent at once). `ports` spreads the connections over several instances, round robin; the CPU
 * and memory are those of `service`.
 */
export async function drive(
  service: { cpuSeconds(): Promise<number>; memory(): Promise<{ rssMb: number; peakMb: number }> },
  port: number | readonly number[],
  seconds: number,
  rate: number,
  requestOf: (n: number) => Buffer,
  connectionCount = CONNECTIONS,
  /** Each answer: the request's number, when it was sent and answered (Date.now()), its status. */
  answered?: (n: number, sentAt: number, answeredAt: number, status: number) => void,
): Promise<Measured> {
  const ports = typeof port === "number" ? [port] : port;
  const connections = await Promise.all(Array.from({ length: connectionCount }, (_, i) => KeepAliveConnection.open(ports[i % ports.length] as number)));
  const latencies: number[] = [];
  const statuses = new Map<number, number>();
  let next = 0;
  const cpuBefore = await service.cpuSeconds();
  const started = performance.now();
  const end = started + seconds * 1000;
  const interval = 1000 / rate;
  await Promise.all(
    connections.map(async (connection) => {
      for (;;) {
        const n = next++;
        const due = started + n * interval;
        if (due >= end) return;
        const wait = due - performance.now();
        if (wait > 0) await new Promise((resolve) => setTimeout(resolve, wait));
        const sent = performance.now();
        const sentAt = Date.now();
        const answer = await connection.send(requestOf(n));
        latencies.push(performance.now() - sent);
        answered?.(n, sentAt, Date.now(), answer.status);
        statuses.set(answer.status, (statuses.get(answer.status) ?? 0) + 1);
      }
    }),
  );
  const wall = (performance.now() - started) / 1000;
  const cpu = (await service.cpuSeconds()) - cpuBefore;
  const memory = await service.memory();
  for (const connection of connections) connection.close();
  latencies.sort((a, b) => a - b);
  return {
    count: latencies.length,
    requestsPerSecond: latencies.length / wall,
    statuses: [...statuses].map(([status, count]) => `${count}×${status}`).join(", "),
    p50Ms: median(latencies),
    p99Ms: percentile(latencies, 0.99),
    cpuShare: cpu / wall,
    rssMb: memory.rssMb,
    peakMb: memory.peakMb,
  };
}

export function heartbeatTable(rows: readonly HeartbeatRow[]): string {
  const lines = [
    "| scenario | req/s | answers | p50 | p99 | CPU (share of a core) | RSS | peak RSS |",
    "|---|---:|---|---:|---:|---:|---:|---:|",
    ...rows.map(
      (row) =>
        `| ${row.scenario} | ${row.requestsPerSecond === 0 ? "-" : row.requestsPerSecond.toFixed(0)} | ${row.statuses} | ` +
        `${row.p50Ms === 0 ? "-" : `${row.p50Ms.toFixed(2)} ms`} | ${row.p99Ms === 0 ? "-" : `${row.p99Ms.toFixed(2)} ms`} | ` +
        `${(row.cpuShare * 100).toFixed(1)} % | ${row.rssMb.toFixed(0)} MB | ${row.peakMb.toFixed(0)} MB |`,
    ),
  ];
  return lines.join("\n");
}
