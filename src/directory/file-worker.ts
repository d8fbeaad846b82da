import { Worker } from "node:worker_threads";

/**
 * The view's file system calls (src/directory/view.ts), made by a worker thread.
 *
 * At start in etcd mode the view writes every group's file: 10,000 files are 40,000 calls
 * (open, write, close, rename). Made from the main thread, each one is a promise and a trip
 * through libuv's thread pool that costs the event loop 10-40 µs, and with the re-read that the
 * directory watch asks for each file we wrote, they were 2 of the 3.8 s to `/-/ready` (see
 * BENCHMARKS.md). The worker makes the same calls synchronously, which is the cheapest way there
 * is, while the main thread goes on answering requests and applying the etcd watch; it hands
 * over the requests of one turn of the event loop as one message and gets the answers back in
 * a few.
 *
 * The worker knows nothing but paths: what a file should hold, and when, stays the view's. A
 * temporary file is written beside the file and renamed over it (a reader never sees half of
 * one), not fsync'd: the view is a copy of etcd that a resync rebuilds at every start.
 *
 * Should the thread die (it should not: every call is caught), the calls it had are rejected
 * with a `FileWorkerGone` and the next call starts a new thread; the view tries a failed write
 * again every 2 s, and a re-read falls back to the main thread.
 */

export type WorkerRequest =
  | { readonly op: "write"; readonly path: string; readonly text: string; readonly bits: number; readonly chmod: boolean }
  | { readonly op: "remove"; readonly path: string }
  | { readonly op: "read"; readonly path: string };

/** What a failed call said: enough to rebuild the error (whyNot reads code and message). */
export interface WorkerFailure {
  readonly message: string;
  readonly code?: string;
  readonly errno?: number;
  readonly syscall?: string;
  readonly path?: string;
}

export type WorkerAnswer = { readonly error: WorkerFailure } | { readonly text?: string; readonly mtimeMs?: number };

/** The thread is gone (crashed or stopped) with the call unanswered: whether it was made is unknown. */
export class FileWorkerGone extends Error {
  constructor(why: string) {
    super(`the directory's writer thread stopped (${why})`);
    this.name = "FileWorkerGone";
  }
}

/** At most this many calls go in one message. */
const CALLS_PER_MESSAGE = 256;

export class FileWorker {
  private worker: Worker | undefined;
  private nextId = 0;
  private readonly pending = new Map<number, { resolve(answer: WorkerAnswer): void; reject(error: Error): void }>();
  private outbox: [number, WorkerRequest][] = [];
  private flushScheduled = false;
  private stopped = false;
  /** Threads started so far, for tests. */
  started = 0;

  /** Sends `request` with the others of this turn of the event loop; rejects only with a FileWorkerGone. */
  call(request: WorkerRequest): Promise<WorkerAnswer> {
    if (this.stopped) return Promise.reject(new FileWorkerGone("the view was closed"));
    const id = this.nextId++;
    return new Promise((resolve, reject) => {
      this.pending.set(id, { resolve, reject });
      this.outbox.push([id, request]);
      // A resync asks for thousands of writes in one go: the thread starts on the first while the rest are asked for.
      if (this.outbox.length >= CALLS_PER_MESSAGE) this.flush();
      else if (!this.flushScheduled) {
        this.flushScheduled = true;
        setImmediate(() => {
          this.flushScheduled = false;
          this.flush();
        });
      }
    });
  }

  /** Ends the thread, as a crash would: for tests of what a crash leaves. */
  async kill(): Promise<void> {
    await this.worker?.terminate();
  }

  /** Ends the thread for good; calls after this reject. */
  async stop(): Promise<void> {
    this.stopped = true;
    await this.worker?.terminate();
    this.failPending("the view was closed");
  }

  private flush(): void {
    const batch = this.outbox;
    this.outbox = [];
    if (batch.length === 0) return;
    let worker: Worker;
    try {
      worker = this.worker ?? this.spawn();
      worker.postMessage(batch);
    } catch (error) {
      for (const [id] of batch) this.settle(id, undefined, new FileWorkerGone((error as Error).message));
    }
  }

  private spawn(): Worker {
    const worker = new Worker(`(${workerMain.toString()})(require);`, { eval: true });
    this.started++;
    // A thread with nothing to do never keeps the process alive.
    worker.unref();
    worker.on("message", (answers: [number, WorkerAnswer][]) => {
      for (const [id, answer] of answers) this.settle(id, answer);
    });
    const gone = (why: string): void => {
      if (this.worker !== worker) return;
      this.worker = undefined;
      this.failPending(why);
    };
    worker.on("error", (error) => gone(error.message));
    worker.on("exit", (code) => gone(`exit code ${code}`));
    this.worker = worker;
    return worker;
  }

