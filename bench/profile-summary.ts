import { readFileSync } from "node:fs";

/**
 * `node dist-bench/profile-summary.js <file.cpuprofile> [top]`: where a
 * `node --cpu-prof` profile spent its time, by function and by package, so a
 * run of `BENCH_CPU_PROF=dir make bench` can be read without DevTools.
 */

interface ProfileNode {
  readonly id: number;
  readonly callFrame: { readonly functionName: string; readonly url: string; readonly lineNumber: number };
  readonly children?: readonly number[];
}

interface Profile {
  readonly nodes: readonly ProfileNode[];
  readonly samples: readonly number[];
  readonly timeDeltas: readonly number[];
}

const [file, topText = "25"] = process.argv.slice(2);
if (file === undefined) {
  console.error("usage: node dist-bench/profile-summary.js <file.cpuprofile> [top]");
  process.exit(2);
}
const profile = JSON.parse(readFileSync(file, "utf8")) as Profile;
const top = Number(topText);

const byId = new Map(profile.nodes.map((node) => [node.id, node]));
const selfMicros = new Map<number, number>();
profile.samples.forEach((id, index) => selfMicros.set(id, (selfMicros.get(id) ?? 0) + (profile.timeDeltas[index] ?? 0)));
const total = [...selfMicros.values()].reduce((sum, micros) => sum + micros, 0);

const byFunction = new Map<string, number>();
const byPackage = new Map<string, number>();
for (const [id, micros] of selfMicros) {
  const { functionName, url, lineNumber } = (byId.get(id) as ProfileNode).callFrame;
  const where = url.replace(/^file:\/\/.*?\/(node_modules|dist)\//, "$1/");
  const name = `${functionName || "(anonymous)"} ${where}${url === "" ? "" : `:${lineNumber + 1}`}`;
  byFunction.set(name, (byFunction.get(name) ?? 0) + micros);
  byPackage.set(packageOf(url, functionName), (byPackage.get(packageOf(url, functionName)) ?? 0) + micros);
}

function packageOf(url: string, functionName: string): string {
  if (url === "") return functionName.startsWith("(") ? functionName : "(native)";
  const dependency = /node_modules\/((?:@[^/]+\/)?[^/]+)/.exec(url);
  if (dependency !== null) return dependency[1] as string;
  if (url.startsWith("node:")) return "node core";
  const ours = /\/dist\/(.*)$/.exec(url);
  return ours === null ? url : `src/${(ours[1] as string).replace(/\/[^/]*$/, "")}`;
}

function print(title: string, table: Map<string, number>, limit: number): void {
  console.log(`\n${title} (self time, of ${(total / 1e6).toFixed(2)} s sampled)`);
  for (const [name, micros] of [...table].sort((a, b) => b[1] - a[1]).slice(0, limit)) {
    console.log(`${((100 * micros) / total).toFixed(1).padStart(6)}%  ${(micros / 1000).toFixed(0).padStart(7)} ms  ${name}`);
  }
}

print("by package", byPackage, 20);
print("by function", byFunction, top);
