import { execFileSync } from "node:child_process";
import { mkdtemp, readFile, rm } from "node:fs/promises";
import { availableParallelism, cpus, loadavg, release, tmpdir } from "node:os";
import { join } from "node:path";
import { applicationName, formBody, groupFileText, targetsOf, writeGroups } from "./data.js";
import { problemsOf, sustained, warmUp, type LoadOptions, type LoadResult } from "./load.js";
import { startBareServer, startService, type ServiceProcess } from "./processes.js";
import { rawWriteLoop } from "./raw-writes.js";
import { troubleIn } from "./service-log.js";
import { limitTable, milliseconds, scenarioTable, type Limit, type Row } from "./report.js";
import { median, type Summary } from "./stats.js";
import { etcdPhase } from "./etcd.js";
import { heartbeats, heartbeatTable, type HeartbeatRow } from "./heartbeats.js";
import { postBurst, putSpread } from "./writes.js";
import { fleet, fleetTable, type FleetRow } from "./fleet.js";

/**
 * `make bench`: the built service beside its baselines, in one run, printed as
 * markdown for BENCHMARKS.md. Exits 1 when an answer was not 2xx or an
 * acknowledged write is missing from disk; a ratio below its target is
 * reported, not fatal (the numbers depend on the machine and its neighbours).
 *
 * BENCH_SECONDS    seconds per measured run (default 5)
 * BENCH_ONLY       comma-separated phases: get, writes, loglevel, scale, ttl, etcd, fleet (default all)
 * FLEET_SECONDS    seconds per run of the fleet phase (default 30)
 * FLEET_RATE       renewals a second in the fleet phase (default 5000)
 * FLEET_ETCD=0     the fleet phase in file mode only (default: file and etcd mode); =only: etcd mode only
 * BENCH_HEARTBEATS heartbeats a second in the ttl phase (default 1000)
 * BENCH_CPU_PROF   a directory: run every service with `node --cpu-prof` and leave the profiles there
 * BENCH_KEEP=1     keep the temporary directory (service logs, files) and print where it is
 * BENCH_SERVICE    the service's main.js to run instead of dist/main.js (A/B runs against an older build)
 */

const SECONDS = Number(process.env.BENCH_SECONDS ?? 5);
const PHASES = new Set((process.env.BENCH_ONLY ?? "get,writes,loglevel,scale,ttl,etcd,fleet").split(","));
const HEARTBEATS = Number(process.env.BENCH_HEARTBEATS ?? 1000);
const CPU_PROF = process.env.BENCH_CPU_PROF;
const FLEET_SECONDS = Number(process.env.FLEET_SECONDS ?? 30);
const FLEET_RATE = Number(process.env.FLEET_RATE ?? 5000);
const SCALE_GROUPS = 10_000;
const SCALE_TARGETS = 20;
const GET_CONNECTIONS = 50;
const BIG_GET_CONNECTIONS = 8;
const PUT_APPLICATIONS = 50;
const BURST = 64;
const GROUP_PATH = "/billing/prod";
const GROUP_BODY = formBody(["10.0.0.1:9100", "10.0.0.2:9100", "db-1.example.net:9187"], { team: "payments" });

const problems: string[] = [];
const rows: Row[] = [];
const logLevelRows: Row[] = [];
const limits: Limit[] = [];
const etcdLimits: Limit[] = [];
let heartbeatRows: HeartbeatRow[] = [];
let fleetRows: FleetRow[] = [];
const notes: string[] = [];

