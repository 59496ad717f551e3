import type { KeyObject } from 'node:crypto';
import { createKeyCache } from '../../core/crypto/index.ts';
import type { FieldKey, FieldKeyRef, RandomSource } from '../../core/crypto/index.ts';
import type { Clock } from '../../clock.ts';
import {
  retireTenantKeyVersion,
  rewrapSubjectKeyBatches,
  rotateTenantKeyVersion,
} from './rotation.ts';
import type { RewrapOptions, RewrapProgress } from './rotation.ts';
import { readKeyStatus, readOpenRotations } from './status.ts';
import type { OpenRotation, TenantKeyStatus } from './status.ts';
import type { KeyStore } from './store.ts';
import {
  SUBJECT_KEY_VERSION,
  createSubjectKeyRows,
  destroySubjectKeyRow,
  loadSubjectKey,
  loadSubjectKeys,
  storeSubjectKeyRows,
  subjectCacheId,
  subjectKeyId,
  subjectKeyWrapping,
} from './subject-keys.ts';
import type { MadeSubjectKey, SubjectKeyWrapping } from './subject-keys.ts';
import {
  ensureActiveVersion,
  keyNotFound,
  loadTenantKey,
  minDecryptVersion,
  probeRootKey,
  tenantKeyId,
  versionRetired,
} from './tenant-keys.ts';
import type { RootKey, TenantKeyDeps } from './tenant-keys.ts';

/**
 * What the record layer needs from key management. Every key comes back as a `FieldKey`
 * (`{ key, keyId, keyVersion }`), ready for `encryptField`; `keyFor` resolves the reference
 * `parseEnvelope` reads from a stored value. Unwrapped keys live only in `KeyObject`s in a
 * bounded LRU cache.
 */
export interface KeyService {
  /** The active data key (version 1 is created on first use). */
  tenantDataKey(tenantId: string): Promise<FieldKey>;
  /** A data key version for decryption; `keys.version_retired` below the minimum version. */
  tenantDataKeyVersion(tenantId: string, version: number): Promise<FieldKey>;
  /** The blind-index root key (derive per field with `deriveBlindIndexKey`); never rotated. */
  tenantIndexKey(tenantId: string): Promise<KeyObject>;
  /** The subject's key; `keys.key_destroyed` once shredded, `keys.not_found` without `create`. */
  subjectKey(tenantId: string, subjectId: string, options: { create: boolean }): Promise<FieldKey>;
  /**
   * Keys for many subjects at once, created where missing in one key-store transaction (a CSV
   * import's batch). Throws `keys.key_destroyed` if one of them was erased.
   */
  createSubjectKeys(
    tenantId: string,
    subjectIds: readonly string[],
    options?: { cache?: boolean },
  ): Promise<Map<string, FieldKey>>;
  /**
   * What new subject keys are wrapped under now (the active data key version), for a caller that
   * generates and wraps them itself, off the event loop (a CSV import's crypto thread).
   */
  subjectKeyWrapping(tenantId: string): Promise<SubjectKeyWrapping>;
  /**
   * Stores subject keys made by the caller (see `subjectKeyWrapping`) in one key-store
   * transaction; re-wraps them if a rotation happened meanwhile. The subjects must be new.
   */
  storeSubjectKeys(
    tenantId: string,
    wrapping: SubjectKeyWrapping,
    subjects: readonly MadeSubjectKey[],
  ): Promise<void>;
  /**
   * Several subjects' keys with one query: live keys, `'destroyed'` for shredded subjects,
   * nothing for subjects without a key. For list pages and exports.
   */
  subjectKeys(
    tenantId: string,
    subjectIds: readonly string[],
  ): Promise<Map<string, FieldKey | 'destroyed'>>;
  /** The key for an envelope reference (`tenant:<id>` or `subject:<id>`) of this tenant. */
  keyFor(tenantId: string, ref: FieldKeyRef): Promise<KeyObject>;
  /**
   * The subject's key if this process holds it unwrapped right now, else `undefined` (then ask
   * `keyFor` or `subjectKeys`): what those would answer from the cache, without I/O or a promise,
   * for the read path. Never loads or creates a key; `destroySubjectKey` removes it at once.
   */
  cachedSubjectKey(tenantId: string, subjectId: string): KeyObject | undefined;
  /** Crypto-shredding of one subject: the wrapped key is overwritten and the cache forgets it. */
  destroySubjectKey(tenantId: string, subjectId: string): Promise<{ destroyed: boolean }>;
  /** A new active data key version; older versions become decrypt-only. */
  rotateTenantKey(tenantId: string): Promise<{ version: number; previous: number | undefined }>;
  /** Re-wraps subject keys still under older versions, in throttled, resumable batches. */
  rewrapSubjectKeys(tenantId: string, options?: RewrapOptions): Promise<RewrapProgress>;
  status(tenantId?: string): Promise<TenantKeyStatus[]>;
  /** Tenants rotated whose older data key versions are not all retired (for the re-encryption job). */
  openRotations(): Promise<OpenRotation[]>;
  /** Destroys a decrypt-only version nothing depends on; `keys.version_in_use` otherwise. */
  retireVersion(tenantId: string, version: number): Promise<{ minDecryptVersion: number }>;
  /** Readiness: the key store answers and the root key provider round-trips a test value. */
  ping(): Promise<void>;
  /** Releases the store and the provider (the service is unusable afterwards). */
  close(): Promise<void>;
}

