import { realpath } from "node:fs/promises";
import { checkEtcdFiles, checkWritableDirectory, ConfigError, loadConfig } from "./config.js";
import { connectEtcd, describeEtcdError } from "./etcdstore/client.js";
import { RuleError } from "./errors.js";
import type { AppEnv } from "./model.js";
import { parseAppEnv } from "./parse/values.js";
import { readTargetEyeDirectory, type Identified } from "./target-eye/read.js";
import { intoDirectory, intoEtcd, isUnanswered, type Destination } from "./target-eye/write.js";

const USAGE = `usage: node dist/import-target-eye.js [--map FILE=APPLICATION/ENVIRONMENT]... [--dry-run] TARGET_EYE_DIRECTORY
       npm run import-target-eye -- [--map FILE=APPLICATION/ENVIRONMENT]... [--dry-run] TARGET_EYE_DIRECTORY

Copies the groups of a Target-eye directory (<md5>.json files) into this service's registry:
FILE_SD_DIRECTORY (default ./file_sd) as <application>@<environment>.json, or etcd when
ETCD_ENDPOINTS is set (ETCD_PREFIX, TLS and auth as for the service).

Each file's application/environment comes from its job and env labels, and only when their
md5 is the file's name. A file whose labels a request overrode is skipped and reported;
--map FILE=APPLICATION/ENVIRONMENT (repeatable) imports it as that pair. A group the registry
already holds is never overwritten (the same group counts as imported). --dry-run reads and
checks every file, says what it would add, and writes nothing.

Prints a line per file and a summary. Exit code 0 when every file is in (or registers
nothing), 1 when some were skipped or failed, 2 on a usage or configuration error.
See docs/target-eye.md.`;

class UsageError extends Error {}

interface Arguments {
  readonly source: string;
  readonly maps: ReadonlyMap<string, AppEnv>;
  readonly dryRun: boolean;
}

function parseArguments(argv: readonly string[]): Arguments {
  const maps = new Map<string, AppEnv>();
  const paths: string[] = [];
  let dryRun = false;
  for (let i = 0; i < argv.length; i++) {
    const arg = argv[i] ?? "";
    if (arg === "--dry-run") dryRun = true;
    else if (arg === "--map" || arg.startsWith("--map=")) {
      const value = arg === "--map" ? argv[++i] : arg.slice("--map=".length);
      const match = /^([^=/]+\.json)=([^/]+)\/([^/]+)$/.exec(value ?? "");
      if (match === null) throw new UsageError(`--map ${value ?? ""}: give FILE=APPLICATION/ENVIRONMENT, e.g. --map 0cc175b9c0f1b6a831c399e269772661.json=billing/prod`);
      const [, file = "", application = "", environment = ""] = match;
      if (maps.has(file)) throw new UsageError(`--map gives ${file} twice`);
      try {
        maps.set(file, parseAppEnv(application, environment));
      } catch (error) {
        if (!(error instanceof RuleError)) throw error;
        throw new UsageError(`--map ${value}: ${error.message}`);
      }
    } else if (arg.startsWith("-")) throw new UsageError(`unknown option ${arg}`);
    else paths.push(arg);
  }
  if (paths.length !== 1) throw new UsageError(paths.length === 0 ? "give the Target-eye directory" : `give one Target-eye directory, not ${paths.length}`);
  return { source: paths[0]!, maps, dryRun };
}

const COLUMN = 11;
const line = (word: string, rest: string): string => `${word.padEnd(COLUMN)}${rest}`;
const pairOf = ({ application, environment }: AppEnv): string => `${application}/${environment}`;

