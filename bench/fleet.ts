import { mkdir } from "node:fs/promises";
import { join } from "node:path";
import { Etcd3 } from "etcd3";
import { startEtcdCluster } from "../test/support/etcd.js";
import { drive, type Measured } from "./heartbeats.js";
import { formRequest, KeepAliveConnection } from "./keep-alive.js";
import { startService, type ServiceProcess } from "./processes.js";

/**
 * Heartbeats at fleet scale (issue 18), BENCH_ONLY=fleet: 100,000 expiring targets (1,000 groups
 * × 100, registered by PUT with ?ttl=60s), renewed by `POST /hb/g<k>?ttl=60s` naming one
 * registered target, FLEET_RATE a second for FLEET_SECONDS over keep-alive connections: at
 * 5,000/s each host renews every 20 s, a third of its ttl, so a renewal that was lost or late
 * shows as a missing target at the end. With the default RENEWAL_SLACK (2 s) such a renewal
 * moves a deadline too far to be answered from memory (each is written, in lane batches);
 * with RENEWAL_SLACK=30s it is answered from memory. Beside it
 * the same rate without ?ttl= on permanent targets (400 "already registered": HTTP and rules,
 * nothing written) and GET of one group. At the end every group is read back: every target
 * must still be there ("no early expiry"). In etcd mode the same load is spread over two
 * instances of one three-member cluster, and no instance may have dropped a target less than
 * ttl after its last acknowledged renewal, through either instance; a target whose renewals
 * the load could not send within its ttl (the machine fell behind) is counted as lapsed.
 */

export const FLEET_GROUPS = 1000;
export const FLEET_PER_GROUP = 100;
const CONNECTIONS = 50;
const TTL = "?ttl=60s";
const TTL_MS = 60_000;
const SETUP_CONNECTIONS = 8;

export interface FleetRow {
  readonly scenario: string;
  readonly measured: Measured;
  /** CPU per request, µs, per instance. */
  readonly cpuMicros: readonly number[];
  readonly noEarlyExpiry?: boolean;
  readonly note?: string;
}

export interface FleetOptions {
  readonly work: string;
  readonly seconds: number;
  readonly rate: number;
  readonly etcd: boolean;
  /** The file-mode runs and the crash test (FLEET_ETCD=only leaves them out). */
  readonly fileMode: boolean;
  readonly problems: string[];
  /** Given to node before the service's script (BENCH_CPU_PROF's `--cpu-prof`). */
  readonly nodeArgs: readonly string[];
}

const targetOf = (group: number, i: number): string => `h${group}-${i}.example.net:9100`;

/** The n-th request of the load: group n mod 1,000, the next of its targets each time round. */
function renewal(n: number, suffix: string): Buffer {
  const group = n % FLEET_GROUPS;
  const i = Math.floor(n / FLEET_GROUPS) % FLEET_PER_GROUP;
  return formRequest("POST", `/hb/g${group}${suffix}`, `targets=${targetOf(group, i)}`);
}

function getRequest(path: string): Buffer {
  return Buffer.from(`GET ${path} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: keep-alive\r\n\r\n`);
}

const portOf = (service: ServiceProcess): number => Number(new URL(service.url).port);

/** 1,000 PUTs of 100 targets over a few connections; when each group's PUT was sent (Date.now()). */
async function register(service: ServiceProcess, suffix: string): Promise<number[]> {
  const connections = await Promise.all(Array.from({ length: SETUP_CONNECTIONS }, () => KeepAliveConnection.open(portOf(service))));
  const sentAt: number[] = [];
  let next = 0;
  try {
    await Promise.all(
      connections.map(async (connection) => {
        for (let group = next++; group < FLEET_GROUPS; group = next++) {
          const targets = Array.from({ length: FLEET_PER_GROUP }, (_, i) => targetOf(group, i)).join(",");
          sentAt[group] = Date.now();
          const answer = await connection.send(formRequest("PUT", `/hb/g${group}${suffix}`, `targets=${targets}`));
          if (answer.status !== 200) throw new Error(`setup PUT /hb/g${group} answered ${answer.status}: ${answer.body}`);
        }
      }),
    );
  } finally {
    for (const connection of connections) connection.close();
  }
  return sentAt;
}

/**
 * Every target read back from `service`, against the last request that
 * acknowledged it (`acknowledgedAt`: when that renewal, or the registration,
 * was sent): gone although one was sent less than `ttl` before the read is an
 * early expiry; gone when none was for longer ("lapsed") means the load did
 * not come round to it in time, not that the service dropped it early.
 */
