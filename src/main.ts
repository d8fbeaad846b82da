import { pino } from "pino";
import { PolicyError } from "./auth/policy.js";
import { checkConfiguredFiles, ConfigError, isFixedByAPerson, loadConfig } from "./config.js";
import { StoreError } from "./errors.js";
import { startService } from "./server.js";

/**
 * Exit statuses (docs/operations.md, "Exit codes"): 0 stopped by a signal, 1 could not start
 * or stop for a reason a restart may fix, 2 a setting a person must change. The systemd unit
 * restarts after 1 and not after 2 (RestartPreventExitStatus=2).
 */
const COULD_NOT_START = 1;
const CONFIGURATION_ERROR = 2;

/** Process concerns: read the environment, start, and stop cleanly on SIGTERM/SIGINT. */
const USAGE = `file-sd-writer: register Prometheus scrape targets with curl; writes file_sd files.

usage: node dist/main.js     (or npm start; make run in a checkout)

It takes no arguments: every setting is an environment variable (FILE_SD_DIRECTORY, BIND,
PROMETHEUS_URL, ETCD_ENDPOINTS, ...). .env-sample lists them with their defaults;
docs/operations.md says what each one does. Exit codes: 0 stopped, 1 could not start or stop
(a restart may help), 2 a setting to fix.`;

async function main(): Promise<void> {
  const args = process.argv.slice(2);
  if (args.includes("--help") || args.includes("-h")) {
    process.stdout.write(`${USAGE}\n`);
    process.exit(0);
  }
  if (args.length > 0) {
    process.stderr.write(`unexpected argument ${args[0]}\n\n${USAGE}\n`);
    process.exit(CONFIGURATION_ERROR);
  }
  let config;
  try {
    config = loadConfig(process.env);
    await checkConfiguredFiles(config);
  } catch (error) {
    if (!(error instanceof ConfigError)) throw error;
    pino().fatal(error.message);
    process.exit(CONFIGURATION_ERROR);
  }
  // Log lines are written asynchronously: while one write to stdout is in flight the next lines
  // gather behind it, so under load one write carries many lines, and an idle service writes each
  // line at once. Whatever is queued is written out on exit (pino flushes on process.exit); a
  // SIGKILL loses at most the lines of the write in flight, never a registration.
  const logger = pino({ level: config.logLevel }, pino.destination({ dest: 1, sync: false }));

  // A bug that escapes every handler must not end the service, with every request and write in
  // flight: state changes are single swaps at the end of a batch, so what was half-done is simply
  // not there. It is logged with its stack and counted (file_sd_internal_errors_total{where="process"}).
  let service: Awaited<ReturnType<typeof startService>> | undefined;
  const report = (kind: "unhandled rejection" | "uncaught exception") => (error: unknown) => {
    if (service === undefined) logger.error({ err: error }, `${kind} while starting`);
    else service.caught(error, kind);
  };
  process.on("unhandledRejection", report("unhandled rejection"));
  process.on("uncaughtException", report("uncaught exception"));

  try {
    service = await startService(config, logger);
  } catch (error) {
    const message = error instanceof StoreError || error instanceof PolicyError ? error.message : `could not start: ${(error as Error).message}`;
    logger.fatal({ err: error }, message);
    process.exit(isConfigurationError(error) ? CONFIGURATION_ERROR : COULD_NOT_START);
  }
  const running = service;

  let stopping = false;
  const stop = (signal: NodeJS.Signals): void => {
    if (stopping) return;
    stopping = true;
    logger.info({ signal }, "stopping: finishing requests and writes in flight");
    // The exit must not depend on the log: with stdout gone (a log reader that ended first),
    // a write that throws here would leave the process running after its drain.
    running.close().then(
      () => {
        try {
          logger.info("stopped");
        } finally {
          process.exit(0);
        }
      },
      (error: unknown) => {
        try {
          logger.fatal({ err: error }, "could not stop cleanly");
        } finally {
          process.exit(COULD_NOT_START);
        }
      },
    );
  };
  // `on`, not `once`: a second SIGTERM while draining must not fall through to
  // the default action and kill the process before the writes in flight land.
  process.on("SIGTERM", stop);
  process.on("SIGINT", stop);
}

/**
 * What startService throws that a person must fix: a FILE_SD_DIRECTORY the service may not
 * write, a tokens file changed into an invalid one since checkConfiguredFiles, or a BIND port
 * this user may not open (below 1024 without the capability). A port in use is 1: the process
 * holding it may be on its way out.
 */
function isConfigurationError(error: unknown): boolean {
  const { code, syscall } = error as NodeJS.ErrnoException;
  // FILE_SD_DIRECTORY missing its permissions, read-only, or a file: the directory's own check says so.
  const directory = error instanceof StoreError && isFixedByAPerson(error.cause);
  return error instanceof PolicyError || directory || (code === "EACCES" && syscall === "listen");
}

await main();
