import { readFile } from "node:fs/promises";
import { createServer as createHttpServer, type Server } from "node:http";
import { createServer as createHttpsServer } from "node:https";
import type { AddressInfo } from "node:net";
import type { Logger } from "pino";
import { createApp } from "./app.js";
import type { Config } from "./config.js";
import { FileStore } from "./filestore/store.js";
import { watchDirectory } from "./filestore/watch.js";

export interface RunningService {
  readonly url: string;
  readonly store: FileStore;
  /** Stops accepting, lets requests in flight finish and their writes land, stops the watch. */
  close(): Promise<void>;
}

const DRAIN_TIMEOUT_MS = 10_000;

/** Opens the store, starts the watch and the listener. Throws when the directory is unusable. */
export async function startService(config: Config, logger: Logger): Promise<RunningService> {
  const store = await FileStore.open({ directory: config.fileSdDirectory, logger });
  const watch = await watchDirectory(store, logger);
  const app = createApp({ store, logger, maxBodyBytes: config.maxBodyBytes });

  const server: Server =
    config.tls === undefined
      ? createHttpServer(app.callback())
      : createHttpsServer(
          { cert: await readFile(config.tls.certFile), key: await readFile(config.tls.keyFile) },
          app.callback(),
        );
  await new Promise<void>((resolve, reject) => {
    server.once("error", reject);
    server.listen(config.port, config.host, () => resolve());
  });
  const address = server.address() as AddressInfo;
  const scheme = config.tls === undefined ? "http" : "https";
  const host = address.family === "IPv6" ? `[${address.address}]` : address.address;
  const url = `${scheme}://${host}:${address.port}`;
  logger.info({ url, directory: store.directory }, "listening");

  let closing: Promise<void> | undefined;
  const close = (): Promise<void> => {
    closing ??= (async () => {
      const closed = new Promise<void>((resolve) => server.close(() => resolve()));
      server.closeIdleConnections();
      const force = setTimeout(() => server.closeAllConnections(), DRAIN_TIMEOUT_MS);
      await closed;
      clearTimeout(force);
      await store.idle();
      await watch.close();
    })();
    return closing;
  };
  return { url, store, close };
}
