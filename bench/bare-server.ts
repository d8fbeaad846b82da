import { createServer } from "node:http";
import type { AddressInfo } from "node:net";

/**
 * The GET baseline: a bare node:http server that answers the same JSON as the
 * service, serialised per request like the service does, with nothing else
 * (no routing, no logging, no framework). Started by processes.ts, which sends
 * the documents over IPC and receives the URL back.
 */
process.once("message", (message: { documents: Record<string, unknown> }) => {
  const documents = new Map(Object.entries(message.documents));
  const server = createServer((request, response) => {
    const document = documents.get(request.url ?? "");
    if (document === undefined) {
      response.writeHead(404, { "content-type": "application/json; charset=utf-8" });
      response.end('{"message":"not found"}');
      return;
    }
    const body = JSON.stringify(document);
    response.writeHead(200, {
      "content-type": "application/json; charset=utf-8",
      "content-length": Buffer.byteLength(body),
    });
    response.end(body);
  });
  server.listen(0, "127.0.0.1", () => {
    const { port } = server.address() as AddressInfo;
    process.send?.({ url: `http://127.0.0.1:${port}` });
  });
  process.once("SIGTERM", () => {
    server.close(() => process.exit(0));
    server.closeAllConnections();
  });
});
