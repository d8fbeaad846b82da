/**
 * One queue per key. The jobs of a key run in arrival order, one batch at a
 * time: whatever queued up while the previous batch ran is handed over as the
 * next batch, so the store can apply them all and write the file once.
 * Different keys run in parallel.
 */
export class Lanes<Job> {
  private readonly queues = new Map<string, Job[]>();
  private readonly running = new Set<Promise<void>>();

  /** `runBatch` settles every job it is given and never throws. */
  constructor(private readonly runBatch: (key: string, jobs: Job[]) => Promise<void>) {}

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
      while (queue.length > 0) await this.runBatch(key, queue.splice(0));
    } finally {
      this.queues.delete(key);
    }
  }
}