async function main(): Promise<void> {
  const began = performance.now();
  const work = await mkdtemp(join(tmpdir(), "file-sd-bench-"));
  console.log(machine(work));
  try {
    if (PHASES.has("get") || PHASES.has("writes")) await mainScenarios(work, "info", rows);
    if (PHASES.has("loglevel")) await mainScenarios(work, "warn", logLevelRows);
    if (PHASES.has("scale")) await scale(work);
    if (PHASES.has("etcd")) {
      await etcdPhase({
        work,
        seconds: SECONDS,
        applications: Array.from({ length: PUT_APPLICATIONS }, (_, index) => applicationName(index)),
        filePutPerSecond: rows.find((row) => row.scenario === `PUT over ${PUT_APPLICATIONS} applications`)?.result?.perSecond,
        start: (name, options) => start(work, name, "info", options.env),
        rows,
        limits: etcdLimits,
        notes,
        problems,
      });
    }
    if (PHASES.has("ttl")) heartbeatRows = await heartbeats(work, SECONDS * 2, HEARTBEATS);
    if (PHASES.has("fleet")) {
      const result = await fleet({ work, seconds: FLEET_SECONDS, rate: FLEET_RATE, etcd: process.env.FLEET_ETCD !== "0", fileMode: process.env.FLEET_ETCD !== "only", problems, nodeArgs: profileArgs() });
      fleetRows = result.rows;
      notes.push(...result.notes);
    }
    const trouble = await troubleIn(logFiles);
    if (trouble !== undefined) notes.push(trouble);
  } finally {
    if (process.env.BENCH_KEEP === "1") console.log(`\n(kept ${work})`);
    else await rm(work, { recursive: true, force: true });
  }

  console.log(`\n#### Throughput (LOGLEVEL=info, ${SECONDS} s per run)\n`);
  console.log(scenarioTable(rows));
  if (logLevelRows.length > 0) {
    console.log("\n#### The same with LOGLEVEL=warn\n");
    console.log(scenarioTable(logLevelRows));
  }
  if (limits.length > 0) {
    console.log(`\n#### Scale: ${SCALE_GROUPS.toLocaleString("en-US")} applications × ${SCALE_TARGETS} targets\n`);
    console.log(limitTable(limits));
  }
  if (etcdLimits.length > 0) {
    console.log("\n#### etcd mode: convergence and start-up (three-member local cluster)\n");
    console.log(limitTable(etcdLimits));
  }
  if (heartbeatRows.length > 0) {
    console.log(`\n#### Expiry: 10,000 targets renewed by heartbeats (${SECONDS * 2} s per run)\n`);
    console.log(heartbeatTable(heartbeatRows));
    for (const row of heartbeatRows) {
      if (row.statuses !== "-" && !/^\d+×(200|400)$/.test(row.statuses)) problems.push(`${row.scenario}: unexpected answers ${row.statuses}`);
    }
  }
  if (fleetRows.length > 0) {
    console.log(`\n#### Heartbeats at fleet scale (${FLEET_SECONDS} s per run)\n`);
    console.log(fleetTable(fleetRows));
    for (const row of fleetRows) {
      if (row.noEarlyExpiry !== undefined) console.log(`\n${row.scenario}: no early expiry: ${row.noEarlyExpiry ? "yes" : "no"}`);
    }
  }
  for (const note of notes) console.log(`\n${note}`);
  console.log(`\n(whole run: ${((performance.now() - began) / 1000).toFixed(0)} s)`);
  for (const problem of problems) console.log(`FAIL: ${problem}`);
  process.exitCode = problems.length > 0 ? 1 : 0;
}

function machine(work: string): string {
  const disk = execFileSync("df", ["-hT", work], { encoding: "utf8" }).trim().split("\n").pop();
  return [
    `### Run of ${new Date().toISOString().slice(0, 16).replace("T", " ")} UTC`,
    "",
    `- machine: ${availableParallelism()} cores, ${cpus()[0]?.model ?? "unknown CPU"}, Linux ${release()}, Node ${process.version}`,
    `- disk (temp directory): \`${disk}\``,
    `- load average at start: ${loadavg().map((load) => load.toFixed(2)).join(" ")}`,
  ].join("\n");
}

function profileArgs(): string[] {
  return CPU_PROF === undefined ? [] : ["--cpu-prof", `--cpu-prof-dir=${CPU_PROF}`];
}

const logFiles: string[] = [];

