/**
 * Why a request was refused, as a small fixed set: the label of
 * `file_sd_rejected_requests_total`, so its cardinality never grows.
 */
export type RejectReason =
  | "bad_name"
  | "bad_body"
  | "rule"
  | "bad_request"
  | "unauthorized"
  | "forbidden"
  | "not_found"
  | "method"
  | "too_large"
  | "media_type"
  | "precondition"
  | "other";

/**
 * A request the service refuses. Thrown anywhere below the handlers; the error
 * middleware turns it into `{"message": …}` with this status. The message is
 * for the person at the terminal: what was wrong, with the value, and the fix.
 */
export class RuleError extends Error {
  constructor(
    readonly status: 400 | 401 | 403 | 404 | 405 | 412 | 413 | 415,
    message: string,
    readonly headers: Readonly<Record<string, string>> = {},
    /** Set where the status alone does not say it (a 400 may be a bad name, a bad body or a rule). */
    readonly reason?: RejectReason,
  ) {
    // A refusal is an answer, not a bug: no stack trace is captured for it (capturing one cost
    // more than the rest of a refused request). Bugs (any other Error) keep theirs.
    const limit = Error.stackTraceLimit;
    Error.stackTraceLimit = 0;
    super(message);
    Error.stackTraceLimit = limit;
    this.name = "RuleError";
  }
}

/** Runs `step`; a 400 it throws without a reason is rethrown as one refused for `reason`. */
export function rejectAs<T>(reason: RejectReason, step: () => T): T {
  try {
    return step();
  } catch (error) {
    if (error instanceof RuleError && error.status === 400 && error.reason === undefined) {
      throw new RuleError(error.status, error.message, error.headers, reason);
    }
    throw error;
  }
}

/** The disk refused a write or removal: a server-side failure, never the client's fault. */
export class StoreError extends Error {
  readonly status: 500 | 503;
  constructor(message: string, options?: { cause?: unknown; status?: 500 | 503 }) {
    super(message, options);
    this.name = "StoreError";
    this.status = options?.status ?? 500;
  }
}

/**
 * The registry cannot take a change right now (etcd unreachable, without
 * quorum, or too busy to settle a conflict): a 503, nothing changed, try again.
 */
export class StoreUnavailableError extends StoreError {
  constructor(message: string, options?: { cause?: unknown }) {
    super(message, { ...options, status: 503 });
    this.name = "StoreUnavailableError";
  }
}

/**
 * A bug stopped a change half-way (something threw that no rule or disk
 * explains): a 500, logged with its stack and counted
 * (file_sd_internal_errors_total). The change may or may not have been
 * applied, and the message says so.
 */
export class InternalError extends Error {
  readonly status = 500;
  constructor(message: string, options?: { cause?: unknown }) {
    super(message, options);
    this.name = "InternalError";
  }
}
