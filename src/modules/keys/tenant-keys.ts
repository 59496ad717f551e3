import { createSecretKey } from 'node:crypto';
import type { KeyObject } from 'node:crypto';
import { generateDataKey, isCryptoError, wrapAd } from '../../core/crypto/index.ts';
import type { KeyCache, KeyProvider, RandomSource } from '../../core/crypto/index.ts';
import type { Clock } from '../../clock.ts';
import { AppError } from '../../errors.ts';
import type { KeyStore, TenantKeyTable } from './store.ts';

/**
 * Tenant keys: created on first use, wrapped by the root key provider, unwrapped once per
 * process into the LRU cache. Shared by the key service and the rotation job.
 */

export type Purpose = TenantKeyTable['purpose'];

/** The root key: a provider and the id of its key that wraps tenant keys. */
export interface RootKey {
  provider: KeyProvider;
  keyId: string;
}

export interface TenantKeyDeps {
  store: KeyStore;
  root: RootKey;
  clock: Clock;
  cache: KeyCache;
  random?: RandomSource | undefined;
}

/** Key id written into field envelopes for a tenant data key. */
export const tenantKeyId = (tenantId: string): string => `tenant:${tenantId}`;

/** Cache id, and the wrapping key id bound into a subject key's wrap AD. */
export const tenantCacheId = (tenantId: string, purpose: Purpose, version: number): string =>
  `${purpose === 'data' ? 'tenant' : 'index'}:${tenantId}@${version}`;

const adFor = (tenantId: string, purpose: Purpose, version: number): Buffer =>
  purpose === 'data'
    ? wrapAd.tenantKey(tenantId, version)
    : wrapAd.tenantIndexKey(tenantId, version);

/** A key of the key store that does not exist (unknown tenant version, no subject key). */
export const keyNotFound = (what: string): AppError =>
  new AppError('not_found', 'keys.not_found', `${what} not found`, {
    detail: `The ${what} does not exist.`,
  });

/** The newest version in `state` 'active' for this purpose, if any. */
export async function activeVersion(
  db: KeyStore['db'],
  tenantId: string,
  purpose: Purpose,
): Promise<number | undefined> {
  const row = await db
    .selectFrom('tenant_keys')
    .select('version')
    .where('tenant_id', '=', tenantId)
    .where('purpose', '=', purpose)
    .where('state', '=', 'active')
    .orderBy('version', 'desc')
    .limit(1)
    .executeTakeFirst();
  return row?.version;
}

export async function minDecryptVersion(db: KeyStore['db'], tenantId: string): Promise<number> {
  const row = await db
    .selectFrom('key_settings')
    .select('min_decrypt_version')
    .where('tenant_id', '=', tenantId)
    .executeTakeFirst();
  return row?.min_decrypt_version ?? 1;
}

/** Generates, wraps and inserts `version`; a concurrent insert of the same version wins. */
export async function insertTenantKey(
  deps: TenantKeyDeps,
  tenantId: string,
  purpose: Purpose,
  version: number,
  db: KeyStore['db'] = deps.store.db,
): Promise<boolean> {
  const bytes = generateDataKey(deps.random);
  let wrapped: Uint8Array;
  try {
    wrapped = await deps.root.provider.wrap(
      deps.root.keyId,
      bytes,
      adFor(tenantId, purpose, version),
    );
  } finally {
    bytes.fill(0);
  }
  const result = await db
    .insertInto('tenant_keys')
    .values({
      tenant_id: tenantId,
      purpose,
      version,
      provider_id: deps.root.provider.id,
      provider_key_id: deps.root.keyId,
      wrapped: Buffer.from(wrapped).toString('base64'),
      state: 'active',
      created_at: deps.clock.now().toISOString(),
      deactivated_at: null,
      retired_at: null,
    })
    .onConflict((oc) => oc.columns(['tenant_id', 'purpose', 'version']).doNothing())
    .executeTakeFirst();
  return Number(result.numInsertedOrUpdatedRows ?? 0) > 0;
}

