import { createSecretKey } from 'node:crypto';
import type { KeyObject } from 'node:crypto';
import {
  generateDataKey,
  pooledRandomBytes,
  unwrapKey,
  wrapAd,
  wrapKey,
} from '../../core/crypto/index.ts';
import { AppError } from '../../errors.ts';
import { eachRowQuery } from '../../db/database.ts';
import {
  activeVersion,
  ensureActiveVersion,
  keyNotFound,
  loadTenantKey,
  tenantCacheId,
} from './tenant-keys.ts';
import type { TenantKeyDeps } from './tenant-keys.ts';

/**
 * Per data subject (contact) keys, wrapped by the tenant data key (`wrapKey`, AD naming tenant
 * and subject, wrapping key id naming the tenant key version). Destroying one makes every value
 * encrypted under it unrecoverable, from any backup of the data database.
 */

/** SQLite: one new subject key, unless the subject has one (or a tombstone), which wins. */
const INSERT_SUBJECT_KEY_ROW =
  'insert into "subject_keys" ("tenant_id", "subject_id", "tenant_key_version", "wrapped", "created_at", "destroyed_at") ' +
  'values (?, ?, ?, ?, ?, null) on conflict ("tenant_id", "subject_id") do nothing';
/** The same, naming the subject when inserted. */
const INSERT_SUBJECT_KEY = `${INSERT_SUBJECT_KEY_ROW} returning "subject_id"`;

export { SUBJECT_KEY_VERSION, subjectKeyId } from './subject-key-ref.ts';
export const subjectCacheId = (tenantId: string, subjectId: string): string =>
  `subject:${tenantId}/${subjectId}`;

export const keyDestroyed = (): AppError =>
  new AppError('not_found', 'keys.key_destroyed', 'subject key destroyed', {
    detail: "This person's data was erased: its key was destroyed and cannot be recovered.",
  });

async function readRow(deps: TenantKeyDeps, tenantId: string, subjectId: string) {
  return deps.store.db
    .selectFrom('subject_keys')
    .select(['tenant_key_version', 'wrapped', 'destroyed_at'])
    .where('tenant_id', '=', tenantId)
    .where('subject_id', '=', subjectId)
    .executeTakeFirst();
}

async function unwrapRow(
  deps: TenantKeyDeps,
  tenantId: string,
  subjectId: string,
  row: { tenant_key_version: number; wrapped: string },
): Promise<KeyObject> {
  const version = row.tenant_key_version;
  const tenantKey = await loadTenantKey(deps, tenantId, 'data', version);
  const bytes = unwrapKey(
    tenantKey,
    tenantCacheId(tenantId, 'data', version),
    Buffer.from(row.wrapped, 'base64'),
    wrapAd.subjectKey(tenantId, subjectId),
  );
  try {
    return createSecretKey(bytes);
  } finally {
    bytes.fill(0);
  }
}

/**
 * Wraps fresh key bytes under the active tenant version and inserts them (first writer wins).
 * Returns the new key, or undefined when another process inserted (or destroyed) one first.
 */
async function createRow(
  deps: TenantKeyDeps,
  tenantId: string,
  subjectId: string,
): Promise<KeyObject | undefined> {
  for (let attempt = 0; attempt < 3; attempt += 1) {
    const version = await ensureActiveVersion(deps, tenantId, 'data');
    const tenantKey = await loadTenantKey(deps, tenantId, 'data', version);
    const bytes = generateDataKey(deps.random);
    let wrapped: Buffer;
    let key: KeyObject;
    try {
      wrapped = wrapKey(
        tenantKey,
        tenantCacheId(tenantId, 'data', version),
        bytes,
        wrapAd.subjectKey(tenantId, subjectId),
      );
      key = createSecretKey(bytes);
    } finally {
      bytes.fill(0);
    }
    // A rotation between reading the version and inserting would leave a new subject key under
    // a version about to be retired: insert only while the version is still active.
    const outcome = await deps.store.db.transaction().execute(async (trx) => {
      if ((await activeVersion(trx, tenantId, 'data')) !== version) return 'rotated';
      const result = await trx
        .insertInto('subject_keys')
        .values({
          tenant_id: tenantId,
          subject_id: subjectId,
          tenant_key_version: version,
          wrapped: wrapped.toString('base64'),
          created_at: deps.clock.now().toISOString(),
          destroyed_at: null,
        })
        .onConflict((oc) => oc.columns(['tenant_id', 'subject_id']).doNothing())
        .executeTakeFirst();
      return Number(result.numInsertedOrUpdatedRows ?? 0) > 0 ? 'inserted' : 'exists';
    });
    if (outcome === 'inserted') return key;
    if (outcome === 'exists') return undefined;
  }
  throw new AppError('conflict', 'keys.version_in_use', 'tenant key rotated during creation', {
    detail: 'The tenant key was rotated while a key was being created; retry.',
  });
}

