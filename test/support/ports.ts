import { createServer } from "node:net";

/**
 * A TCP port that was free on `host` a moment ago: for programs that must be told their port
 * up front (Prometheus), and for targets that should refuse connections.
 */
export async function freePort(host = "127.0.0.1"): Promise<number> {
  const server = createServer();
  await new Promise<void>((resolve, reject) => {
    server.once("error", reject);
    server.listen(0, host, () => resolve());
  });
  const address = server.address();
  await new Promise<void>((resolve) => server.close(() => resolve()));
  if (address === null || typeof address === "string") throw new Error(`no TCP port from a listener on ${host}`);
  return address.port;
}
