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

  let service;
  try {
    service = await startService(config, logger);
  } catch (error) {
    const message = error instanceof StoreError ? error.message : `could not start: ${(error as Error).message}`;
    logger.fatal({ err: error }, message);
    process.exit(1);
  }

  let stopping = false;
  const stop = (signal: NodeJS.Signals): void => {
    if (stopping) return;
    stopping = true;
    logger.info({ signal }, "stopping: finishing requests and writes in flight");
    service.close().then(
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