/**
 * New keys for many subjects at once (a CSV import): wrapped under the active tenant version and
 * inserted in ONE key-store transaction, instead of one transaction per subject. Subjects that
 * already have a key (or a tombstone) keep it: theirs is loaded as usual. The new keys go into the
 * LRU cache only with `cache` (an import of 100k contacts would only churn it).
 */
export async function createSubjectKeyRows(
  deps: TenantKeyDeps,
  tenantId: string,
  subjectIds: readonly string[],
  options: { cache?: boolean } = {},
): Promise<Map<string, KeyObject>> {
  const ids = [...new Set(subjectIds)];
  const out = new Map<string, KeyObject>();
  if (ids.length === 0) return out;
  for (let attempt = 0; attempt < 3; attempt += 1) {
    const version = await ensureActiveVersion(deps, tenantId, 'data');
    const tenantKey = await loadTenantKey(deps, tenantId, 'data', version);
    const wrappingId = tenantCacheId(tenantId, 'data', version);
    const now = deps.clock.now().toISOString();
    const fresh = new Map<string, KeyObject>();
    const rows = ids.map((subjectId) => {
      // Pooled CSPRNG bytes: randomBytes(32) per key cost as much as wrapping it.
      const bytes = generateDataKey(deps.random ?? pooledRandomBytes);
      try {
        const wrapped = wrapKey(
          tenantKey,
          wrappingId,
          bytes,
          wrapAd.subjectKey(tenantId, subjectId),
        );
        fresh.set(subjectId, createSecretKey(bytes));
        return {
          tenant_id: tenantId,
          subject_id: subjectId,
          tenant_key_version: version,
          wrapped: wrapped.toString('base64'),
          created_at: now,
          destroyed_at: null,
        };
      } finally {
        bytes.fill(0);
      }
    });
    const inserted = await deps.store.db.transaction().execute(async (trx) => {
      // As in createRow: never leave new keys under a version a rotation just deactivated.
      if ((await activeVersion(trx, tenantId, 'data')) !== version) return undefined;
      // One statement per 500 keys: those inserted come back; the others already had a key
      // (or a tombstone), which wins.
      const existing = new Set(ids);
      if (deps.store.dialect === 'sqlite') {
        // One cached single-row statement run per key, in one driver call (eachRowQuery).
        const parameters: unknown[] = [];
        for (const r of rows) {
          parameters.push(r.tenant_id, r.subject_id, r.tenant_key_version, r.wrapped, r.created_at);
        }
        const result = await trx.executeQuery<{ subject_id: string }>(
          eachRowQuery(INSERT_SUBJECT_KEY, 5, parameters),
        );
        for (const row of result.rows) existing.delete(row.subject_id);
        return existing;
      }
      for (let i = 0; i < rows.length; i += 500) {
        const inserted = await trx
          .insertInto('subject_keys')
          .values(rows.slice(i, i + 500))
          .onConflict((oc) => oc.columns(['tenant_id', 'subject_id']).doNothing())
          .returning('subject_id')
          .execute();
        for (const row of inserted) existing.delete(row.subject_id);
      }
      return existing;
    });
    if (inserted === undefined) continue;
    for (const [id, key] of fresh) {
      if (inserted.has(id)) continue;
      out.set(id, key);
      if (options.cache === true) deps.cache.set(subjectCacheId(tenantId, id), key);
    }
    for (const id of inserted) out.set(id, await loadSubjectKey(deps, tenantId, id, false));
    return out;
  }
  throw new AppError('conflict', 'keys.version_in_use', 'tenant key rotated during creation', {
    detail: 'The tenant key was rotated while keys were being created; retry.',
  });
}