async function main(argv: readonly string[]): Promise<number> {
  if (argv.includes("--help") || argv.includes("-h")) {
    console.log(USAGE);
    return 0;
  }
  let args: Arguments;
  let config;
  try {
    args = parseArguments(argv);
    config = loadConfig(process.env);
    if (config.etcd !== undefined) await checkEtcdFiles(config.etcd);
    else await checkWritableDirectory("FILE_SD_DIRECTORY", config.fileSdDirectory);
  } catch (error) {
    if (!(error instanceof UsageError || error instanceof ConfigError)) throw error;
    console.error(error instanceof UsageError ? `${error.message}\n\n${USAGE}` : error.message);
    return 2;
  }

  let files: Identified[];
  try {
    if (config.etcd === undefined && (await realpath(args.source)) === (await realpath(config.fileSdDirectory))) {
      throw new UsageError(
        `${args.source} is FILE_SD_DIRECTORY too: give the service a directory of its own, so that Prometheus can read both during the switch and drop the old one after (docs/target-eye.md)`,
      );
    }
    files = await readTargetEyeDirectory(args.source, args.maps);
  } catch (error) {
    if (error instanceof UsageError) console.error(error.message);
    else console.error(`the Target-eye directory ${args.source} cannot be read: ${(error as Error).message}`);
    return 2;
  }
  const unknownMaps = [...args.maps.keys()].filter((file) => !files.some((item) => item.file === file));
  if (unknownMaps.length > 0) {
    console.error(`--map names ${unknownMaps.join(", ")}, which ${unknownMaps.length === 1 ? "is" : "are"} not a .json file of ${args.source}`);
    return 2;
  }

  let destination: Destination;
  let close = (): void => undefined;
  if (config.etcd === undefined) destination = intoDirectory(config.fileSdDirectory);
  else {
    const { client, namespace } = await connectEtcd(config.etcd);
    destination = intoEtcd(namespace, config.etcd);
    close = () => client.close();
  }

  const counts = { imported: 0, unchanged: 0, exists: 0, skipped: 0, invalid: 0, empty: 0, failed: 0, untried: 0 };
  try {
    let unanswered: string | undefined;
    for (const item of files) {
      if (item.kind === "empty") {
        counts.empty++;
        console.log(line("empty", `${item.file}: no targets; nothing to import`));
        continue;
      }
      if (item.kind === "skipped" || item.kind === "invalid") {
        counts[item.kind]++;
        console.log(line(item.kind, `${item.file}: ${item.reason}`));
        continue;
      }
      const where = `${item.file} → ${pairOf(item.appEnv)}`;
      const notes = item.notes.length === 0 ? "" : ` (${item.notes.join("; ")})`;
      if (unanswered !== undefined) {
        counts.untried++;
        console.log(line("not tried", `${where}: etcd did not answer the file before`));
        continue;
      }
      if (args.dryRun) {
        counts.imported++;
        console.log(line("would add", `${where}, ${item.group.targets.length} target${item.group.targets.length === 1 ? "" : "s"}${notes}`));
        continue;
      }
      try {
        const result = await destination.add(item.appEnv, item.text);
        counts[result]++;
        console.log(
          result === "imported" ? line("imported", `${where}${notes}`)
          : result === "unchanged" ? line("unchanged", `${where}: already registered with the same targets and labels`)
          : line("skipped", `${where}: a different group is registered there already; nothing overwritten (compare, then DELETE it and run again, or leave it)`),
        );
      } catch (error) {
        counts.failed++;
        const reason = config.etcd === undefined ? (error as Error).message : describeEtcdError(error);
        console.log(line("failed", `${where}: ${reason}`));
        if (config.etcd !== undefined && isUnanswered(error)) unanswered = reason;
      }
    }
    const notIn = counts.exists + counts.skipped + counts.invalid + counts.failed + counts.untried;
    console.log(
      `${files.length} Target-eye files in ${args.source} → ${destination.description}${args.dryRun ? " (dry run: nothing written)" : ""}: ` +
        `${counts.imported} ${args.dryRun ? "to import" : "imported"}, ${counts.unchanged} already there, ${counts.empty} empty, ` +
        `${notIn} not imported (${counts.exists} registered differently, ${counts.skipped} skipped, ${counts.invalid} invalid, ${counts.failed} failed, ${counts.untried} not tried)` +
        (unanswered === undefined ? "" : `; etcd stopped answering, run the import again when it does (what is in stays in)`),
    );
    return notIn === 0 ? 0 : 1;
  } finally {
    close();
  }
}

main(process.argv.slice(2)).then(
  (code) => process.exit(code),
  (error: unknown) => {
    console.error(`import failed: ${(error as Error).message}`);
    process.exit(1);
  },
);