async function expiriesOf(service: ServiceProcess, acknowledgedAt: (group: number, i: number) => number, ttlMs: number): Promise<{ early: number; lapsed: number }> {
  let early = 0;
  let lapsed = 0;
  (await readBack(service)).forEach(({ present, readAt }, group) => {
    for (let i = 0; i < FLEET_PER_GROUP; i++) {
      if (present.has(targetOf(group, i))) continue;
      if (acknowledgedAt(group, i) + ttlMs > readAt) early++;
      else lapsed++;
    }
  });
  return { early, lapsed };
}

/** Every group read back, in order: the targets it holds, and when the GET was sent (Date.now()). */
async function readBack(service: ServiceProcess): Promise<{ present: Set<string>; readAt: number }[]> {
  const connection = await KeepAliveConnection.open(portOf(service));
  const read: { present: Set<string>; readAt: number }[] = [];
  try {
    for (let group = 0; group < FLEET_GROUPS; group++) {
      const readAt = Date.now();
      const answer = await connection.send(getRequest(`/hb/g${group}`));
      const groups = answer.status === 200 ? (JSON.parse(answer.body) as { targets: string[] }[]) : [];
      read.push({ present: new Set(groups[0]?.targets ?? []), readAt });
    }
  } finally {
    connection.close();
  }
  return read;
}

/** The groups (of 1,000) that do not hold all their 100 targets. */
async function missingGroups(service: ServiceProcess): Promise<number[]> {
  const missing: number[] = [];
  (await readBack(service)).forEach(({ present }, group) => {
    if (!Array.from({ length: FLEET_PER_GROUP }, (_, i) => targetOf(group, i)).every((target) => present.has(target))) missing.push(group);
  });
  return missing;
}

async function cpuOf<T>(services: readonly ServiceProcess[], run: () => Promise<T & { count: number }>): Promise<{ result: T & { count: number }; cpuMicros: number[] }> {
  const before = await Promise.all(services.map((service) => service.cpuSeconds()));
  const result = await run();
  const after = await Promise.all(services.map((service) => service.cpuSeconds()));
  return { result, cpuMicros: after.map((seconds, i) => ((seconds - (before[i] as number)) * 1e6) / Math.max(1, result.count)) };
}

export async function fleet(options: FleetOptions): Promise<{ rows: FleetRow[]; notes: string[] }> {
  const rows: FleetRow[] = [];
  const notes: string[] = [];
  const { seconds, rate } = options;
  const label = `${(FLEET_GROUPS * FLEET_PER_GROUP).toLocaleString("en-US")} targets`;

  // File mode: renewals with the default slack and with 30 s, GETs, and the 400 baseline on an instance with permanent targets.
  for (const variant of options.fileMode ? ([{ slack: undefined }, { slack: "30s" }, { slack: "permanent" }] as const) : []) {
    const withTtl = variant.slack !== "permanent";
    const name = withTtl ? `fleet-ttl-${variant.slack ?? "default"}` : "fleet-permanent";
    const directory = join(options.work, name);
    await mkdir(directory, { recursive: true });
    const env: Record<string, string> = variant.slack === undefined || variant.slack === "permanent" ? {} : { RENEWAL_SLACK: variant.slack };
    const service = await startService({ directory, logFile: join(options.work, `${name}.log`), logLevel: "info", env, nodeArgs: [...options.nodeArgs] });
    try {
      const setupStarted = performance.now();
      await register(service, withTtl ? TTL : "");
      notes.push(`File mode, ${withTtl ? "expiring" : "permanent"}: ${label} registered in ${((performance.now() - setupStarted) / 1000).toFixed(1)} s (1,000 PUTs).`);
      if (withTtl) {
        const slack = variant.slack ?? "2s (default)";
        const renewed = await cpuOf([service], () => drive(service, portOf(service), seconds, rate, (n) => renewal(n, TTL), CONNECTIONS));
        const missing = await missingGroups(service);
        if (missing.length > 0) options.problems.push(`fleet, file mode, RENEWAL_SLACK=${slack}: ${missing.length} groups lost targets (first: g${missing[0]})`);
        const memory = await service.memory();
        rows.push({
          scenario: `file mode, ${label} with ${TTL}, RENEWAL_SLACK=${slack}: ${rate}/s renewals`,
          measured: { ...renewed.result, rssMb: memory.rssMb, peakMb: memory.peakMb },
          cpuMicros: renewed.cpuMicros,
          noEarlyExpiry: missing.length === 0,
          note: await renewalModes(service),
        });
        if (variant.slack === undefined) {
          const got = await cpuOf([service], () => drive(service, portOf(service), seconds, rate, (n) => getRequest(`/hb/g${n % FLEET_GROUPS}`), CONNECTIONS));
          rows.push({ scenario: `file mode: ${rate}/s GETs of one group (100 targets)`, measured: got.result, cpuMicros: got.cpuMicros });
        }
      } else {
        const refused = await cpuOf([service], () => drive(service, portOf(service), seconds, rate, (n) => renewal(n, ""), CONNECTIONS));
        rows.push({ scenario: `file mode, ${label} permanent: ${rate}/s POSTs without ?ttl= (400, nothing written)`, measured: refused.result, cpuMicros: refused.cpuMicros });
      }
    } finally {
      await service.stop();
    }
  }

  if (options.fileMode) await crashUnderFleet(options, rows, notes);
  if (options.etcd) await fleetEtcd(options, rows, notes, label);
  return { rows, notes };
}