export interface KeyServiceDeps {
  store: KeyStore;
  root: RootKey;
  clock: Clock;
  /** Most unwrapped keys kept in memory (tenant and subject keys together). */
  cacheSize: number;
  random?: RandomSource;
  /**
   * How long a process trusts its idea of the active version before re-reading it; also the
   * wait before a rotated-out version may be retired. Default 5 s.
   */
  activeVersionTtlMs?: number;
  /** Values (not subject keys) still encrypted under a tenant key version: the record layer. */
  protectedValues?: (tenantId: string, version: number) => Promise<number>;
  /** Called by `close` after the store closes (e.g. to close a PKCS#11 session). */
  onClose?: () => void | Promise<void>;
}

/**
 * @example
 * ```ts
 * const keys = createKeyService({ store, root: { provider, keyId: 'root' }, clock, cacheSize: 10_000 });
 * const { key, keyId, keyVersion } = await keys.subjectKey(tenantId, contactId, { create: true });
 * const stored = encryptField(key, { keyId, keyVersion }, ad, email);
 * const plain = decryptFieldText({ key: await keys.keyFor(tenantId, parseEnvelope(stored)), keyId, keyVersion }, ad, stored);
 * ```
 */
export function createKeyService(deps: KeyServiceDeps): KeyService {
  const ttl = deps.activeVersionTtlMs ?? 5000;
  const cache = createKeyCache({ maxEntries: deps.cacheSize });
  const inner: TenantKeyDeps = {
    store: deps.store,
    root: deps.root,
    clock: deps.clock,
    cache,
    random: deps.random,
  };
  // Active version per tenant, re-read after `ttl`, so a rotation elsewhere is seen quickly.
  const active = new Map<string, { version: number; until: number }>();

  async function currentVersion(tenantId: string): Promise<number> {
    const now = deps.clock.now().getTime();
    const known = active.get(tenantId);
    if (known !== undefined && known.until > now) return known.version;
    const version = await ensureActiveVersion(inner, tenantId, 'data');
    if (active.size >= deps.cacheSize) active.clear();
    active.set(tenantId, { version, until: now + ttl });
    return version;
  }

  // The minimum decryption version, re-read after `ttl` like the active version: a decrypt of a
  // cached key then costs no query, and a retirement elsewhere is honoured within `ttl`.
  const minimum = new Map<string, { version: number; until: number }>();

  async function minVersion(tenantId: string): Promise<number> {
    const now = deps.clock.now().getTime();
    const known = minimum.get(tenantId);
    if (known !== undefined && known.until > now) return known.version;
    const version = await minDecryptVersion(deps.store.db, tenantId);
    if (minimum.size >= deps.cacheSize) minimum.clear();
    minimum.set(tenantId, { version, until: now + ttl });
    return version;
  }

  async function dataKeyVersion(tenantId: string, version: number): Promise<FieldKey> {
    if (!Number.isInteger(version) || version < 1) throw keyNotFound(`data key version ${version}`);
    if (version < (await minVersion(tenantId))) throw versionRetired(version);
    const key = await loadTenantKey(inner, tenantId, 'data', version);
    return { key, keyId: tenantKeyId(tenantId), keyVersion: version };
  }

  const service: KeyService = {
    async tenantDataKey(tenantId) {
      const version = await currentVersion(tenantId);
      const key = await loadTenantKey(inner, tenantId, 'data', version);
      return { key, keyId: tenantKeyId(tenantId), keyVersion: version };
    },
    tenantDataKeyVersion: dataKeyVersion,
    async tenantIndexKey(tenantId) {
      const version = await ensureActiveVersion(inner, tenantId, 'index');
      return loadTenantKey(inner, tenantId, 'index', version);
    },
    async subjectKey(tenantId, subjectId, options) {
      const key = await loadSubjectKey(inner, tenantId, subjectId, options.create);
      return { key, keyId: subjectKeyId(subjectId), keyVersion: SUBJECT_KEY_VERSION };
    },
    async createSubjectKeys(tenantId, subjectIds, options) {
      const created = await createSubjectKeyRows(inner, tenantId, subjectIds, options);
      const out = new Map<string, FieldKey>();
      for (const [id, key] of created) {
        out.set(id, { key, keyId: subjectKeyId(id), keyVersion: SUBJECT_KEY_VERSION });
      }
      return out;
    },
    subjectKeyWrapping: (tenantId) => subjectKeyWrapping(inner, tenantId),
    storeSubjectKeys: (tenantId, wrapping, subjects) =>
      storeSubjectKeyRows(inner, tenantId, wrapping, subjects),
    async subjectKeys(tenantId, subjectIds) {
      const loaded = await loadSubjectKeys(inner, tenantId, subjectIds);
      const out = new Map<string, FieldKey | 'destroyed'>();
      for (const [id, key] of loaded) {
        out.set(
          id,
          key === 'destroyed'
            ? key
            : { key, keyId: subjectKeyId(id), keyVersion: SUBJECT_KEY_VERSION },
        );
      }
      return out;
    },
    async keyFor(tenantId, ref) {
      if (ref.keyId === tenantKeyId(tenantId)) {
        return (await dataKeyVersion(tenantId, ref.keyVersion)).key;
      }
      if (ref.keyId.startsWith('subject:') && ref.keyVersion === SUBJECT_KEY_VERSION) {
        const subjectId = ref.keyId.slice('subject:'.length);
        return loadSubjectKey(inner, tenantId, subjectId, false);
      }
      // Another tenant's key id is refused here, before any lookup.
      throw keyNotFound(`key ${ref.keyId} version ${ref.keyVersion}`);
    },
    cachedSubjectKey: (tenantId, subjectId) => cache.get(subjectCacheId(tenantId, subjectId)),
    destroySubjectKey: (tenantId, subjectId) => destroySubjectKeyRow(inner, tenantId, subjectId),
    async rotateTenantKey(tenantId) {
      const result = await rotateTenantKeyVersion(inner, tenantId);
      active.delete(tenantId);
      return result;
    },
    async rewrapSubjectKeys(tenantId, options) {
      active.delete(tenantId);
      return rewrapSubjectKeyBatches(inner, tenantId, options);
    },
    status: (tenantId) => readKeyStatus(deps.store, tenantId),
    openRotations: () => readOpenRotations(deps.store),
    async retireVersion(tenantId, version) {
      const result = await retireTenantKeyVersion(
        { ...inner, settleMs: 2 * ttl, protectedValues: deps.protectedValues },
        tenantId,
        version,
      );
      minimum.delete(tenantId);
      return result;
    },
    async ping() {
      await deps.store.ping();
      await probeRootKey(deps.root);
    },
    async close() {
      cache.clear();
      await deps.store.close();
      await deps.onClose?.();
    },
  };
  return service;
}
