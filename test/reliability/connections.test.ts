import { connect, type Socket } from "node:net";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { connectionLimit } from "../../src/server.js";
import { makeTempDir, readGroupFile, removeDir } from "../helpers.js";
import { startChildService, type ChildService } from "../support/child-service.js";

/**
 * Idle and half-sent connections cannot take the file descriptors the writes need, and every
 * answer the HTTP layer gives itself is JSON too: against the built server, with the open-files
 * limit of a container (1024) made smaller still.
 */
describe("connections", () => {
  const LIMIT = 256;
  let directory: string;
  let child: ChildService;
  beforeAll(async () => {
    directory = await makeTempDir();
    child = await startChildService({ directory, openFilesLimit: LIMIT });
  });
  afterAll(async () => {
    await child?.stop();
    await removeDir(directory);
  });

  const raw = (text: string): Promise<string> =>
    new Promise((resolve, reject) => {
      const { hostname, port } = new URL(child.url);
      const socket = connect(Number(port), hostname, () => socket.write(text));
      let answer = "";
      socket.on("data", (chunk: Buffer) => {
        answer += chunk.toString();
        if (answer.includes("\r\n\r\n") && /}$/.test(answer)) socket.end();
      });
      socket.on("end", () => resolve(answer));
      socket.on("close", () => resolve(answer));
      socket.on("error", reject);
    });

  it("takes no more connections than the descriptor limit leaves room for", () => {
    expect(connectionLimit(`Limit                     Soft Limit           Hard Limit           Units\nMax open files            1024                 524288               files\n`)).toBe(720);
    expect(connectionLimit("Max open files            unlimited            unlimited            files\n")).toBe(Infinity);
    expect(connectionLimit(undefined)).toBe(Infinity);
    expect(connectionLimit("Max open files            80                   80                   files\n")).toBe(32);
  });

  it("answers an HTTP/1.1 request without Host, and an Expect it cannot meet, in JSON", async () => {
    const noHost = await raw("GET /fd/x HTTP/1.1\r\nConnection: close\r\n\r\n");
    expect(noHost).toMatch(/^HTTP\/1\.1 400 /);
    expect(noHost).toMatch(/\{"message":"an HTTP\/1\.1 request needs a Host header/);
    const old = await raw("GET /fd/x HTTP/1.0\r\n\r\n");
    expect(old).toMatch(/^HTTP\/1\.1 200 /);
    const expectation = await raw("PUT /fd/x HTTP/1.1\r\nHost: x\r\nExpect: weird\r\nContent-Length: 0\r\nConnection: close\r\n\r\n");
    expect(expectation).toMatch(/^HTTP\/1\.1 417 /);
    expect(expectation).toMatch(/\{"message":"Expect: weird is not supported/);
  });

  it("with more idle, half-sent connections than descriptors, a write is refused at the door or lands, never a 500", async () => {
    const { hostname, port } = new URL(child.url);
    const idle: Socket[] = [];
    const answers: number[] = [];
    const timedOut: string[] = [];
    try {
      for (let i = 0; i < LIMIT + 50; i++) {
        const socket = connect(Number(port), hostname);
        socket.on("error", () => undefined);
        // Half of them read what they are told; the others never read nor close, and must be let go all the same.
        if (i % 2 === 0) socket.on("data", (chunk: Buffer) => timedOut.push(chunk.toString()));
        socket.write("PUT /slow/x HTTP/1.1\r\nHost: x\r\n");
        idle.push(socket);
      }
      await new Promise((resolve) => setTimeout(resolve, 500));
      expect(child.isRunning()).toBe(true);
      // A client that is refused tries again, as any would; the idle ones are dropped after the headers timeout (10 s).
      let landed: string | undefined;
      for (let attempt = 0; landed === undefined && attempt < 200; attempt++) {
        try {
          // A connection the listener could not take yet may hang rather than be refused: each attempt has 2 s.
          const answer = await fetch(`${child.url}/fd/x${attempt}`, {
            method: "PUT",
            body: "targets=a:1",
            headers: { "content-type": "application/x-www-form-urlencoded" },
            signal: AbortSignal.timeout(2000),
          });
          await answer.text();
          answers.push(answer.status);
          if (answer.status === 200) landed = `x${attempt}`;
        } catch {
          await new Promise((resolve) => setTimeout(resolve, 100));
        }
      }
      expect(answers.filter((status) => status !== 200)).toEqual([]);
      // The idle ones were told why, in JSON, and let go: that is what freed their places.
      expect(timedOut.length).toBeGreaterThan(0);
      expect(timedOut[0]).toMatch(/^HTTP\/1\.1 408 Request Timeout\r\n[\s\S]*"message":"the request did not arrive in time/);
      expect(landed).toBeDefined();
      expect(await readGroupFile(directory, "fd", landed!)).toEqual([{ targets: ["a:1"], labels: { job: "fd", env: landed } }]);
    } finally {
      for (const socket of idle) socket.destroy();
    }
  }, 60_000);
});
