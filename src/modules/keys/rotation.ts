import { setTimeout as sleep } from 'node:timers/promises';
import { unwrapKey, wrapAd, wrapKey } from '../../core/crypto/index.ts';
import { AppError } from '../../errors.ts';
import {
  activeVersion,
  insertTenantKey,
  keyNotFound,
  loadTenantKey,
  tenantCacheId,
} from './tenant-keys.ts';
import type { TenantKeyDeps } from './tenant-keys.ts';

/**
 * Rotation of a tenant data key. `rotateTenantKey` makes a new version active at once; the old
 * ones become decrypt-only. Subject keys wrapped by an old version are then re-wrapped in
 * batches (`rewrapSubjectKeys`): progress is "the rows still under an old version", so a killed
 * job simply continues. Field values encrypted directly under the tenant key are the record
 * layer's to re-encrypt; `retireVersion` asks it (`protectedValues`) before destroying a version.
 */

export interface RewrapOptions {
  /** Keys re-wrapped per transaction. Default 500. */
  batchSize?: number;
  /** Pause between batches, so the job yields to live traffic. Default 50 ms. */
  pauseMs?: number;
  /** Stops after the current batch (what a shutdown or a test's "kill" does). */
  signal?: AbortSignal;
  onProgress?: (progress: RewrapProgress) => void;
}

export interface RewrapProgress {
  tenantId: string;
  /** The version every subject key is being moved to. */
  targetVersion: number;
  /** Keys re-wrapped by this run. */
  rewrapped: number;
  /** Keys still under older versions. */
  remaining: number;
  done: boolean;
}

export async function rotateTenantKeyVersion(
  deps: TenantKeyDeps,
  tenantId: string,
): Promise<{ version: number; previous: number | undefined }> {
  const latest = await deps.store.db
    .selectFrom('tenant_keys')
    .select((eb) => eb.fn.max('version').as('version'))
    .where('tenant_id', '=', tenantId)
    .where('purpose', '=', 'data')
    .executeTakeFirst();
  const previous = latest?.version == null ? undefined : Number(latest.version);
  const version = (previous ?? 0) + 1;
  const now = deps.clock.now().toISOString();
  await deps.store.db.transaction().execute(async (trx) => {
    if (!(await insertTenantKey(deps, tenantId, 'data', version, trx))) {
      throw new AppError('conflict', 'keys.version_in_use', 'concurrent rotation', {
        detail: 'Another rotation of this tenant key is in progress; retry.',
      });
    }
    await trx
      .updateTable('tenant_keys')
      .set({ state: 'decrypt-only', deactivated_at: now })
      .where('tenant_id', '=', tenantId)
      .where('purpose', '=', 'data')
      .where('state', '=', 'active')
      .where('version', '<', version)
      .execute();
  });
  return { version, previous };
}

async function countUnder(deps: TenantKeyDeps, tenantId: string, below: number): Promise<number> {
  const row = await deps.store.db
    .selectFrom('subject_keys')
    .select((eb) => eb.fn.countAll().as('n'))
    .where('tenant_id', '=', tenantId)
    .where('wrapped', 'is not', null)
    .where('tenant_key_version', '<', below)
    .executeTakeFirst();
  return Number(row?.n ?? 0);
}

export async function rewrapSubjectKeyBatches(
  deps: TenantKeyDeps,
  tenantId: string,
  options: RewrapOptions = {},
): Promise<RewrapProgress> {
  const batchSize = options.batchSize ?? 500;
  const pauseMs = options.pauseMs ?? 50;
  if (!Number.isInteger(batchSize) || batchSize < 1) throw new RangeError('batchSize >= 1');
  const target = await activeVersion(deps.store.db, tenantId, 'data');
  if (target === undefined) throw keyNotFound('tenant data key');
  const progress: RewrapProgress = {
    tenantId,
    targetVersion: target,
    rewrapped: 0,
    remaining: await countUnder(deps, tenantId, target),
    done: false,
  };
  const targetKey = await loadTenantKey(deps, tenantId, 'data', target);
  const targetId = tenantCacheId(tenantId, 'data', target);
  // A function, so the compiler does not narrow `aborted` across the awaits below.
  const stopped = (): boolean => options.signal?.aborted === true;
  while (progress.remaining > 0 && !stopped()) {
    const rows = await deps.store.db
      .selectFrom('subject_keys')
      .select(['subject_id', 'tenant_key_version', 'wrapped'])
      .where('tenant_id', '=', tenantId)
      .where('wrapped', 'is not', null)
      .where('tenant_key_version', '<', target)
      .orderBy('subject_id')
      .limit(batchSize)
      .execute();
    if (rows.length === 0) break;
    const updates: { subjectId: string; from: number; wrapped: string }[] = [];
    for (const row of rows) {
      if (row.wrapped === null) continue;
      const old = await loadTenantKey(deps, tenantId, 'data', row.tenant_key_version);
      const ad = wrapAd.subjectKey(tenantId, row.subject_id);
      const bytes = unwrapKey(
        old,
        tenantCacheId(tenantId, 'data', row.tenant_key_version),
        Buffer.from(row.wrapped, 'base64'),
        ad,
      );
      try {
        const wrapped = wrapKey(targetKey, targetId, bytes, ad).toString('base64');
        updates.push({ subjectId: row.subject_id, from: row.tenant_key_version, wrapped });
      } finally {
        bytes.fill(0);
      }
    }
    await deps.store.db.transaction().execute(async (trx) => {
      for (const u of updates) {
        // Guarded by the old version and a live key: a key destroyed meanwhile stays destroyed.
        await trx
          .updateTable('subject_keys')
          .set({ wrapped: u.wrapped, tenant_key_version: target })
          .where('tenant_id', '=', tenantId)
          .where('subject_id', '=', u.subjectId)
          .where('tenant_key_version', '=', u.from)
          .where('wrapped', 'is not', null)
          .execute();
      }
    });
    progress.rewrapped += updates.length;
    progress.remaining = await countUnder(deps, tenantId, target);
    options.onProgress?.({ ...progress });
    if (progress.remaining > 0 && pauseMs > 0 && !stopped()) {
      await sleep(pauseMs, undefined, { signal: options.signal }).catch(() => undefined);
    }
  }
  progress.remaining = await countUnder(deps, tenantId, target);
  progress.done = progress.remaining === 0;
  return progress;
}