async function start(work: string, name: string, logLevel: string, env?: Record<string, string>): Promise<ServiceProcess> {
  logFiles.push(join(work, `${name}.log`));
  return startService({
    directory: join(work, name),
    logFile: join(work, `${name}.log`),
    logLevel,
    nodeArgs: profileArgs(),
    env,
  });
}

/**
 * Warms every side up, then measures the baselines and the service back to back. With `koa`,
 * also Koa + @koa/router serving the same JSON, and the service's target is a ratio to that one
 * (issue 18: ≥ 0.8×); otherwise to bare node:http (≥ 0.5×).
 */
async function getBesideBare(
  scenario: string,
  service: ServiceProcess,
  path: string,
  connections: number,
  into: Row[],
  koa = false,
): Promise<void> {
  const probe = await fetch(service.url + path);
  const text = await probe.text();
  // Before the endpoint exists, `/-/http_sd` falls into /<application>/<environment> and is refused.
  if (probe.status === 404 || probe.status === 400) {
    into.push({ scenario, result: undefined, missing: `n/a (endpoint missing: ${probe.status})` });
    return;
  }
  if (probe.status !== 200) {
    problems.push(`${scenario}: the first GET answered ${probe.status}: ${text.slice(0, 200)}`);
    return;
  }
  const documents = { [path]: JSON.parse(text) as unknown };
  const bare = await startBareServer(documents);
  const framework = koa ? await startBareServer(documents, "koa", profileArgs()) : undefined;
  try {
    const ours: LoadOptions = { url: service.url, path, connections, seconds: SECONDS };
    const theirs: LoadOptions = { ...ours, url: bare.url };
    const koaOptions: LoadOptions | undefined = framework === undefined ? undefined : { ...ours, url: framework.url };
    await warmUp(theirs);
    if (koaOptions !== undefined) await warmUp(koaOptions);
    await warmUp(ours);
    const baseline = await withCpu(bare, () => measured(`bare node:http, ${scenario}`, theirs));
    const koaBaseline =
      framework === undefined || koaOptions === undefined ? undefined : await withCpu(framework, () => measured(`bare Koa, ${scenario}`, koaOptions));
    const result = await withCpu(service, () => measured(scenario, ours));
    into.push({ scenario: `bare node:http: ${scenario}`, ...baseline });
    if (koaBaseline !== undefined) into.push({ scenario: `bare Koa + @koa/router: ${scenario}`, ...koaBaseline });
    into.push({
      scenario,
      ...result,
      baseline:
        koaBaseline === undefined
          ? { name: "bare", perSecond: baseline.result.perSecond }
          : { name: "bare Koa", perSecond: koaBaseline.result.perSecond },
      target: koaBaseline === undefined ? 0.5 : 0.8,
    });
  } finally {
    await bare.stop();
    await framework?.stop();
  }
}

/** Runs `scenario` and adds the CPU time `process` spent per answered request. */
async function withCpu<Result extends Summary>(
  process: { cpuSeconds(): Promise<number> },
  scenario: () => Promise<Result>,
): Promise<{ result: Result; cpuMicros: number }> {
  const before = await process.cpuSeconds();
  const result = await scenario();
  const cpuMicros = ((await process.cpuSeconds()) - before) * 1e6 / result.count;
  return { result, cpuMicros };
}

async function measured(scenario: string, options: LoadOptions): Promise<LoadResult> {
  const result = await sustained(options);
  problems.push(...problemsOf(scenario, result));
  return result;
}