  private failPending(why: string): void {
    for (const id of [...this.pending.keys()]) this.settle(id, undefined, new FileWorkerGone(why));
  }

  private settle(id: number, answer: WorkerAnswer | undefined, error?: Error): void {
    const call = this.pending.get(id);
    if (call === undefined) return;
    this.pending.delete(id);
    if (error !== undefined) call.reject(error);
    else call.resolve(answer as WorkerAnswer);
  }
}

/** The error a failed call in the thread stood for. */
export function errorOf(failure: WorkerFailure): NodeJS.ErrnoException {
  const { message, ...details } = failure;
  return Object.assign(new Error(message), details);
}

/**
 * The thread's code, run from its source (an eval worker), so it needs no file of its own next to
 * the compiled one and runs the same from src/ under the tests. It may use nothing from outside.
 */
function workerMain(load: (module: string) => unknown): void {
  const fs = load("node:fs") as typeof import("node:fs");
  const { parentPort } = load("node:worker_threads") as typeof import("node:worker_threads");
  const CREATE_NEW = fs.constants.O_WRONLY | fs.constants.O_CREAT | fs.constants.O_EXCL;
  let suffix = Math.floor(Math.random() * 2 ** 32);
  // Answers go back in chunks this big, so the main thread works on the first while the rest are written.
  const ANSWERS_PER_MESSAGE = 256;

  const failure = (error: unknown): { error: WorkerFailure } => {
    const { message, code, errno, syscall, path } = error as NodeJS.ErrnoException;
    return { error: { message: String(message), ...(code === undefined ? {} : { code }), ...(errno === undefined ? {} : { errno }), ...(syscall === undefined ? {} : { syscall }), ...(path === undefined ? {} : { path }) } };
  };

  // The same steps as atomic-write.ts (`<file>.<uint32>`, O_EXCL, renamed over the file), synchronously.
  const write = (path: string, text: string, bits: number, chmod: boolean): void => {
    suffix = (suffix + 1) % 2 ** 32;
    const temporary = `${path}.${suffix}`;
    const fd = fs.openSync(temporary, CREATE_NEW, bits);
    let isOpen = true;
    try {
      if (chmod) fs.fchmodSync(fd, bits);
      const bytes = Buffer.from(text);
      for (let written = 0; written < bytes.length; ) written += fs.writeSync(fd, bytes, written, bytes.length - written);
      isOpen = false;
      fs.closeSync(fd);
      fs.renameSync(temporary, path);
    } catch (error) {
      if (isOpen) {
        try {
          fs.closeSync(fd);
        } catch {
          // Nothing more to do about a descriptor that will not close.
        }
      }
      try {
        fs.unlinkSync(temporary);
      } catch {
        // Already gone, or left for the next start's scan to remove.
      }
      throw error;
    }
  };

  // As directory.ts's readSync: O_NONBLOCK, so a FIFO someone put at a managed name cannot freeze the thread.
  const read = (path: string): WorkerAnswer => {
    const fd = fs.openSync(path, fs.constants.O_RDONLY | fs.constants.O_NONBLOCK);
    try {
      const stats = fs.fstatSync(fd);
      if (!stats.isFile()) return { error: { message: `${path} is not a regular file`, code: "ENOTREG" } };
      return { text: fs.readFileSync(fd, "utf8"), mtimeMs: stats.mtimeMs };
    } finally {
      fs.closeSync(fd);
    }
  };

  const run = (request: WorkerRequest): WorkerAnswer => {
    try {
      if (request.op === "write") write(request.path, request.text, request.bits, request.chmod);
      else if (request.op === "remove") fs.unlinkSync(request.path);
      else return read(request.path);
      return {};
    } catch (error) {
      return failure(error);
    }
  };

  parentPort?.on("message", (batch: [number, WorkerRequest][]) => {
    let answers: [number, WorkerAnswer][] = [];
    for (const [id, request] of batch) {
      answers.push([id, run(request)]);
      if (answers.length === ANSWERS_PER_MESSAGE) {
        parentPort.postMessage(answers);
        answers = [];
      }
    }
    if (answers.length > 0) parentPort.postMessage(answers);
  });
}
