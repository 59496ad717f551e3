import { setTimeout as sleep } from 'node:timers/promises';
import type { Kysely } from 'kysely';
import type { Clock } from '../../clock.ts';
import type { Database } from '../../db/schema.ts';
import type { AuditEventInput } from '../audit/event.ts';
import type { AuditRecorder } from '../audit/service.ts';
import { keyEventInput, type KeyEvent } from '../keys/events.ts';
import type { KeyService } from '../keys/service.ts';
import {
  LeaseLost,
  claimLease,
  cursorOf,
  decodeCensus,
  encodeCensus,
  readReencryption,
  releaseLease,
  saveRun,
} from './reencrypt-progress.ts';
import {
  censusOfValues,
  createReencryptionJob,
  type ReencryptProgress,
  type ValueCensus,
} from './reencrypt.ts';
import type { SealedSpec } from './spec.ts';

/**
 * One tenant's re-encryption after a rotation, as both the server's background job and
 * `custos keys reencrypt` / `rotate` run it: take the tenant's lease, re-wrap subject keys under
 * the active version (key store), then re-seal the values still under older versions or in clear
 * (records), saving phase, cursor, counters and census after every batch, so a process killed
 * midway is resumed where it stopped by the next one to take the lease. A run is one target
 * version: it records `keys.reencryption_started` when it begins and `keys.reencrypted` when
 * nothing is left (each in the transaction that changes the run's row), never per batch.
 */

export interface TenantReencryptionDeps {
  db: Kysely<Database>;
  keys: KeyService;
  audit: AuditRecorder;
  clock: Clock;
  specs: readonly SealedSpec[];
  indexBits?: number | undefined;
  /** Who takes the lease: unique per process (`server:<host>:<pid>`, `cli:<host>:<pid>`). */
  owner: string;
  /** The audit actor of the run's events. */
  actor: AuditEventInput['actor'];
  /** How long a lease lasts without renewal (renewed every batch). Default 60 s. */
  leaseMs?: number;
}

export interface TenantRunOptions {
  /** Subject keys or records per batch. Default 200. */
  batchSize?: number;
  /** Pause between batches (the throttle). Default 50 ms. */
  pauseMs?: number;
  /** Stops after the current batch; the next run resumes. */
  signal?: AbortSignal;
  onRewrap?: (progress: { rewrapped: number; remaining: number }) => void;
  onValues?: (progress: ReencryptProgress) => void;
  /**
   * Start no new run when the last one reached the active version (the server's job: another
   * node may have finished it since it looked). Without it, a finished run is started again
   * (`custos keys reencrypt` by hand, e.g. for values written in clear since).
   */
  onlyUnfinished?: boolean;
}

export interface RewrapTotals {
  targetVersion: number;
  /** Subject keys re-wrapped by the run (all its processes). */
  rewrapped: number;
  remaining: number;
  done: boolean;
}

export type TenantRunResult =
  | { outcome: 'busy'; holder: string | null; until: string | null }
  | { outcome: 'up_to_date'; targetVersion: number }
  | {
      /** `incomplete`: values left (users' writes raced it, or ones it could not read). */
      outcome: 'stopped' | 'incomplete' | 'done';
      targetVersion: number;
      /** Whether this call started the run (false: it resumed one). */
      started: boolean;
      rewrap: RewrapTotals;
      /** Absent when stopped before the values phase. */
      values?: ReencryptProgress;
    };

const dataKey = (version: number) => ({ type: 'tenant_data_key' as const, id: `v${version}` });

/** Values still to do for `target`: under other tenant key versions, or in clear. */
export function pendingValues(census: ValueCensus, target: number): number {
  let n = census.clear;
  for (const [version, count] of census.byVersion) if (version !== target) n += count;
  return n;
}

