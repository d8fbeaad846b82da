import { pino } from "pino";
import { ConfigError, loadConfig } from "./config.js";
import { StoreError } from "./errors.js";
import { startService } from "./server.js";

/** Process concerns: read the environment, start, and stop cleanly on SIGTERM/SIGINT. */
async function main(): Promise<void> {
  let config;
  try {
    config = loadConfig(process.env);
  } catch (error) {
    if (!(error instanceof ConfigError)) throw error;
    pino().fatal(error.message);
    process.exit(2);
  }
  const logger = pino({ level: config.logLevel });

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
    const message = error instanceof StoreError ? error.message : `could not start: ${(error as Error).message}`;
    logger.fatal({ err: error }, message);
    process.exit(1);
  }
  const running = service;

  let stopping = false;
  const stop = (signal: NodeJS.Signals): void => {
    if (stopping) return;
    stopping = true;
    logger.info({ signal }, "stopping: finishing requests and writes in flight");
    running.close().then(
      () => {
        logger.info("stopped");
        process.exit(0);
      },
      (error: unknown) => {
        logger.fatal({ err: error }, "could not stop cleanly");
        process.exit(1);
      },
    );
  };
  // `on`, not `once`: a second SIGTERM while draining must not fall through to
  // the default action and kill the process before the writes in flight land.
  process.on("SIGTERM", stop);
  process.on("SIGINT", stop);
}

await main();
