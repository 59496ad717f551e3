import type { Kysely } from 'kysely';
import type { Clock } from '../../clock.ts';
import type { Database } from '../../db/schema.ts';
import { runInTenant } from '../../db/tenant-scope.ts';
import type { KeyService } from '../keys/service.ts';
import { readReencryptions } from './reencrypt-progress.ts';
import type { TenantReencryption, TenantRunResult } from './reencrypt-run.ts';
import { intervalJob } from '../../interval-job.ts';

/**
 * The server's re-encryption job: every `intervalMs` it looks for tenants whose data key was
 * rotated (an older version not yet retired) and whose run to the active version is not done,
 * and runs them one after another, each in that tenant's scope, in throttled batches
 * (`batchSize` rows, then `pauseMs`). A tenant another process holds (its lease) is skipped; a
 * process killed midway is resumed by whichever takes the lease next. The search costs two small
 * queries (the key store's tenant key rows, the runs' rows); nothing when there is no rotation.
 */
export interface ReencryptionWorkerDeps {
  db: Kysely<Database>;
  keys: Pick<KeyService, 'openRotations'>;
  clock: Clock;
  run: TenantReencryption;
  batchSize: number;
  pauseMs: number;
  /**
   * How long after a rotation the job waits before starting: other servers may encrypt with the
   * previous version until they re-read the active one (the key service's 5 s, twice).
   */
  settleMs?: number;
  onResult?: (tenantId: string, result: TenantRunResult) => void;
  onError?: (error: unknown, tenantId?: string) => void;
}

export function createReencryptionWorker(deps: ReencryptionWorkerDeps) {
  const settleMs = deps.settleMs ?? 10_000;
  let stopping = new AbortController();

  /** Tenants with a run to do now, oldest rotation first. */
  async function pendingTenants(): Promise<string[]> {
    const rotations = await deps.keys.openRotations();
    if (rotations.length === 0) return [];
    const runs = await readReencryptions(deps.db);
    const now = deps.clock.now();
    return rotations
      .filter((r) => {
        const run = runs.get(r.tenantId);
        if (run?.state === 'done' && run.target_version === r.activeVersion) return false;
        if (now.getTime() - Date.parse(r.activeSince) < settleMs) return false;
        // Another process's live lease: skip without trying (the claim would refuse anyway).
        return !(
          run?.lease_owner != null &&
          run.lease_until !== null &&
          run.lease_until > now.toISOString()
        );
      })
      .sort((a, b) => a.activeSince.localeCompare(b.activeSince))
      .map((r) => r.tenantId);
  }

  /** Runs every pending tenant once (tests call it directly); a tenant's failure is reported. */
  async function runOnce(
    options: { signal?: AbortSignal } = {},
  ): Promise<Map<string, TenantRunResult>> {
    const signal = options.signal ?? stopping.signal;
    const results = new Map<string, TenantRunResult>();
    for (const tenantId of await pendingTenants()) {
      if (signal.aborted) break;
      try {
        const result = await runInTenant(tenantId, () =>
          deps.run.runTenant(tenantId, {
            batchSize: deps.batchSize,
            pauseMs: deps.pauseMs,
            signal,
            onlyUnfinished: true,
          }),
        );
        results.set(tenantId, result);
        deps.onResult?.(tenantId, result);
      } catch (error) {
        // One tenant's failure (its lease released, its cursor saved) never holds up others.
        deps.onError?.(error, tenantId);
      }
    }
    return results;
  }

  const job = intervalJob(runOnce, (error) => deps.onError?.(error));

  /** Runs `runOnce` every `intervalMs` (never two at once) until `stop`. */
  function start(intervalMs: number): void {
    if (job.isStarted()) return;
    stopping = new AbortController();
    job.start(intervalMs);
  }

  /** Stops the interval, stops a run in progress after its batch, and waits for it. */
  async function stop(): Promise<void> {
    stopping.abort();
    await job.stop();
  }

  return { runOnce, start, stop };
}

export type ReencryptionWorker = ReturnType<typeof createReencryptionWorker>;
