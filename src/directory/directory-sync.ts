import { open } from "node:fs/promises";

/**
 * fsync of the directory, so that a rename survives a power cut, shared between
 * concurrent writers (group commit): whoever arrives while a sync runs waits
 * for the next one, and everyone waiting then shares it.
 */
export class DirectorySync {
  private inFlight: Promise<void> | undefined;
  private queued: Promise<void> | undefined;

  constructor(private readonly directory: string) {}

  sync(): Promise<void> {
    if (this.queued !== undefined) return this.queued;
    if (this.inFlight === undefined) return this.start();
    const queued = this.inFlight
      .catch(() => undefined)
      .then(() => {
        this.queued = undefined;
        return this.start();
      });
    this.queued = queued;
    return queued;
  }

  private start(): Promise<void> {
    const run = fsyncDirectory(this.directory).finally(() => {
      if (this.inFlight === run) this.inFlight = undefined;
    });
    this.inFlight = run;
    return run;
  }
}

async function fsyncDirectory(directory: string): Promise<void> {
  const handle = await open(directory, "r");
  try {
    await handle.sync();
  } finally {
    await handle.close();
  }
}