/**
 * The crash test at fleet scale (file mode, default slack): renewals at the fleet's rate, a
 * SIGKILL the moment the last one is answered (the last second's renewals not yet flushed, some
 * answered from memory), a restart on the same directory. Then every target's deadline is read
 * back: none may be earlier than `ttl` after its last acknowledged renewal was sent (the lower
 * bound), none later than `ttl` + the slack after it was answered (the bound a crash adds).
 */
async function crashUnderFleet(options: FleetOptions, rows: FleetRow[], notes: string[]): Promise<void> {
  const ttlMs = TTL_MS;
  const slackMs = 2000;
  const directory = join(options.work, "fleet-crash");
  await mkdir(directory, { recursive: true });
  const logFile = join(options.work, "fleet-crash.log");
  const service = await startService({ directory, logFile, logLevel: "info", nodeArgs: [...options.nodeArgs] });
  let restarted: ServiceProcess | undefined;
  try {
    const registeredFrom = Date.now();
    await register(service, TTL);
    const registeredTo = Date.now();
    const last = new Map<number, { sentAt: number; answeredAt: number }>();
    const seconds = Math.min(options.seconds, 15);
    const renewed = await cpuOf([service], () =>
      drive(service, portOf(service), seconds, options.rate, (n) => renewal(n, TTL), CONNECTIONS, (n, sentAt, answeredAt, status) => {
        const group = n % FLEET_GROUPS;
        const i = Math.floor(n / FLEET_GROUPS) % FLEET_PER_GROUP;
        if (status === 200) last.set(group * FLEET_PER_GROUP + i, { sentAt, answeredAt });
      }),
    );
    const modes = await renewalModes(service);
    await service.kill();
    restarted = await startService({ directory, logFile, logLevel: "info" });
    const index = (await (await fetch(`${restarted.url}/`, { headers: { accept: "application/json" } })).json()) as { groups: { application: string; environment: string; expires?: Record<string, string> }[] };
    const byGroup = new Map(index.groups.filter((line) => line.application === "hb").map((line) => [line.environment, line.expires ?? {}]));
    let early = 0;
    let late = 0;
    let missing = 0;
    for (let group = 0; group < FLEET_GROUPS; group++) {
      const expires = new Map(Object.entries(byGroup.get(`g${group}`) ?? {}));
      for (let i = 0; i < FLEET_PER_GROUP; i++) {
        const deadline = expires.get(targetOf(group, i));
        if (deadline === undefined) {
          missing++;
          continue;
        }
        const at = Date.parse(deadline);
        const acknowledged = last.get(group * FLEET_PER_GROUP + i) ?? { sentAt: registeredFrom, answeredAt: registeredTo };
        if (at < acknowledged.sentAt + ttlMs) early++;
        if (at > acknowledged.answeredAt + ttlMs + slackMs) late++;
      }
    }
    if (early + late + missing > 0) options.problems.push(`fleet crash: ${early} deadlines earlier than ttl after their acknowledged renewal, ${late} later than ttl + slack, ${missing} targets missing after the restart`);
    rows.push({
      scenario: `file mode, crash: SIGKILL right after ${renewed.result.count.toLocaleString("en-US")} renewals at ${options.rate}/s (RENEWAL_SLACK=2s), restart in ${(restarted.startupMs / 1000).toFixed(1)} s: deadlines earlier than ttl after the last acknowledged renewal ${early}, later than ttl + slack ${late}, targets missing ${missing}`,
      measured: renewed.result,
      cpuMicros: renewed.cpuMicros,
      noEarlyExpiry: early === 0 && missing === 0,
      note: modes,
    });
    notes.push(`Crash at fleet scale: ${last.size.toLocaleString("en-US")} targets renewed before the SIGKILL, every one of 100,000 read back after the restart.`);
  } finally {
    await service.kill();
    await restarted?.stop();
  }
}

