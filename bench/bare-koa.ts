import Router from "@koa/router";
import Koa from "koa";
import type { AddressInfo } from "node:net";
import type { Server } from "node:http";

/**
 * The framework baseline: Koa + @koa/router answering the same JSON as the service on
 * `/:application/:environment`, `/` and `/-/http_sd`, with nothing else (no logging, no
 * metrics, no checks). What the service adds on top of its framework is the gap to this one.
 * Started by processes.ts like bare-server.ts: the documents over IPC, the URL back.
 */
process.once("message", (message: { documents: Record<string, unknown> }) => {
  const documents = new Map(Object.entries(message.documents));
  const answer = (ctx: Koa.Context): void => {
    const document = documents.get(ctx.path);
    if (document === undefined) {
      ctx.status = 404;
      ctx.body = { message: "not found" };
      return;
    }
    ctx.body = document;
  };
  const router = new Router();
  router.get("/", answer).get("/-/http_sd", answer).get("/:application/:environment", answer);
  const app = new Koa();
  app.use(router.routes());
  const server: Server = app.listen(0, "127.0.0.1", () => {
    const { port } = server.address() as AddressInfo;
    process.send?.({ url: `http://127.0.0.1:${port}` });
  });
  process.once("SIGTERM", () => {
    server.close(() => process.exit(0));
    server.closeAllConnections();
  });
});