export function createTenantReencryption(deps: TenantReencryptionDeps) {
  const { db, keys, clock, owner } = deps;
  const leaseMs = deps.leaseMs ?? 60_000;
  const job = createReencryptionJob({
    db,
    keys,
    specs: deps.specs,
    indexBits: deps.indexBits,
  });
  const now = () => clock.now().toISOString();
  const until = () => new Date(clock.now().getTime() + leaseMs).toISOString();

  async function appendEvents(
    tenantId: string,
    events: readonly KeyEvent[],
    change: Parameters<typeof saveRun>[3],
  ) {
    // The row's change and its events commit together: a failed append leaves the row as it was.
    await db.transaction().execute(async (trx) => {
      await saveRun(trx, tenantId, owner, change);
      for (const event of events) await deps.audit.append(trx, keyEventInput(event));
    });
  }

  async function subjectKeysUnder(tenantId: string, target: number): Promise<number> {
    const [status] = await keys.status(tenantId);
    return (status?.versions ?? [])
      .filter((v) => v.version < target)
      .reduce((n, v) => n + v.subjectKeys, 0);
  }

  /** Re-wraps subject keys batch by batch, saving the count and renewing the lease each time. */
  async function rewrap(
    tenantId: string,
    totals: RewrapTotals,
    options: TenantRunOptions,
  ): Promise<void> {
    const pauseMs = options.pauseMs ?? 50;
    const stopped = () => options.signal?.aborted === true;
    while (!stopped()) {
      // One batch per call: stopping it after its first batch lets the lease be renewed here.
      const one = new AbortController();
      const result = await keys.rewrapSubjectKeys(tenantId, {
        batchSize: options.batchSize ?? 200,
        pauseMs: 0,
        signal: one.signal,
        onProgress: () => one.abort(),
      });
      totals.rewrapped += result.rewrapped;
      totals.remaining = result.remaining;
      totals.done = result.done;
      if (result.rewrapped > 0) {
        await saveRun(db, tenantId, owner, {
          rewrapped: totals.rewrapped,
          last_batch_at: now(),
          lease_until: until(),
        });
        options.onRewrap?.({ rewrapped: totals.rewrapped, remaining: totals.remaining });
      }
      if (result.done || result.rewrapped === 0) return;
      if (pauseMs > 0) {
        await sleep(pauseMs, undefined, { signal: options.signal }).catch(() => undefined);
      }
    }
  }

  async function runClaimed(tenantId: string, options: TenantRunOptions): Promise<TenantRunResult> {
    const stopped = () => options.signal?.aborted === true;
    const { keyVersion: target } = await keys.tenantDataKey(tenantId);
    const row = await readReencryption(db, tenantId);
    const resumed = row !== undefined && row.state === 'running' && row.target_version === target;
    if (options.onlyUnfinished === true && row?.state === 'done' && row.target_version === target) {
      return { outcome: 'up_to_date', targetVersion: target };
    }
    let census: ValueCensus;
    const totals: RewrapTotals = { targetVersion: target, rewrapped: 0, remaining: 0, done: false };
    let base = { reencrypted: 0, encryptedClear: 0 };
    let phase: 'rewrap' | 'values' = 'rewrap';
    if (resumed) {
      census = decodeCensus(row.census);
      totals.rewrapped = row.rewrapped;
      base = { reencrypted: row.reencrypted, encryptedClear: row.encrypted_clear };
      phase = row.phase;
    } else {
      // A new run: count what there is to do once (a scan of the tenant's protected values).
      census = await censusOfValues(db, deps.specs, tenantId);
      const subjectKeys = await subjectKeysUnder(tenantId, target);
      const at = now();
      await appendEvents(
        tenantId,
        [
          {
            type: 'keys.reencryption_started',
            tenantId,
            actor: deps.actor,
            target: dataKey(target),
            reason: `pending_values_${pendingValues(census, target)};pending_subject_keys_${subjectKeys}`,
          },
        ],
        {
          target_version: target,
          state: 'running',
          phase: 'rewrap',
          cursor_table: null,
          cursor_id: null,
          rewrapped: 0,
          reencrypted: 0,
          encrypted_clear: 0,
          failed: 0,
          census: encodeCensus(census),
          census_at: at,
          started_at: at,
          last_batch_at: null,
          finished_at: null,
          lease_until: until(),
        },
      );
    }
    const started = !resumed;
    if (phase === 'rewrap') {
      await rewrap(tenantId, totals, options);
      if (!totals.done) {
        return {
          outcome: stopped() ? 'stopped' : 'incomplete',
          targetVersion: target,
          started,
          rewrap: totals,
        };
      }
      await saveRun(db, tenantId, owner, { phase: 'values', lease_until: until() });
    } else {
      totals.done = true;
    }
    const values = await job.run(tenantId, {
      batchSize: options.batchSize ?? 200,
      pauseMs: options.pauseMs ?? 50,
      ...(options.signal ? { signal: options.signal } : {}),
      ...(options.onValues ? { onProgress: options.onValues } : {}),
      resumeAfter: resumed ? cursorOf(row) : undefined,
      census,
      onBatch: (p, cursor) =>
        saveRun(db, tenantId, owner, {
          cursor_table: cursor.table,
          cursor_id: cursor.id,
          reencrypted: base.reencrypted + p.reencrypted,
          encrypted_clear: base.encryptedClear + p.encryptedClear,
          failed: p.failed,
          census: encodeCensus(p.census),
          last_batch_at: now(),
          lease_until: until(),
        }),
    });
    values.reencrypted += base.reencrypted;
    values.encryptedClear += base.encryptedClear;
    if (stopped()) {
      return { outcome: 'stopped', targetVersion: target, started, rewrap: totals, values };
    }
    const counted = {
      reencrypted: values.reencrypted,
      encrypted_clear: values.encryptedClear,
      failed: values.failed,
      census: encodeCensus(values.census),
      census_at: now(),
      cursor_table: null,
      cursor_id: null,
    };
    if (!values.done) {
      // Users' writes raced it, or a process still wrote under an old version: the next run
      // starts the values over from the beginning, with this census.
      await saveRun(db, tenantId, owner, counted);
      return { outcome: 'incomplete', targetVersion: target, started, rewrap: totals, values };
    }
    await appendEvents(
      tenantId,
      [
        {
          type: 'keys.reencrypted',
          tenantId,
          actor: deps.actor,
          target: dataKey(target),
          reason: `values_${values.reencrypted};clear_${values.encryptedClear};subject_keys_${totals.rewrapped}`,
        },
      ],
      { ...counted, state: 'done', finished_at: now() },
    );
    return { outcome: 'done', targetVersion: target, started, rewrap: totals, values };
  }

  /**
   * Runs (or resumes) the tenant's re-encryption to its active version until done, stopped or
   * out of passes; `busy` when another process holds the tenant's lease.
   */
  async function runTenant(
    tenantId: string,
    options: TenantRunOptions = {},
  ): Promise<TenantRunResult> {
    if (!(await claimLease(db, tenantId, owner, now(), until()))) {
      const row = await readReencryption(db, tenantId);
      return { outcome: 'busy', holder: row?.lease_owner ?? null, until: row?.lease_until ?? null };
    }
    try {
      return await runClaimed(tenantId, options);
    } catch (err) {
      if (err instanceof LeaseLost) {
        const row = await readReencryption(db, tenantId);
        return {
          outcome: 'busy',
          holder: row?.lease_owner ?? null,
          until: row?.lease_until ?? null,
        };
      }
      throw err;
    } finally {
      await releaseLease(db, tenantId, owner);
    }
  }

  return { runTenant };
}

export type TenantReencryption = ReturnType<typeof createTenantReencryption>;
