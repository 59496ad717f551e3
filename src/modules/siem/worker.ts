import type { Kysely } from 'kysely';
import type { Clock } from '../../clock.ts';
import type { Database } from '../../db/schema.ts';
import type { SiemEvent } from './format.ts';
import { advanceCursor, eventsFrom, pendingTenants } from './repository.ts';

/**
 * A place audit events are streamed to. `deliver` resolves only once the destination confirmed
 * the whole batch; on any rejection the batch is sent again later (duplicates, never loss).
 */
export interface SiemDestination {
  /** Stable name: the key of its cursors in `siem_cursors` (`syslog`, `webhook`). */
  readonly id: string;
  deliver(events: readonly SiemEvent[]): Promise<void>;
}

export interface SiemWorkerOptions {
  db: Kysely<Database>;
  clock: Clock;
  destinations: readonly SiemDestination[];
  /** Events per batch (one connection or request each, across tenants); default 100. */
  batchSize?: number;
  /** Pause between polls when caught up; default 1000 ms. */
  intervalMs?: number;
  /** Backoff after a failed batch: base doubling per failure up to max; default 1 s .. 5 min. */
  retryBaseMs?: number;
  retryMaxMs?: number;
  /** Monotonic milliseconds for backoff timing (default performance.now). */
  monotonic?: () => number;
  /** Where failures are reported (the server passes its logger). */
  onError?: (destination: string, error: unknown, failures: number) => void;
}

export interface SiemRunResult {
  delivered: number;
  failed: string[];
}

/**
 * The SIEM delivery worker.
 *
 * The durable outbox is the audit log itself. Each tenant's log is a gap-free sequence (leaf
 * index 0, 1, 2, ...) appended in the transaction of the change it records, and appends of one
 * tenant are serialised by the lock on its tree row, so leaf n+1 is never visible before leaf n.
 * A per-(destination, tenant) cursor in `siem_cursors` names the first leaf not yet confirmed,
 * and moves only after the destination confirmed the batch. So:
 * - nothing extra is written in the audit transaction, and an event committed is an event that
 *   will be delivered, whatever happens to the receiver or to this process meanwhile;
 * - a crash between delivery and the cursor update resends that batch (at least once: receivers
 *   deduplicate on the event id, which is in every message);
 * - a new destination starts at the beginning of the log.
 */
export function createSiemWorker(options: SiemWorkerOptions) {
  const { db, clock, destinations } = options;
  const batchSize = options.batchSize ?? 100;
  const intervalMs = options.intervalMs ?? 1000;
  const retryBaseMs = options.retryBaseMs ?? 1000;
  const retryMaxMs = options.retryMaxMs ?? 300_000;
  const monotonic = options.monotonic ?? (() => performance.now());
  const backoff = new Map<string, { failures: number; retryAt: number }>();

  let running: Promise<SiemRunResult> | undefined;
  let timer: NodeJS.Timeout | undefined;
  let started = false;

  /**
   * Delivers everything pending to one destination; returns how many events it confirmed.
   * A batch may span tenants (many quiet tenants cost one connection, not one each); every
   * tenant's cursor in it moves once the whole batch is confirmed.
   */
  async function drain(destination: SiemDestination): Promise<number> {
    let delivered = 0;
    const pending = await pendingTenants(db, destination.id);
    for (;;) {
      const batch: SiemEvent[] = [];
      const advances: { tenant: (typeof pending)[number]; next: number }[] = [];
      for (const tenant of pending) {
        if (tenant.next >= tenant.treeSize) continue;
        if (batch.length >= batchSize) break;
        const rows = await eventsFrom(db, tenant.tenantId, tenant.next, batchSize - batch.length);
        // None left below the head: pruned by retention before it could be sent.
        const next = rows.length === 0 ? tenant.treeSize : rows[rows.length - 1]!.leafIndex + 1;
        batch.push(...rows);
        advances.push({ tenant, next });
      }
      if (advances.length === 0) return delivered;
      if (batch.length > 0) await destination.deliver(batch);
      delivered += batch.length;
      const now = clock.now().toISOString();
      for (const a of advances) {
        await advanceCursor(db, destination.id, a.tenant.tenantId, a.next, now);
        a.tenant.next = a.next;
      }
    }
  }

  async function run(force: boolean): Promise<SiemRunResult> {
    const result: SiemRunResult = { delivered: 0, failed: [] };
    for (const destination of destinations) {
      const state = backoff.get(destination.id);
      if (!force && state && monotonic() < state.retryAt) continue;
      try {
        result.delivered += await drain(destination);
        backoff.delete(destination.id);
      } catch (error) {
        const failures = (state?.failures ?? 0) + 1;
        const delay = Math.min(retryMaxMs, retryBaseMs * 2 ** Math.min(failures - 1, 30));
        // Jitter (50..100 %) so that many nodes do not hammer a recovering receiver together.
        backoff.set(destination.id, {
          failures,
          retryAt: monotonic() + delay * (0.5 + Math.random() / 2),
        });
        result.failed.push(destination.id);
        options.onError?.(destination.id, error, failures);
      }
    }
    return result;
  }

  /** One pass over every destination; concurrent callers share the pass in progress. */
  function runOnce(opts: { force?: boolean } = {}): Promise<SiemRunResult> {
    running ??= run(opts.force ?? false).finally(() => {
      running = undefined;
    });
    return running;
  }

  function nextDelay(): number {
    let delay = intervalMs;
    const now = monotonic();
    for (const state of backoff.values()) delay = Math.min(delay, Math.max(0, state.retryAt - now));
    return Math.max(delay, 10);
  }

  function schedule() {
    if (!started) return;
    timer = setTimeout(() => {
      runOnce()
        .catch((error: unknown) => options.onError?.('*', error, 0))
        .finally(schedule);
    }, nextDelay());
  }

  return {
    runOnce,
    /** Starts polling (server.ts); a no-op without destinations. */
    start() {
      if (started || destinations.length === 0) return;
      started = true;
      schedule();
    },
    /** Stops polling and waits for the pass in progress. */
    async stop() {
      started = false;
      if (timer) clearTimeout(timer);
      timer = undefined;
      await running?.catch(() => undefined);
    },
    /** Consecutive failures per destination (for health checks and tests). */
    failures(destination: string): number {
      return backoff.get(destination)?.failures ?? 0;
    },
  };
}

export type SiemWorker = ReturnType<typeof createSiemWorker>;
