import type { Logger } from "pino";
import { keyOf } from "../model.js";
import { expireRegistration } from "../rules/registration.js";
import { earliestDeadline, type Store } from "../store.js";

export interface ExpirySchedulerOptions {
  readonly store: Store;
  readonly logger: Logger;
  /** The same clock the store gives its mutations. */
  readonly now: () => number;
  /** Counts the targets this instance removed (file_sd_targets_expired_total). */
  readonly expired?: (targets: number) => void;
  /** etcd mode: expire only once in step with etcd; until then memory may hold the directory's old state. */
  readonly ready?: () => boolean;
  /** How often the registry is scanned for due deadlines: an expired target goes within 2 s of its deadline (docs/api.md). */
  readonly intervalMs?: number;
  /**
   * How long past its deadline a target is kept (0 in file mode). etcd mode:
   * EXPIRY_GRACE_MS, so that the renewals every instance answered from memory
   * have been committed before a target is taken for expired (docs/heartbeats.md).
   */
  readonly graceMs?: number;
}

const INTERVAL_MS = 500;
/** How many expired targets one log line names. */
const LOGGED_TARGETS = 20;

/**
 * Removes expired targets. Every `intervalMs` (and at once at
 * start, so deadlines that passed while the service was down apply first
 * thing) it looks for groups with a deadline due and sends each one an expiry
 * through the store, like any other change: the same lane, the same
 * all-or-nothing write, the same file log line. The expiry is computed in the
 * store on the value it is applied to, so a target renewed in the meantime is
 * kept, and in etcd mode it is a revision-compared transaction: when several
 * instances try, one removes the target and the others find nothing due.
 *
 * A scan looks at one number per target, so 10,000 targets cost well under a
 * millisecond; it beats keeping a timer per deadline in step with every
 * change that can come from the watch, a resync or an outside edit.
 */
export class ExpiryScheduler {
  private readonly options: ExpirySchedulerOptions;
  private readonly inFlight = new Map<string, Promise<void>>();
  private timer: NodeJS.Timeout | undefined;
  private closed = false;

  constructor(options: ExpirySchedulerOptions) {
    this.options = options;
  }

  start(): void {
    this.tick();
  }

  async close(): Promise<void> {
    this.closed = true;
    clearTimeout(this.timer);
    await Promise.allSettled([...this.inFlight.values()]);
  }

  private tick(): void {
    if (this.closed) return;
    try {
      if (this.options.ready?.() ?? true) this.expireDue();
    } finally {
      this.timer = setTimeout(() => this.tick(), this.options.intervalMs ?? INTERVAL_MS);
    }
  }

  private expireDue(): void {
    const { store, logger, now } = this.options;
    const graceMs = this.options.graceMs ?? 0;
    const at = now() - graceMs;
    // The store gives the mutation its own clock; the grace moves it back for the expiry alone.
    const expire = graceMs === 0 ? expireRegistration : (current: Parameters<typeof expireRegistration>[0], time: number) => expireRegistration(current, time - graceMs);
    for (const entry of store.list()) {
      const earliest = earliestDeadline(entry);
      if (earliest === undefined || earliest > at) continue;
      const key = keyOf(entry.id);
      if (this.inFlight.has(key)) continue;
      const { id, fileName } = entry;
      const run = store
        .update(id, expire)
        .then(({ before, after }) => {
          const staying = new Set(after?.group.targets);
          const gone = (before?.group.targets ?? []).filter((target) => !staying.has(target));
          if (gone.length === 0) return;
          this.options.expired?.(gone.length);
          // A fleet's group may lose thousands at once: the line names the first ones and counts the rest.
          const named = gone.length > LOGGED_TARGETS ? { targets: gone.slice(0, LOGGED_TARGETS), more: gone.length - LOGGED_TARGETS } : { targets: gone };
          logger.info({ file: fileName, ...named, reason: "expired", groupRemoved: after === null }, "targets expired");
        })
        .catch((error: unknown) => {
          // Tried again at the next scan; the deadline stays in the registry.
          logger.error({ file: fileName, err: error, reason: "expired" }, "could not remove expired targets; retrying");
        })
        .finally(() => this.inFlight.delete(key));
      this.inFlight.set(key, run);
    }
  }
}