/** GET of one group, PUT spread over 50 applications and the one-application POST burst, on one service. */
async function mainScenarios(work: string, logLevel: string, into: Row[]): Promise<void> {
  const name = `main-${logLevel}`;
  const service = await start(work, name, logLevel);
  try {
    const seeded = await fetch(service.url + GROUP_PATH, {
      method: "PUT",
      headers: { "content-type": "application/x-www-form-urlencoded" },
      body: GROUP_BODY,
    });
    if (seeded.status !== 200) throw new Error(`seeding ${GROUP_PATH} answered ${seeded.status}`);
    if (PHASES.has("get") || logLevel !== "info") {
      await getBesideBare("GET one group", service, GROUP_PATH, GET_CONNECTIONS, into, true);
    }
    if (!PHASES.has("writes") && logLevel === "info") return;

    const putTargets = ["10.1.0.1:9100", "10.1.0.2:9100"];
    const putFile = groupFileText({
      targets: putTargets,
      labels: { job: applicationName(0), env: "prod", team: "core", seq: "1000" },
    });
    const cpuBefore = process.cpuUsage();
    const raw = rawWriteLoop(join(work, `raw-${logLevel}`), putFile, SECONDS);
    const { user, system } = process.cpuUsage(cpuBefore);
    into.push({ scenario: "raw fsync'd write loop, in series (files/s)", result: raw, cpuMicros: (user + system) / raw.count });
    const baseline = { name: "raw loop", perSecond: raw.perSecond };

    const applications = Array.from({ length: PUT_APPLICATIONS }, (_, index) => applicationName(index));
    const put = await withCpu(service, async () => {
      const { result, problems: lost } = await putSpread({
        url: service.url,
        directory: join(work, name),
        applications,
        targets: putTargets,
        seconds: SECONDS,
      });
      problems.push(...lost);
      return result;
    });
    into.push({ scenario: `PUT over ${PUT_APPLICATIONS} applications`, ...put, baseline, target: 1 });

    if (logLevel !== "info") return;
    const burstOptions = {
      url: service.url,
      directory: join(work, name),
      application: "burst",
      concurrency: BURST,
      seconds: SECONDS,
    };
    problems.push(...(await postBurst({ ...burstOptions, seconds: 0.5 })).problems);
    const burst = await withCpu(service, async () => {
      const { result, problems: lost } = await postBurst(burstOptions);
      problems.push(...lost);
      return result;
    });
    into.push({ scenario: `POST burst, ${BURST} at once to one application`, ...burst, baseline, target: 2 });
    notes.push(await coalescing(join(work, `${name}.log`), "burst@prod.json"));
  } finally {
    await service.stop();
  }
}

/** How many changes each write of `file` carried, from the service's "file written" log lines. */
async function coalescing(logFile: string, file: string): Promise<string> {
  let writes = 0;
  let changes = 0;
  for (const line of (await readFile(logFile, "utf8")).split("\n")) {
    if (!line.includes(`"file":"${file}"`) || !line.includes('"msg":"file written"')) continue;
    writes++;
    changes += (JSON.parse(line) as { changes: number }).changes;
  }
  return (
    `Coalescing: ${file} was written ${writes} times for ${changes} changes ` +
    `(${(changes / writes).toFixed(1)} per write; the reset PUT before each burst is a write of its own).`
  );
}

/**
 * 10,000 applications × 20 targets: start-up, memory after start-up and after
 * http_sd, http_sd latency, write latency beside a 10-application directory
 * (both services up, runs alternated), then index and http_sd throughput.
 */