/**
 * What new subject keys of a tenant are wrapped under: the active data key version, its key and
 * the wrapping key id bound into each wrap (`wrapKey(key, wrappingId, bytes,
 * wrapAd.subjectKey(tenantId, subjectId))`). For callers that generate and wrap keys themselves
 * (an import's crypto thread) and store them with `storeSubjectKeyRows`.
 */
export interface SubjectKeyWrapping {
  version: number;
  key: KeyObject;
  wrappingId: string;
}

export async function subjectKeyWrapping(
  deps: TenantKeyDeps,
  tenantId: string,
): Promise<SubjectKeyWrapping> {
  const version = await ensureActiveVersion(deps, tenantId, 'data');
  const key = await loadTenantKey(deps, tenantId, 'data', version);
  return { version, key, wrappingId: tenantCacheId(tenantId, 'data', version) };
}

/** A subject key made by the caller: its bytes and their wrap under a `SubjectKeyWrapping`. */
export interface MadeSubjectKey {
  subjectId: string;
  key: Uint8Array;
  /** base64 of `wrapKey(...)` under `wrapping` (see `SubjectKeyWrapping`). */
  wrapped: string;
}

/**
 * Stores subject keys the caller generated and wrapped under `wrapping`, in ONE key-store
 * transaction, as `createSubjectKeyRows` does for keys it makes itself. The subjects must be
 * new (fresh record ids): a subject that already has a key (or a tombstone) is a programming
 * error, and nothing is stored then. When a rotation has deactivated `wrapping.version`
 * meanwhile, the keys are wrapped again under the active version first (from `key`), so no new
 * key is left under a version about to be retired. Not cached: the caller holds the keys.
 */
export async function storeSubjectKeyRows(
  deps: TenantKeyDeps,
  tenantId: string,
  wrapping: SubjectKeyWrapping,
  subjects: readonly MadeSubjectKey[],
): Promise<void> {
  if (subjects.length === 0) return;
  let current = wrapping;
  let wrapped = subjects.map((s) => s.wrapped);
  for (let attempt = 0; attempt < 3; attempt += 1) {
    if (attempt > 0) {
      current = await subjectKeyWrapping(deps, tenantId);
      const { key, wrappingId } = current;
      wrapped = subjects.map((s) =>
        wrapKey(key, wrappingId, s.key, wrapAd.subjectKey(tenantId, s.subjectId)).toString(
          'base64',
        ),
      );
    }
    const version = current.version;
    const now = deps.clock.now().toISOString();
    const stored = await deps.store.db.transaction().execute(async (trx) => {
      if ((await activeVersion(trx, tenantId, 'data')) !== version) return false;
      let inserted = 0;
      if (deps.store.dialect === 'sqlite') {
        const parameters: unknown[] = [];
        subjects.forEach((s, i) =>
          parameters.push(tenantId, s.subjectId, version, wrapped[i], now),
        );
        // Counted, not returned: a row array per key is garbage for nothing here.
        const result = await trx.executeQuery(eachRowQuery(INSERT_SUBJECT_KEY_ROW, 5, parameters));
        inserted = Number(result.numAffectedRows ?? 0);
      } else {
        for (let i = 0; i < subjects.length; i += 500) {
          const rows = subjects.slice(i, i + 500).map((s, j) => ({
            tenant_id: tenantId,
            subject_id: s.subjectId,
            tenant_key_version: version,
            wrapped: wrapped[i + j] as string,
            created_at: now,
            destroyed_at: null,
          }));
          const result = await trx
            .insertInto('subject_keys')
            .values(rows)
            .onConflict((oc) => oc.columns(['tenant_id', 'subject_id']).doNothing())
            .returning('subject_id')
            .execute();
          inserted += result.length;
        }
      }
      // Thrown inside the transaction: a subject that had a key keeps it, nothing is stored.
      if (inserted !== subjects.length) {
        throw new TypeError('storeSubjectKeyRows: a subject already has a key (ids must be new)');
      }
      return true;
    });
    if (stored) return;
  }
  throw new AppError('conflict', 'keys.version_in_use', 'tenant key rotated during creation', {
    detail: 'The tenant key was rotated while keys were being created; retry.',
  });
}

/**
 * The subject's key: cached, else unwrapped, else (with `create`) generated. Throws
 * `keys.key_destroyed` after `destroySubjectKey`, `keys.not_found` when absent and not created.
 */