async function fleetEtcd(options: FleetOptions, rows: FleetRow[], notes: string[], label: string): Promise<void> {
  const { seconds, rate } = options;
  const cluster = await startEtcdCluster();
  const prefix = "/bench-fleet/";
  // Renewals every 20 s are answered from memory only with a slack above that (docs/heartbeats.md).
  const env = { ETCD_ENDPOINTS: cluster.endpoints.join(","), ETCD_PREFIX: prefix, RENEWAL_SLACK: "30s" };
  const started: ServiceProcess[] = [];
  const client = new Etcd3({ hosts: [...cluster.endpoints] });
  try {
    for (const name of ["fleet-etcd-a", "fleet-etcd-b"]) {
      const directory = join(options.work, name);
      await mkdir(directory, { recursive: true });
      started.push(await startService({ directory, logFile: join(options.work, `${name}.log`), logLevel: "info", env, nodeArgs: [...options.nodeArgs] }));
    }
    const [a, b] = started as [ServiceProcess, ServiceProcess];
    const setupStarted = performance.now();
    const registeredAt = await register(a, TTL);
    notes.push(`etcd mode: ${label} registered through one instance in ${((performance.now() - setupStarted) / 1000).toFixed(1)} s.`);
    // Both instances must hold everything before the load starts.
    const settled = performance.now() + 30_000;
    while ((await missingGroups(b)).length > 0) {
      if (performance.now() > settled) throw new Error("the second instance did not get every group within 30 s");
      await new Promise((resolve) => setTimeout(resolve, 200));
    }
    const revision = async (): Promise<number> => Number((await client.get(`${prefix}revision-probe`).exec()).header.revision);
    const revisionBefore = await revision();
    const wallStarted = performance.now();
    // Connections alternate between the instances: every group is renewed through both.
    const timeline = sampleEvery(5000, started);
    // The last acknowledged renewal of each target, through either instance.
    const renewedAt = new Map<number, number>();
    const renewed = await cpuOf(started, () =>
      drive(a, [portOf(a), portOf(b)], seconds, rate, (n) => renewal(n, TTL), CONNECTIONS, (n, sentAt, _answeredAt, status) => {
        if (status === 200) renewedAt.set((n % FLEET_GROUPS) * FLEET_PER_GROUP + (Math.floor(n / FLEET_GROUPS) % FLEET_PER_GROUP), sentAt);
      }),
    );
    notes.push(`etcd mode, every 5 s of the load (per instance, a / b): ${(await timeline.stop()).join("; ")}.`);
    const wall = (performance.now() - wallStarted) / 1000;
    const transactions = ((await revision()) - revisionBefore) / wall;
    const acknowledgedAt = (group: number, i: number): number => renewedAt.get(group * FLEET_PER_GROUP + i) ?? (registeredAt[group] as number);
    const onA = await expiriesOf(a, acknowledgedAt, TTL_MS);
    const onB = await expiriesOf(b, acknowledgedAt, TTL_MS);
    if (onA.early + onB.early > 0) options.problems.push(`fleet, etcd mode: targets gone less than ttl after an acknowledged renewal (${onA.early} on a, ${onB.early} on b)`);
    const [memoryA, memoryB] = await Promise.all([a.memory(), b.memory()]);
    const keptUp = onA.lapsed + onB.lapsed === 0;
    rows.push({
      scenario: `etcd mode, two instances, ${label} with ${TTL}, RENEWAL_SLACK=30s: ${rate}/s renewals offered${keptUp ? "" : `, **not kept up**: ${onA.lapsed} / ${onB.lapsed} targets lapsed (no renewal for over ttl)`}`,
      measured: { ...renewed.result, rssMb: Math.max(memoryA.rssMb, memoryB.rssMb), peakMb: Math.max(memoryA.peakMb, memoryB.peakMb) },
      cpuMicros: renewed.cpuMicros,
      noEarlyExpiry: onA.early === 0 && onB.early === 0,
      note: `${transactions.toFixed(0)} etcd transactions/s (revision delta ÷ ${wall.toFixed(1)} s); a: ${await renewalModes(a)}; b: ${await renewalModes(b)}`,
    });
    notes.push(
      `etcd mode: targets gone less than ttl after an acknowledged renewal: ${onA.early} on instance a, ${onB.early} on b; ` +
        `gone after more than ttl without one (the load fell behind): ${onA.lapsed} on a, ${onB.lapsed} on b ` +
        "(each group was renewed through both instances; a renewal through one instance must keep the target on the other).",
    );
  } finally {
    client.close();
    await Promise.all(started.map((service) => service.stop().catch(() => undefined)));
    await cluster.stop();
  }
}