export const versionInUse = (message: string, detail: string): AppError =>
  new AppError('conflict', 'keys.version_in_use', message, { detail });

/**
 * Retires a decrypt-only version: refused while it is active, was deactivated less than
 * `settleMs` ago (other processes may still write with it), or still protects subject keys or
 * (per `protectedValues`) field values. Retiring destroys the wrapped key and raises the
 * minimum decryption version to the oldest version left.
 */
export async function retireTenantKeyVersion(
  deps: TenantKeyDeps & {
    settleMs: number;
    protectedValues: ((tenantId: string, version: number) => Promise<number>) | undefined;
  },
  tenantId: string,
  version: number,
): Promise<{ minDecryptVersion: number }> {
  const row = await deps.store.db
    .selectFrom('tenant_keys')
    .select(['state', 'deactivated_at'])
    .where('tenant_id', '=', tenantId)
    .where('purpose', '=', 'data')
    .where('version', '=', version)
    .executeTakeFirst();
  if (row === undefined) throw keyNotFound(`data key version ${version}`);
  if (row.state === 'active') {
    throw versionInUse('active version', `Version ${version} is active; rotate first.`);
  }
  const since = row.deactivated_at === null ? 0 : Date.parse(row.deactivated_at);
  if (row.state === 'decrypt-only' && deps.clock.now().getTime() - since < deps.settleMs) {
    throw versionInUse(
      'version deactivated moments ago',
      `Version ${version} was rotated out less than ${Math.ceil(deps.settleMs / 1000)} s ago; other servers may still be writing with it.`,
    );
  }
  if (deps.protectedValues === undefined) {
    // Without a way to count the values a version seals, retiring it could destroy live data.
    throw versionInUse(
      'no protected-value counter',
      'This process cannot count the values a key version protects; retire it with "custos keys retire".',
    );
  }
  const values = await deps.protectedValues(tenantId, version);
  if (values > 0) {
    throw versionInUse(
      'version protects values',
      `Version ${version} still encrypts ${values} values; let re-encryption finish first.`,
    );
  }
  const now = deps.clock.now().toISOString();
  const min = await deps.store.db.transaction().execute(async (trx) => {
    const protectedKeys = await trx
      .selectFrom('subject_keys')
      .select((eb) => eb.fn.countAll().as('n'))
      .where('tenant_id', '=', tenantId)
      .where('tenant_key_version', '=', version)
      .where('wrapped', 'is not', null)
      .executeTakeFirst();
    const n = Number(protectedKeys?.n ?? 0);
    if (n > 0) {
      throw versionInUse(
        'version protects subject keys',
        `Version ${version} still wraps ${n} subject keys; run "custos keys rotate" to re-wrap them.`,
      );
    }
    await trx
      .updateTable('tenant_keys')
      .set({ state: 'retired', wrapped: null, retired_at: now })
      .where('tenant_id', '=', tenantId)
      .where('purpose', '=', 'data')
      .where('version', '=', version)
      .execute();
    const oldest = await trx
      .selectFrom('tenant_keys')
      .select((eb) => eb.fn.min('version').as('v'))
      .where('tenant_id', '=', tenantId)
      .where('purpose', '=', 'data')
      .where('state', '!=', 'retired')
      .executeTakeFirst();
    const minVersion = Number(oldest?.v ?? version + 1);
    await trx
      .insertInto('key_settings')
      .values({ tenant_id: tenantId, min_decrypt_version: minVersion })
      .onConflict((oc) => oc.column('tenant_id').doUpdateSet({ min_decrypt_version: minVersion }))
      .execute();
    return minVersion;
  });
  deps.cache.delete(tenantCacheId(tenantId, 'data', version));
  await deps.store.afterShred();
  return { minDecryptVersion: min };
}
