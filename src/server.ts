import { readFile } from "node:fs/promises";
import { createServer as createHttpServer, type Server } from "node:http";
import { createServer as createHttpsServer } from "node:https";
import type { AddressInfo } from "node:net";
import type { Logger } from "pino";
import { createApp } from "./app.js";
import { guards, OPEN } from "./auth/authorize.js";
import { TokensFile } from "./auth/tokens-file.js";
import type { Config } from "./config.js";
import { FileStore } from "./filestore/store.js";
import { watchDirectory } from "./filestore/watch.js";
import { malformedRequest } from "./handlers/errors.js";
import { createMetrics } from "./metrics.js";
import { StatusService } from "./status/status.js";

export interface RunningService {
  readonly url: string;
  readonly store: FileStore;
  /** Stops accepting, lets requests in flight finish and their writes land, stops the watches. */
  close(): Promise<void>;
}

const DRAIN_TIMEOUT_MS = 10_000;

/**
 * Opens the store, starts the watches and the listener. Throws when the
 * directory is unusable or AUTH_TOKENS_FILE is missing or invalid.
 */
export async function startService(config: Config, logger: Logger): Promise<RunningService> {
  const metrics = createMetrics();
  // The listener opens only once the directory is loaded and watched: from the first request
  // on, the service is ready, until shutdown begins.
  let notReadyBecause: string | undefined;
  const store = await FileStore.open({ directory: config.fileSdDirectory, logger, observer: metrics.storeObserver });
  metrics.measureRegistered(store);
  const tokens =
    config.authTokensFile === undefined
      ? undefined
      : await TokensFile.open({ path: config.authTokensFile, logger, onReload: metrics.tokensFileReloaded });
  const watch = await watchDirectory(store, logger).catch(async (error: unknown) => {
    await tokens?.close();
    throw error;
  });
  const stopWatching = async (): Promise<void> => {
    await watch.close();
    await tokens?.close();
  };

  const status = config.prometheus === undefined ? undefined : new StatusService(store, config.prometheus);
  const app = createApp({
    store,
    logger,
    maxBodyBytes: config.maxBodyBytes,
    metrics,
    readiness: { notReadyBecause: () => notReadyBecause },
    guards: tokens === undefined ? OPEN : guards(tokens),
    status,
  });

  let server: Server;
  try {
    server =
      config.tls === undefined
        ? createHttpServer(app.callback())
        : createHttpsServer(
            { cert: await readFile(config.tls.certFile), key: await readFile(config.tls.keyFile) },
            app.callback(),
          );
    server.on("clientError", malformedRequest);
    await new Promise<void>((resolve, reject) => {
      server.once("error", reject);
      server.listen(config.port, config.host, () => resolve());
    });
  } catch (error) {
    await stopWatching();
    throw error;
  }
  const address = server.address() as AddressInfo;
  const scheme = config.tls === undefined ? "http" : "https";
  const host = address.family === "IPv6" ? `[${address.address}]` : address.address;
  const url = `${scheme}://${host}:${address.port}`;
  logger.info(
    { url, directory: store.directory, tokens: tokens?.path ?? "none", prometheus: config.prometheus?.urls ?? "none" },
    "listening",
  );

  let closing: Promise<void> | undefined;
  const close = (): Promise<void> => {
    closing ??= (async () => {
      notReadyBecause = "shutting down";
      const closed = new Promise<void>((resolve) => server.close(() => resolve()));
      // Clients holding a ?wait get the status as it is now, instead of a cut connection.
      status?.answerWaitersNow();
      server.closeIdleConnections();
      const force = setTimeout(() => server.closeAllConnections(), DRAIN_TIMEOUT_MS);
      await closed;
      clearTimeout(force);
      await store.idle();
      await stopWatching();
    })();
    return closing;
  };
  return { url, store, close };
}
