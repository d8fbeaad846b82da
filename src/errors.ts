/**
 * A request the service refuses. Thrown anywhere below the handlers; the error
 * middleware turns it into `{"message": …}` with this status. The message is
 * for the person at the terminal: what was wrong, with the value, and the fix.
 */
export class RuleError extends Error {
  constructor(
    readonly status: 400 | 401 | 403 | 404 | 405 | 413 | 415,
    message: string,
    readonly headers: Readonly<Record<string, string>> = {},
  ) {
    super(message);
    this.name = "RuleError";
  }
}

/** The disk refused a write or removal: a server-side failure, never the client's fault. */
export class StoreError extends Error {
  readonly status = 500;
  constructor(message: string, options?: { cause?: unknown }) {
    super(message, options);
    this.name = "StoreError";
  }
}
