import { STATUS_CODES, type IncomingMessage, type ServerResponse } from "node:http";
import type { Duplex } from "node:stream";
import type { Context } from "koa";
import type { Logger } from "pino";
import { InternalError, RuleError, StoreError } from "../errors.js";

interface HttpishError {
  status?: unknown;
  expose?: unknown;
  type?: unknown;
  message: string;
}

/**
 * The one place an error becomes an answer (src/handlers/frame.ts calls it): `{"message": …}`
 * with its status. RuleError is the client's; StoreError is the disk's; errors the body reader
 * raises (too large, bad charset, aborted) are the client's too. Anything else is a bug: 500,
 * logged with its stack and the request id.
 */
export function answerError(
  ctx: Context,
  error: unknown,
  { logger, maxBodyBytes, internalError, requestId }: { logger: Logger; maxBodyBytes: number; internalError: (where: "request") => void; requestId: string },
): void {
  const { status, message, headers } = describe(error, maxBodyBytes);
  ctx.status = status;
  ctx.set(headers);
  if (status < 500) {
    ctx.body = { message };
    return;
  }
  logger.error({ err: error, requestId, method: ctx.method, path: ctx.path, ...(error instanceof StoreError ? {} : { bug: true }) }, "request failed");
  // A bug in a handler; a lane's own (InternalError) was counted where it was caught.
  if (!(error instanceof StoreError) && !(error instanceof InternalError)) internalError("request");
  ctx.body = { message: `${message} (request id ${requestId})` };
}

function describe(error: unknown, maxBodyBytes: number): {
  status: number;
  message: string;
  headers: Record<string, string>;
} {
  if (error instanceof RuleError) return { status: error.status, message: error.message, headers: { ...error.headers } };
  if (error instanceof StoreError || error instanceof InternalError) return { status: error.status, message: error.message, headers: {} };
  const http = error as HttpishError;
  if (typeof http.status === "number" && http.status >= 400 && http.status < 500) {
    if (http.status === 413) {
      return {
        status: 413,
        message: `the body is larger than MAX_BODY_BYTES (${maxBodyBytes} bytes); send fewer targets per request`,
        headers: {},
      };
    }
    const message = http.expose === true ? `the body could not be read: ${http.message}` : "the body could not be read";
    return { status: http.status, message, headers: {} };
  }
  return { status: 500, message: "an internal error stopped this request. This is a bug; please report it with the service log of this request", headers: {} };
}

/**
 * koa-body's `onError`: whatever stops a body from being read is the client's
 * doing. Its own 4xx errors (too large, unknown charset or Content-Encoding,
 * aborted) pass through; the rest come from inflating a gzip, deflate or br
 * body that is not what its Content-Encoding says, and are a 400, not a 500.
 */
export function unreadableBody(error: Error): never {
  const status = (error as HttpishError).status;
  if (typeof status === "number" && status >= 400 && status < 500) throw error;
  throw new RuleError(
    400,
    `the body could not be read: ${error.message}; check that it matches its Content-Encoding, or send it uncompressed`,
  );
}

const CLIENT_WENT_AWAY = new Set(["ECONNRESET", "EPIPE", "ECONNABORTED", "ERR_STREAM_PREMATURE_CLOSE"]);

/**
 * Koa's `error` event: what fails after the answer has started (mostly a client
 * that hung up mid-answer). Without a listener Koa prints a stack to stderr,
 * outside the JSON log.
 */
export function logAppError(logger: Logger) {
  return (error: Error & { code?: string }): void => {
    if (error.code !== undefined && CLIENT_WENT_AWAY.has(error.code)) {
      logger.debug({ code: error.code }, "client went away before the answer was sent");
    } else {
      logger.error({ err: error }, "error after the answer started");
    }
  };
}

/** Node's `checkExpectation`: an Expect other than 100-continue, answered in JSON like everything else. */
export function unmetExpectation(request: IncomingMessage, response: ServerResponse): void {
  const body = JSON.stringify({ message: `Expect: ${request.headers.expect ?? ""} is not supported; send the request without it (100-continue is fine)` });
  response.writeHead(417, { "content-type": "application/json; charset=utf-8", "content-length": Buffer.byteLength(body) });
  response.end(body);
}

/**
 * Node's `clientError`: a request its HTTP parser refused (a malformed header,
 * both Content-Length and chunked) never reaches Koa. Answer it in JSON too,
 * instead of Node's bare 400 with no body.
 */
export function malformedRequest(error: Error & { code?: string }, socket: Duplex): void {
  if (!socket.writable || error.code === "ECONNRESET") {
    socket.destroy();
    return;
  }
  const timedOut = error.code === "ERR_HTTP_REQUEST_TIMEOUT";
  const status = error.code === "HPE_HEADER_OVERFLOW" ? 431 : timedOut ? 408 : 400;
  const body = JSON.stringify({
    message: timedOut
      ? "the request did not arrive in time (headers within 10 s, the whole request within a minute); send it again"
      : `the request is not valid HTTP (${error.code ?? error.message}); check its request line and headers`,
  });
  // Closed once the answer is out, whatever the client does: a client that never reads nor
  // closes (an idle, half-sent request) must not keep its connection, and a descriptor, for ever.
  socket.end(
    `HTTP/1.1 ${status} ${STATUS_CODES[status]}\r\nContent-Type: application/json; charset=utf-8\r\n` +
      `Content-Length: ${Buffer.byteLength(body)}\r\nConnection: close\r\n\r\n${body}`,
    () => socket.destroy(),
  );
}
