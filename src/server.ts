import { readFileSync } from "node:fs";
import { readFile } from "node:fs/promises";
import { createServer as createHttpServer, type Server } from "node:http";
import { createServer as createHttpsServer } from "node:https";
import type { AddressInfo } from "node:net";
import type { Logger } from "pino";
import { createApp } from "./app.js";
import { guards, OPEN } from "./auth/authorize.js";
import { TokensFile } from "./auth/tokens-file.js";
import type { Config } from "./config.js";
import { ExpiryScheduler } from "./expiry/scheduler.js";
import { FileStore } from "./filestore/store.js";
import { expiryGraceMs } from "./rules/registration.js";
import { Directory } from "./directory/directory.js";
import { DirectoryView } from "./directory/view.js";
import { watchDirectory } from "./directory/watch.js";
import { malformedRequest, unmetExpectation } from "./handlers/errors.js";
import { createEtcdMetrics, createMetrics, type ServiceMetrics } from "./metrics.js";
import { StatusService } from "./status/status.js";
import type { GroupId } from "./model.js";
import type { Store } from "./store.js";

export interface RunningService {
  readonly url: string;
  readonly store: Store;
  /** Stops accepting, lets requests in flight finish and their writes land, stops the watches. */
  close(): Promise<void>;
  /** A bug that reached the process (an unhandled rejection, an uncaught exception): logged with its stack and counted. */
  caught(error: unknown, kind: "unhandled rejection" | "uncaught exception"): void;
}

const DRAIN_TIMEOUT_MS = 10_000;
const HEADERS_TIMEOUT_MS = 10_000;
const REQUEST_TIMEOUT_MS = 60_000;

/**
 * How many connections to take at once: three quarters of what the open-files limit leaves after
 * 64 for the service's own files, etcd and the watches, so that a thousand idle sockets can never
 * leave a write without a descriptor. Read from /proc (Linux); elsewhere Node's default, none.
 */
export function connectionLimit(limitsText: string | undefined): number {
  const soft = /^Max open files\s+(\d+|unlimited)/m.exec(limitsText ?? "")?.[1];
  if (soft === undefined || soft === "unlimited") return Infinity;
  return Math.max(32, Math.floor((Number(soft) - 64) * 0.75));
}

function readLimits(): string | undefined {
  try {
    return readFileSync("/proc/self/limits", "utf8");
  } catch {
    return undefined;
  }
}

/** What a test may set that no environment variable does. */
export interface ServiceOptions {
  /**
   * The clock (ms since the epoch) for ?ttl= deadlines and expiry; Date.now.
   * Tests give instances clocks that run ahead or behind.
   */
  readonly now?: () => number;
  /** etcd mode: how long a deleted group's keys stay in etcd, and how often they are looked for (tests). */
  readonly tombstoneAgeMs?: number;
  readonly collectIntervalMs?: number;
}

/**
 * Opens the store, starts the watches and the listener. Throws when the
 * directory is unusable or AUTH_TOKENS_FILE is missing or invalid.
 */
