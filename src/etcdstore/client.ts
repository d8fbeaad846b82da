import { randomBytes } from "node:crypto";
import { readFile } from "node:fs/promises";
import { circuitBreaker, ConsecutiveBreaker, handleWhen, isBrokenCircuitError, noop } from "cockatiel";
import { Etcd3, isRecoverableError, type IOptions, type Namespace } from "etcd3";
import type { EtcdConfig } from "../config.js";
import { StoreUnavailableError } from "../errors.js";

const MAX_ANSWER_BYTES = 1024 * 1024 * 1024;

/**
 * A name for one store among the instances sharing etcd: the name of its
 * commit markers (src/etcdstore/keys.ts). New at every start, so no two
 * instances ever share one, not even two in one process.
 */
export function newInstanceId(): string {
  return randomBytes(9).toString("base64url");
}

/**
 * An etcd v3 client (the `etcd3` package, gRPC) for ETCD_ENDPOINTS with the TLS
 * and auth of the config, and the namespace of ETCD_PREFIX. Certificates and
 * the password file are read once, here: a missing file stops the service at
 * start with its name.
 */
export async function connectEtcd(config: EtcdConfig): Promise<{ client: Etcd3; namespace: Namespace }> {
  const options: IOptions = {
    hosts: [...config.endpoints],
    dialTimeout: config.timeoutMs,
    // A resync reads every group in one answer: 10,000 groups of 20 targets are 7 MB,
    // over gRPC's default limit of 4 MB.
    grpcOptions: { "grpc.max_receive_message_length": MAX_ANSWER_BYTES },
    // The client never repeats a call by itself: a transaction that failed
    // after reaching etcd may have been applied, and only the store, which
    // compares revisions, can tell (src/etcdstore/etcd-store.ts, commit).
    // A member that failed three calls in a row is skipped for a second
    // (the client's default is five), so a member that is back is used soon.
    faultHandling: {
      global: noop,
      // A request too large for etcd says nothing of the member: it must not open the breaker for everyone's.
      host: () => circuitBreaker(handleWhen((error) => isRecoverableError(error) && !isTooLarge(error)), { halfOpenAfter: 1000, breaker: new ConsecutiveBreaker(3) }),
    },
  };
  if (config.tls !== undefined) {
    options.credentials = {
      rootCertificate: config.tls.caFile === undefined ? (undefined as unknown as Buffer) : await readConfigFile("ETCD_CA_FILE", config.tls.caFile),
      certChain: config.tls.certFile === undefined ? undefined : await readConfigFile("ETCD_CERT_FILE", config.tls.certFile),
      privateKey: config.tls.keyFile === undefined ? undefined : await readConfigFile("ETCD_KEY_FILE", config.tls.keyFile),
    };
  }
  if (config.auth !== undefined) {
    const password = "password" in config.auth
      ? config.auth.password
      : (await readConfigFile("ETCD_PASSWORD_FILE", config.auth.passwordFile)).toString("utf8").replace(/\r?\n$/, "");
    options.auth = { username: config.auth.username, password };
  }
  const client = new Etcd3(options);
  return { client, namespace: client.namespace(config.prefix) };
}

async function readConfigFile(variable: string, path: string): Promise<Buffer> {
  try {
    return await readFile(path);
  } catch (error) {
    throw new Error(`${variable}=${path} cannot be read: ${(error as Error).message}`, { cause: error });
  }
}

/**
 * Runs one etcd call that must be over by `deadline`: gRPC's own deadline, and
 * a timer in case the client is still waiting for a connection.
 */
export async function beforeDeadline<T>(deadline: number, call: (deadline: Date) => Promise<T>): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  try {
    return await Promise.race([
      call(new Date(deadline)),
      new Promise<never>((_, reject) => {
        timer = setTimeout(() => reject(new DeadlineError()), Math.max(0, deadline - Date.now()));
      }),
    ]);
  } finally {
    clearTimeout(timer);
  }
}

export class DeadlineError extends Error {
  constructor(last?: unknown) {
    super(last === undefined ? "no answer within ETCD_TIMEOUT" : `no success within ETCD_TIMEOUT; last error: ${describeEtcdError(last)}`);
    this.name = "DeadlineError";
  }
}

/** A 503 that names the endpoints and says what the client can do. */
export function unavailable(config: EtcdConfig, what: string, cause: unknown): StoreUnavailableError {
  return new StoreUnavailableError(
    `etcd (${config.endpoints.join(", ")}) could not ${what} within ETCD_TIMEOUT (${config.timeoutMs} ms): ` +
      `${describeEtcdError(cause)}. etcd is unreachable or has lost quorum. The change was not acknowledged, ` +
      "but it may still be applied once etcd answers (it reached etcd, or may have): GET shows what is registered; " +
      "sending the same request again is safe.",
    { cause },
  );
}

/** etcd refuses a request larger than its --max-request-bytes (1.5 MiB by default) at once: no retry helps. */
export function isTooLarge(error: unknown): boolean {
  // Up to 2 MiB, etcd says so; beyond, gRPC refuses the message before etcd sees it.
  return error instanceof Error && /request is too large|received message larger than max/.test(error.message);
}

/** etcd refuses a transaction with more comparisons, puts or reads than its --max-txn-ops (128 by default). */
export function isTooManyOps(error: unknown): boolean {
  return error instanceof Error && /too many operations in txn request/.test(error.message);
}

/** The useful part of a gRPC error, which can be long and nested. */
export function describeEtcdError(error: unknown): string {
  if (isBrokenCircuitError(error)) return "every endpoint failed its last calls (refused, reset or timed out)";
  const message = error instanceof Error ? error.message : String(error);
  return message.replace(/\s+/g, " ").slice(0, 300);
}
