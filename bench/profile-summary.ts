import { readFileSync } from "node:fs";

/**
 * `node dist-bench/profile-summary.js <file.cpuprofile> [top] [function]`:
 * where a `node --cpu-prof` profile spent its time, by function and by
 * package, so a run of `BENCH_CPU_PROF=dir make bench` can be read without
 * DevTools. With a function name, also who called it (four frames up).
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

const [file, topText = "25", callersOf] = process.argv.slice(2);
if (file === undefined) {
  console.error("usage: node dist-bench/profile-summary.js <file.cpuprofile> [top] [function]");
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

if (callersOf !== undefined) {
  const parentOf = new Map<number, number>();
  for (const node of profile.nodes) for (const child of node.children ?? []) parentOf.set(child, node.id);
  const frame = (id: number): string => {
    const { functionName, url, lineNumber } = (byId.get(id) as ProfileNode).callFrame;
    return `${functionName || "(anonymous)"}@${url.replace(/^.*\/(node_modules|dist)\//, "$1/")}:${lineNumber + 1}`;
  };
  const stacks = new Map<string, number>();
  for (const [id, micros] of selfMicros) {
    if ((byId.get(id) as ProfileNode).callFrame.functionName !== callersOf) continue;
    const chain: string[] = [];
    for (let parent = parentOf.get(id); parent !== undefined && chain.length < 4; parent = parentOf.get(parent)) {
      chain.push(frame(parent));
    }
    stacks.set(chain.join(" < "), (stacks.get(chain.join(" < ")) ?? 0) + micros);
  }
  print(`callers of ${callersOf}`, stacks, 10);
}