/** Counters of the instances every `ms`, as the change over each period: what the load did over time. */
function sampleEvery(ms: number, services: readonly ServiceProcess[]): { stop(): Promise<string[]> } {
  const series = [
    ["from memory", 'file_sd_renewals_total{mode="memory"}'],
    ["written first", 'file_sd_renewals_total{mode="durable"}'],
    ["flushes", "file_sd_renewal_flushes_total"],
    ["conflicts", "file_sd_etcd_txn_conflicts_total"],
    ["503s", 'file_sd_http_requests_total{method="POST",route="/:application/:environment",status="503"}'],
    ["commit s", "file_sd_etcd_commit_duration_seconds_sum"],
    ["commits", "file_sd_etcd_commit_duration_seconds_count"],
  ] as const;
  const read = async (service: ServiceProcess): Promise<number[]> => {
    const text = await (await fetch(`${service.url}/metrics`)).text();
    return series.map(([, name]) => {
      const line = text.split("\n").find((candidate) => candidate.startsWith(`${name} `));
      return line === undefined ? 0 : Number(line.slice(name.length + 1));
    });
  };
  const lines: string[] = [];
  let previous: number[][] | undefined;
  let period = 0;
  const sample = async (): Promise<void> => {
    const now = await Promise.all(services.map(read));
    if (previous !== undefined) {
      const was = previous;
      const parts = series.map(([label], i) => {
        const deltas = now.map((values, s) => (values[i] as number) - (was[s]![i] as number));
        return label === "commit s" ? "" : `${label} ${deltas.map((delta) => delta.toFixed(0)).join("/")}`;
      });
      const meanCommitMs = now.map((values, s) => {
        const count = (values[6] as number) - (was[s]![6] as number);
        return count === 0 ? "-" : ((((values[5] as number) - (was[s]![5] as number)) / count) * 1000).toFixed(0);
      });
      lines.push(`${(period += ms / 1000)} s: ${parts.filter((part) => part !== "").join(", ")}, mean commit ${meanCommitMs.join("/")} ms`);
    }
    previous = now;
  };
  let running = sample();
  const timer = setInterval(() => {
    running = running.then(sample, () => undefined);
  }, ms);
  return {
    async stop() {
      clearInterval(timer);
      await running.catch(() => undefined);
      return lines;
    },
  };
}

/** How the service answered its renewals, from its own counter (file_sd_renewals_total{mode}). */
async function renewalModes(service: ServiceProcess): Promise<string> {
  const text = await (await fetch(`${service.url}/metrics`)).text();
  const count = (mode: string): number => Number(new RegExp(`^file_sd_renewals_total\\{mode="${mode}"\\} (\\S+)$`, "m").exec(text)?.[1] ?? Number.NaN);
  return `renewals answered from memory: ${count("memory")}, written first: ${count("durable")}`;
}

export function fleetTable(rows: readonly FleetRow[]): string {
  const lines = [
    "| scenario | req/s | answers | CPU per request | p50 | p99 | RSS | no early expiry |",
    "|---|--:|---|--:|--:|--:|--:|:-:|",
    ...rows.map(
      (row) =>
        `| ${row.scenario}${row.note === undefined ? "" : ` (${row.note})`} | ${row.measured.requestsPerSecond.toFixed(0)} | ${row.measured.statuses} | ` +
        `${row.cpuMicros.map((micros) => `${micros.toFixed(0)} µs`).join(" + ")} | ${row.measured.p50Ms.toFixed(2)} ms | ${row.measured.p99Ms.toFixed(2)} ms | ` +
        `${row.measured.rssMb.toFixed(0)} MB | ${row.noEarlyExpiry === undefined ? "" : row.noEarlyExpiry ? "yes" : "**no**"} |`,
    ),
  ];
  return lines.join("\n");
}