export function loadSubjectKey(
  deps: TenantKeyDeps,
  tenantId: string,
  subjectId: string,
  create: boolean,
): Promise<KeyObject> {
  return deps.cache.getOrLoad(subjectCacheId(tenantId, subjectId), async () => {
    let row = await readRow(deps, tenantId, subjectId);
    if (row === undefined) {
      if (!create) throw keyNotFound('subject key');
      const created = await createRow(deps, tenantId, subjectId);
      if (created !== undefined) return created;
      row = await readRow(deps, tenantId, subjectId);
    }
    if (row === undefined) throw keyNotFound('subject key');
    if (row.destroyed_at !== null || row.wrapped === null) throw keyDestroyed();
    return unwrapRow(deps, tenantId, subjectId, { ...row, wrapped: row.wrapped });
  });
}

/**
 * Crypto-shredding: overwrites the wrapped key with NULL (a tombstone, so the subject's key is
 * never re-created), forgets the cached key, and lets the store purge old page images.
 * Returns whether a key existed.
 */
export async function destroySubjectKeyRow(
  deps: TenantKeyDeps,
  tenantId: string,
  subjectId: string,
): Promise<{ destroyed: boolean }> {
  const now = deps.clock.now().toISOString();
  const destroyed = await deps.store.db.transaction().execute(async (trx) => {
    const result = await trx
      .updateTable('subject_keys')
      .set({ wrapped: null, destroyed_at: now })
      .where('tenant_id', '=', tenantId)
      .where('subject_id', '=', subjectId)
      .where('destroyed_at', 'is', null)
      .executeTakeFirst();
    if (Number(result.numUpdatedRows) > 0) return true;
    // No key yet (or already destroyed): leave a tombstone so none is created later.
    await trx
      .insertInto('subject_keys')
      .values({
        tenant_id: tenantId,
        subject_id: subjectId,
        tenant_key_version: 0,
        wrapped: null,
        created_at: now,
        destroyed_at: now,
      })
      .onConflict((oc) => oc.columns(['tenant_id', 'subject_id']).doNothing())
      .execute();
    return false;
  });
  deps.cache.delete(subjectCacheId(tenantId, subjectId));
  await deps.store.afterShred();
  return { destroyed };
}

/**
 * Several subjects' keys in one query (a list page, an export): live keys by subject id,
 * `'destroyed'` for shredded subjects; subjects without a key are left out. Each id goes
 * through the cache's single-flight load, so a key destroyed meanwhile is not cached.
 */
export async function loadSubjectKeys(
  deps: TenantKeyDeps,
  tenantId: string,
  subjectIds: readonly string[],
): Promise<Map<string, KeyObject | 'destroyed'>> {
  const ids = [...new Set(subjectIds)];
  let start!: () => void;
  const started = new Promise<void>((resolve) => (start = resolve));
  const rows = started.then(async () => {
    const found = new Map<string, { tenant_key_version: number; wrapped: string | null }>();
    // Bounded IN lists: SQLite allows 32766 parameters, PostgreSQL 65535.
    for (let i = 0; i < ids.length; i += 500) {
      const chunk = await deps.store.db
        .selectFrom('subject_keys')
        .select(['subject_id', 'tenant_key_version', 'wrapped'])
        .where('tenant_id', '=', tenantId)
        .where('subject_id', 'in', ids.slice(i, i + 500))
        .execute();
      for (const row of chunk) found.set(row.subject_id, row);
    }
    return found;
  });
  let needed = false;
  const loads = ids.map((id) =>
    deps.cache.getOrLoad(subjectCacheId(tenantId, id), async () => {
      needed = true;
      const row = (await rows).get(id);
      if (row === undefined) throw keyNotFound('subject key');
      if (row.wrapped === null) throw keyDestroyed();
      return unwrapRow(deps, tenantId, id, { ...row, wrapped: row.wrapped });
    }),
  );
  // Loaders run synchronously up to their first await: all are registered now. No query when
  // every key was cached.
  if (needed) start();
  const settled = await Promise.allSettled(loads);
  const out = new Map<string, KeyObject | 'destroyed'>();
  settled.forEach((result, i) => {
    const id = ids[i]!;
    if (result.status === 'fulfilled') out.set(id, result.value);
    else if ((result.reason as { code?: string }).code === 'keys.key_destroyed') {
      out.set(id, 'destroyed');
    } else if ((result.reason as { code?: string }).code !== 'keys.not_found') {
      throw result.reason;
    }
  });
  return out;
}