async function scale(work: string): Promise<void> {
  const generated = performance.now();
  writeGroups(join(work, "scale"), SCALE_GROUPS, SCALE_TARGETS);
  writeGroups(join(work, "small"), 10, SCALE_TARGETS);
  notes.push(
    `Scale data: ${SCALE_GROUPS.toLocaleString("en-US")} files written in ` +
      `${((performance.now() - generated) / 1000).toFixed(1)} s before the service starts.`,
  );

  const service = await start(work, "scale", "info");
  const small = await start(work, "small", "info").catch(async (error: unknown) => {
    await service.stop();
    throw error;
  });
  try {
    limits.push({ measure: "start-up (spawn → accepting connections)", value: service.startupMs, unit: "ms", atMost: 2000 });
    const started = await service.memory();
    limits.push({ measure: "resident memory after start-up", value: started.rssMb, unit: "MB", atMost: 150 });
    limits.push({ measure: "peak resident memory during start-up (VmHWM)", value: started.peakMb, unit: "MB", atMost: 150 });

    const httpSd = await latencyOfGet(service, "/-/http_sd");
    if (httpSd === undefined) {
      limits.push({ measure: "GET /-/http_sd of everything", value: undefined, unit: "ms", missing: "n/a (endpoint missing)" });
    } else {
      limits.push({ measure: "GET /-/http_sd of everything (median of 10, after 1 cold)", value: httpSd.median, unit: "ms", atMost: 50 });
      const after = await service.memory();
      limits.push({ measure: "resident memory after those 11 GETs of /-/http_sd", value: after.rssMb, unit: "MB", atMost: 150 });
      limits.push({ measure: "peak resident memory until then (VmHWM)", value: after.peakMb, unit: "MB", atMost: 150 });
      notes.push(`/-/http_sd: first (cold) answer ${milliseconds(httpSd.cold)}, ${httpSd.megabytes.toFixed(1)} MB.`);
    }

    // Alternated, so that both directories see the same neighbours on a shared machine.
    const smallP50: number[] = [];
    const scaleP50: number[] = [];
    const smallP99: number[] = [];
    const scaleP99: number[] = [];
    for (let round = 0; round < 2; round++) {
      const few = await writeLatency(small, join(work, "small"));
      const many = await writeLatency(service, join(work, "scale"));
      smallP50.push(few.p50);
      smallP99.push(few.p99);
      scaleP50.push(many.p50);
      scaleP99.push(many.p99);
    }
    const mean = (values: number[]): number => values.reduce((sum, value) => sum + value, 0) / values.length;
    limits.push({ measure: "PUT p50, 10,000-app directory ÷ 10-app directory", value: mean(scaleP50) / mean(smallP50), unit: "×", atMost: 1.2 });
    limits.push({ measure: "PUT p99, same ratio (information)", value: mean(scaleP99) / mean(smallP99), unit: "×" });
    notes.push(
      `Write latency, 10 connections each PUTting 20 targets to its own application, 2 × ${SECONDS / 2} s ` +
        `alternated per directory: 10-app directory p50 ${milliseconds(mean(smallP50))}, p99 ${milliseconds(mean(smallP99))}; ` +
        `10,000-app directory p50 ${milliseconds(mean(scaleP50))}, p99 ${milliseconds(mean(scaleP99))}.`,
    );

    const label = `${SCALE_GROUPS.toLocaleString("en-US")} groups`;
    await getBesideBare(`GET / (index), ${label}`, service, "/", BIG_GET_CONNECTIONS, rows);
    await getBesideBare(`GET /-/http_sd, ${label}`, service, "/-/http_sd", BIG_GET_CONNECTIONS, rows);
    const loaded = await service.memory();
    notes.push(
      `Memory under sustained GETs of the index and /-/http_sd (${BIG_GET_CONNECTIONS} connections): ` +
        `${Math.round(loaded.rssMb)} MB resident afterwards, peak ${Math.round(loaded.peakMb)} MB.`,
    );
  } finally {
    await Promise.all([service.stop(), small.stop()]);
  }
}

async function writeLatency(service: ServiceProcess, directory: string): Promise<LoadResult> {
  const put = await putSpread({
    url: service.url,
    directory,
    applications: Array.from({ length: 10 }, (_, index) => applicationName(index)),
    targets: targetsOf(0, SCALE_TARGETS),
    seconds: SECONDS / 2,
  });
  problems.push(...put.problems);
  return put.result;
}

async function latencyOfGet(
  service: ServiceProcess,
  path: string,
): Promise<{ cold: number; median: number; megabytes: number } | undefined> {
  const timings: number[] = [];
  let megabytes = 0;
  for (let attempt = 0; attempt < 11; attempt++) {
    const before = performance.now();
    const response = await fetch(service.url + path);
    const body = await response.arrayBuffer();
    timings.push(performance.now() - before);
    if (response.status === 404 || response.status === 400) return undefined;
    if (response.status !== 200) {
      problems.push(`GET ${path} answered ${response.status}`);
      return undefined;
    }
    megabytes = body.byteLength / 1024 / 1024;
  }
  return { cold: timings[0] as number, median: median(timings.slice(1)), megabytes };
}

await main();