export async function startService(config: Config, logger: Logger, options: ServiceOptions = {}): Promise<RunningService> {
  const now = options.now ?? Date.now;
  const metrics = createMetrics();
  // File mode: the listener opens only once the directory is loaded and watched, so from the
  // first request on the service is ready, until shutdown begins. etcd mode: ready once in step
  // with etcd, and again whenever it is.
  let shuttingDown = false;
  const { store, directory, changed, stopBackend, backendProblem, expiryGraceMs } = await openStore(config, logger, metrics, { ...options, now });
  metrics.measureRegistered(store);
  const readiness = { notReadyBecause: () => (shuttingDown ? "shutting down" : backendProblem()) };
  metrics.measureReadiness(readiness);
  const tokens =
    config.authTokensFile === undefined
      ? undefined
      : await TokensFile.open({ path: config.authTokensFile, logger, onReload: metrics.tokensFileReloaded });
  const watch = await watchDirectory(directory, changed, logger).catch(async (error: unknown) => {
    await tokens?.close();
    await stopBackend();
    throw error;
  });
  const expiry = new ExpiryScheduler({ store, logger, now, expired: metrics.targetsExpired, ready: () => backendProblem() === undefined, graceMs: expiryGraceMs });
  expiry.start();
  const stopWatching = async (): Promise<void> => {
    await expiry.close();
    await watch.close();
    await tokens?.close();
    await stopBackend();
  };

  const status = config.prometheus === undefined ? undefined : new StatusService(store, config.prometheus);
  const app = createApp({
    store,
    logger,
    maxBodyBytes: config.maxBodyBytes,
    metrics,
    readiness,
    guards: tokens === undefined ? OPEN : guards(tokens),
    status,
    ...(config.etcd?.groupSelector === undefined ? {} : { share: config.etcd.groupSelector.matches }),
  });

  let server: Server;
  try {
    // A request without Host reaches the app, which answers it in JSON (src/handlers/errors.ts), not Node's bare 400.
    // Timeouts are checked every second, not every 30 s (Node's default), so they are what they say.
    const options = { requireHostHeader: false, connectionsCheckingInterval: 1000 };
    server =
      config.tls === undefined
        ? createHttpServer(options, app.callback())
        : createHttpsServer(
            { ...options, cert: await readFile(config.tls.certFile), key: await readFile(config.tls.keyFile) },
            app.callback(),
          );
    server.on("clientError", malformedRequest);
    server.on("checkExpectation", unmetExpectation);
    // Idle and slow clients must not take the file descriptors the writes need: a connection that
    // has not sent its headers in 10 s, or its whole request in a minute, is closed, and no more
    // connections are taken than the descriptor limit leaves room for (connectionLimit).
    server.headersTimeout = HEADERS_TIMEOUT_MS;
    server.requestTimeout = REQUEST_TIMEOUT_MS;
    server.maxConnections = connectionLimit(readLimits());
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
    {
      url,
      directory: directory.path,
      tokens: tokens?.path ?? "none",
      registry: config.etcd === undefined ? "directory" : "etcd",
      prometheus: config.prometheus?.urls ?? "none",
    },
    "listening",
  );

  let closing: Promise<void> | undefined;
  const close = (): Promise<void> => {
    closing ??= (async () => {
      shuttingDown = true;
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
  const caught = (error: unknown, kind: "unhandled rejection" | "uncaught exception"): void => {
    metrics.internalError("process");
    logger.error({ err: error, bug: true }, `${kind}: a bug, caught and logged; the service goes on`);
  };
  return { url, store, close, caught };
}

interface Backend {
  readonly store: Store;
  /** The directory Prometheus reads: the registry itself, or etcd's view. */
  readonly directory: Directory;
  /** What the directory watch does with an event on a managed file. */
  readonly changed: (id: GroupId) => void;
  readonly stopBackend: () => Promise<void>;
  readonly backendProblem: () => string | undefined;
  /** How long past its deadline a target is kept before it is expired: 0 in file mode, EXPIRY_GRACE_MS in etcd mode. */
  readonly expiryGraceMs: number;
}

/** The one place the registry is chosen: the directory (default) or etcd (ETCD_ENDPOINTS). */
async function openStore(config: Config, logger: Logger, metrics: ServiceMetrics, options: ServiceOptions & { now: () => number }): Promise<Backend> {
  const { now } = options;
  if (config.etcd === undefined) {
    const store = await FileStore.open({ directory: config.fileSdDirectory, logger, observer: metrics.storeObserver, now, renewalSlackMs: config.renewalSlackMs });
    // An outside edit is read back into the registry, through the group's lane.
    return { store, directory: store.directory, changed: (id) => void store.reload(id), stopBackend: () => store.close(), backendProblem: () => undefined, expiryGraceMs: 0 };
  }
  const etcdConfig = config.etcd;
  // Loaded only in etcd mode: the gRPC client costs 27 MB of memory that file mode never needs.
  const [{ connectEtcd }, { EtcdStore }] = await Promise.all([import("./etcdstore/client.js"), import("./etcdstore/etcd-store.js")]);
  const { client, namespace } = await connectEtcd(etcdConfig);
  // The view is opened first: it holds the files from before, served until the first sync with etcd.
  const view = await Directory.open(config.fileSdDirectory, logger, metrics.storeObserver)
    .then((directory) => DirectoryView.open(directory, logger, metrics.storeObserver.readFailed))
    .catch((error: unknown) => {
      client.close();
      throw error;
    });
  const store = EtcdStore.open({
    config: etcdConfig,
    client,
    namespace,
    view,
    logger,
    observer: { ...createEtcdMetrics(metrics.registry, metrics.internalError), renewal: metrics.storeObserver.renewal, renewalFlushed: metrics.storeObserver.renewalFlushed },
    now,
    renewalSlackMs: config.renewalSlackMs,
    ...(options.tombstoneAgeMs === undefined ? {} : { tombstoneAgeMs: options.tombstoneAgeMs }),
    ...(options.collectIntervalMs === undefined ? {} : { collectIntervalMs: options.collectIntervalMs }),
  });
  logger.info(
    { endpoints: etcdConfig.endpoints, prefix: etcdConfig.prefix, selector: etcdConfig.groupSelector?.text ?? "every group" },
    "registry in etcd; the directory is this instance's view of it",
  );
  return {
    store,
    directory: view.directory,
    // An outside edit is undone: the view says whether the file still holds what it wrote, the registry puts its value back.
    changed: (id) => void view.check(id).then((differs) => differs && store.putBack(id)),
    stopBackend: async () => {
      await store.close();
      await view.close();
    },
    backendProblem: () => store.notReadyBecause(),
    expiryGraceMs: expiryGraceMs(config.renewalSlackMs),
  };
}
