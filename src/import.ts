import { stat } from "node:fs/promises";
import { checkEtcdFiles, ConfigError, loadConfig } from "./config.js";
import { connectEtcd } from "./etcdstore/client.js";
import { importDirectory } from "./etcdstore/import.js";

const USAGE = `usage: node dist/import.js [--overwrite] [DIRECTORY]
       npm run import -- [--overwrite] [DIRECTORY]

Copies every <application>@<environment>.json of DIRECTORY (default: FILE_SD_DIRECTORY,
else ./file_sd) into the etcd of ETCD_ENDPOINTS, under ETCD_PREFIX. A group etcd already
holds is left alone unless --overwrite. Exit code 0 when every group is in etcd as the
directory has it, 1 when some were skipped or failed, 2 on a usage or configuration error.
Coming from Target-eye? node dist/import-target-eye.js --help. See docs/etcd.md.`;

/** The one-shot import into etcd (docs/etcd.md, "Moving to etcd"): the etcd variables of the service, a directory, a report. */
async function main(argv: readonly string[]): Promise<number> {
  if (argv.includes("--help") || argv.includes("-h")) {
    console.log(USAGE);
    return 0;
  }
  const flags = argv.filter((arg) => arg.startsWith("-"));
  const paths = argv.filter((arg) => !arg.startsWith("-"));
  const unknown = flags.filter((flag) => flag !== "--overwrite");
  if (unknown.length > 0 || paths.length > 1) {
    console.error(unknown.length > 0 ? `unknown option ${unknown[0]}\n${USAGE}` : `give one directory, not ${paths.length}\n${USAGE}`);
    return 2;
  }
  let config;
  try {
    config = loadConfig(process.env);
    if (config.etcd !== undefined) await checkEtcdFiles(config.etcd);
  } catch (error) {
    if (!(error instanceof ConfigError)) throw error;
    console.error(error.message);
    return 2;
  }
  if (config.etcd === undefined) {
    console.error(`ETCD_ENDPOINTS is not set: say which etcd to import into, e.g. ETCD_ENDPOINTS=http://etcd-1:2379\n${USAGE}`);
    return 2;
  }
  const directory = paths[0] ?? config.fileSdDirectory;
  try {
    if (!(await stat(directory)).isDirectory()) throw Object.assign(new Error("not a directory"), { code: "ENOTDIR" });
  } catch (error) {
    console.error(`the directory ${directory} cannot be read: ${(error as Error).message}; give the file_sd directory to import\n${USAGE}`);
    return 2;
  }
  const { client, namespace } = await connectEtcd(config.etcd);
  try {
    const { allIn } = await importDirectory({
      directory,
      namespace,
      config: config.etcd,
      overwrite: flags.includes("--overwrite"),
      print: (line) => console.log(line),
    });
    return allIn ? 0 : 1;
  } finally {
    client.close();
  }
}

main(process.argv.slice(2)).then(
  (code) => process.exit(code),
  (error: unknown) => {
    console.error(`import failed: ${(error as Error).message}`);
    process.exit(1);
  },
);
