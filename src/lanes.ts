/** A job of a lane: whatever else it carries, it can be answered with a failure. */
export interface LaneJob {
  /** Answers the job with `error`; a no-op when it was answered already (a promise settles once). */
  fail(error: Error): void;
}

/**
 * One queue per key. The jobs of a key run in arrival order, one batch at a
 * time: whatever queued up while the previous batch ran is handed over as the
 * next batch, so the store can apply them all and write the file once.
 * Different keys run in parallel.
 *
 * A batch that throws (a bug: the store settles every job it can) still
 * answers every job of that batch, with `failure(error)`, and the lane goes
 * on with the next batch: nothing a request sent can stop a lane, let alone
 * the process, and no request waits for ever.
 */
export class Lanes<Job extends LaneJob> {
  private readonly queues = new Map<string, Job[]>();
  private readonly running = new Set<Promise<void>>();

  /**
   * `runBatch` settles every job it is given. `failed` hears of a batch that
   * threw anyway, after its jobs were answered with the error it returns: log
   * and count it there.
   */
  constructor(
    private readonly runBatch: (key: string, jobs: Job[]) => Promise<void>,
    private readonly failed: (key: string, error: unknown) => Error,
  ) {}

  push(key: string, job: Job): void {
    const queue = this.queues.get(key);
    if (queue !== undefined) {
      queue.push(job);
      return;
    }
    const fresh = [job];
    this.queues.set(key, fresh);
    const run = this.drain(key, fresh).finally(() => this.running.delete(run));
    this.running.add(run);
  }

  /** Whether jobs of `key` are queued or running. */
  busy(key: string): boolean {
    return this.queues.has(key);
  }

  /** Resolves once every job pushed so far, and every job they led to, has run. */
  async idle(): Promise<void> {
    while (this.running.size > 0) await Promise.allSettled([...this.running]);
  }

  private async drain(key: string, queue: Job[]): Promise<void> {
    try {
      while (queue.length > 0) {
        const batch = queue.splice(0);
        try {
          await this.runBatch(key, batch);
        } catch (error) {
          let failure: Error;
          try {
            failure = this.failed(key, error);
          } catch (reporting) {
            failure = reporting instanceof Error ? reporting : new Error(String(reporting));
          }
          for (const job of batch) job.fail(failure);
        }
      }
    } finally {
      this.queues.delete(key);
    }
  }
}

/**
 * At most one pending timer per key (a group's next flush of renewals): a key
 * that has one keeps it, whatever delay is asked for meanwhile. Unref'd, so a
 * pending flush never keeps the process alive; after `stop` no timer starts.
 */
export class KeyTimers {
  private readonly timers = new Map<string, NodeJS.Timeout>();
  private stopped = false;

  /** Runs `run(key)` after `delayMs`, unless the key already has a timer or the timers are stopped. */
  constructor(private readonly run: (key: string) => void) {}

  schedule(key: string, delayMs: number): void {
    if (this.stopped || this.timers.has(key)) return;
    const timer = setTimeout(() => {
      this.timers.delete(key);
      this.run(key);
    }, delayMs);
    timer.unref();
    this.timers.set(key, timer);
  }

  /** Runs the key's pending timer now (when it has one or not), as its own timer would. */
  runNow(key: string): void {
    clearTimeout(this.timers.get(key));
    this.timers.delete(key);
    this.run(key);
  }

  /** Clears every pending timer; none starts after this. */
  stop(): void {
    this.stopped = true;
    for (const timer of this.timers.values()) clearTimeout(timer);
    this.timers.clear();
  }
}