/** The active version, creating version 1 on first use. */
export async function ensureActiveVersion(
  deps: TenantKeyDeps,
  tenantId: string,
  purpose: Purpose,
): Promise<number> {
  const existing = await activeVersion(deps.store.db, tenantId, purpose);
  if (existing !== undefined) return existing;
  await insertTenantKey(deps, tenantId, purpose, 1);
  const created = await activeVersion(deps.store.db, tenantId, purpose);
  if (created === undefined) throw new TypeError(`no active ${purpose} key after creating one`);
  return created;
}

/**
 * Unwraps (or takes from the cache) one tenant key version. Throws `keys.not_found`,
 * `keys.version_retired`, `keys.provider_unavailable` (wrapped by another provider) or
 * `keys.root_key_mismatch` (the root key does not authenticate it).
 */
export function loadTenantKey(
  deps: TenantKeyDeps,
  tenantId: string,
  purpose: Purpose,
  version: number,
): Promise<KeyObject> {
  return deps.cache.getOrLoad(tenantCacheId(tenantId, purpose, version), async () => {
    const row = await deps.store.db
      .selectFrom('tenant_keys')
      .select(['wrapped', 'state', 'provider_id', 'provider_key_id'])
      .where('tenant_id', '=', tenantId)
      .where('purpose', '=', purpose)
      .where('version', '=', version)
      .executeTakeFirst();
    if (row === undefined) throw keyNotFound(`${purpose} key version ${version}`);
    if (row.state === 'retired' || row.wrapped === null) throw versionRetired(version);
    return unwrapTenantKey(deps.root, { tenantId, purpose, version, ...row, wrapped: row.wrapped });
  });
}

export const versionRetired = (version: number): AppError =>
  new AppError('internal', 'keys.version_retired', `tenant key version ${version} is retired`, {
    detail: `Key version ${version} was retired; values under it can no longer be decrypted.`,
  });

/** Unwraps a stored tenant key row with the root key, mapping failures to operator errors. */
export async function unwrapTenantKey(
  root: RootKey,
  row: {
    tenantId: string;
    purpose: Purpose;
    version: number;
    provider_id: string;
    provider_key_id: string;
    wrapped: string;
  },
): Promise<KeyObject> {
  if (row.provider_id !== root.provider.id) {
    throw new AppError(
      'unavailable',
      'keys.provider_unavailable',
      `tenant keys were wrapped by key provider "${row.provider_id}" but the configured provider is "${root.provider.id}"; configure CUSTOS_KEY_PROVIDER to match`,
    );
  }
  let bytes: Uint8Array;
  try {
    bytes = await root.provider.unwrap(
      row.provider_key_id,
      Buffer.from(row.wrapped, 'base64'),
      adFor(row.tenantId, row.purpose, row.version),
    );
  } catch (err) {
    if (isCryptoError(err, 'UNWRAP_FAILED') || isCryptoError(err, 'KEY_NOT_FOUND')) {
      throw new AppError(
        'unavailable',
        'keys.root_key_mismatch',
        `the root key cannot unwrap the stored tenant keys (${root.provider.id}, key "${row.provider_key_id}"): it is not the root key they were created with; restore the original root key`,
        { cause: err },
      );
    }
    throw err;
  }
  try {
    return createSecretKey(bytes);
  } finally {
    bytes.fill(0);
  }
}

/**
 * A wrap/unwrap round trip of a constant through the root key provider: is it reachable and
 * working (for the start-up check and readiness)? Throws `keys.provider_unavailable`.
 */
export async function probeRootKey(root: RootKey, describe: string = root.provider.id) {
  const ad = wrapAd.tenantKey('custos-probe', 0);
  const sample = Buffer.alloc(32, 0x5a);
  try {
    const wrapped = await root.provider.wrap(root.keyId, sample, ad);
    const back = Buffer.from(await root.provider.unwrap(root.keyId, wrapped, ad));
    if (!back.equals(sample)) throw new Error('round trip returned other bytes');
  } catch (err) {
    throw new AppError(
      'unavailable',
      'keys.provider_unavailable',
      `${describe} does not work: ${err instanceof Error ? err.message : String(err)}`,
      { cause: err },
    );
  }
}
