import { ConfigError, loadConfig } from "./config.js";
import { connectEtcd } from "./etcdstore/client.js";
import { importDirectory } from "./etcdstore/import.js";

const USAGE = `usage: node dist/import.js [--overwrite] [DIRECTORY]

Copies every <application>@<environment>.json of DIRECTORY (default: FILE_SD_DIRECTORY,
else ./file_sd) into the etcd of ETCD_ENDPOINTS, under ETCD_PREFIX. A group etcd already
holds is left alone unless --overwrite. Exit code 0 when every group is in etcd as the
directory has it, 1 when some were skipped or failed, 2 on a usage or configuration error.`;

/** The one-shot import (SPEC §9): the etcd variables of the service, a directory, a report. */
async function main(argv: readonly string[]): Promise<number> {
  const flags = argv.filter((arg) => arg.startsWith("-"));
  const paths = argv.filter((arg) => !arg.startsWith("-"));
  const unknown = flags.filter((flag) => flag !== "--overwrite");
  if (unknown.length > 0 || paths.length > 1 || flags.includes("--help")) {
    console.error(unknown.length > 0 ? `unknown option ${unknown[0]}\n${USAGE}` : USAGE);
    return 2;
  }
  let config;
  try {
    config = loadConfig(process.env);
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
