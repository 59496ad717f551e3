import type { KeyObject } from 'node:crypto';
import type { FieldKeyRef, FieldKeyResolver } from './aead.ts';

/**
 * Bounded LRU cache of unwrapped keys, so a hot tenant's key is unwrapped once rather than per
 * request. `delete` is part of crypto-shredding: once a subject's wrapped key is destroyed in
 * storage, deleting it here stops any further use in this process (a load in flight at that
 * moment is not inserted). JavaScript cannot zero a `KeyObject`; dropping the last reference
 * lets OpenSSL free it at the next garbage collection.
 */
export interface KeyCache {
  /** The key, marking it most recently used, or `undefined`. */
  get(id: string): KeyObject | undefined;
  /** Inserts or replaces a key, evicting the least recently used entry beyond `maxEntries`. */
  set(id: string, key: KeyObject): void;
  /** Cached key, or runs `load` once for concurrent callers and caches its result. */
  getOrLoad(id: string, load: () => Promise<KeyObject>): Promise<KeyObject>;
  /** Forgets a key (and any load in flight for it). Returns whether it was cached. */
  delete(id: string): boolean;
  clear(): void;
  /** A `decryptField` resolver over this cache (ids from `keyRefId`). */
  resolver(): FieldKeyResolver;
  readonly size: number;
  readonly maxEntries: number;
}

/**
 * Cache id of a key reference: `<keyId>@<keyVersion>` (the version is an integer, so the last
 * `@` splits it unambiguously).
 *
 * @example
 * ```ts
 * keyRefId({ keyId: 'tenant:42', keyVersion: 3 }) // 'tenant:42@3'
 * ```
 */
export function keyRefId(ref: FieldKeyRef): string {
  return `${ref.keyId}@${ref.keyVersion}`;
}

/**
 * Creates an LRU key cache holding at most `maxEntries` keys.
 *
 * @example
 * ```ts
 * const keys = createKeyCache({ maxEntries: 1000 });
 * const tenantKey = await keys.getOrLoad(keyRefId(ref), () => unwrapTenantKey(ref));
 * const email = decryptFieldText(keys.resolver(), ad, row.email);
 * ```
 */
export function createKeyCache(options: { maxEntries: number }): KeyCache {
  const { maxEntries } = options;
  if (!Number.isInteger(maxEntries) || maxEntries < 1) {
    throw new RangeError('maxEntries must be a positive integer');
  }
  // A Map iterates in insertion order: re-inserting a key on use keeps the least recently used
  // first. Re-inserting on every hit showed in profiles of reads (a Map delete and insert per
  // request), so a hit re-inserts only a key that has fallen out of the newest half of the
  // cache: `stamp` counts insertions, and a key stamped within the last `maxEntries / 2` is at
  // least that far from eviction. Eviction order is LRU up to that slack.
  const entries = new Map<string, { key: KeyObject; stamp: number }>();
  const slack = Math.max(1, maxEntries >> 1);
  let stamp = 0;
  const loading = new Map<string, Promise<KeyObject>>();

  const cache: KeyCache = {
    get(id) {
      const entry = entries.get(id);
      if (entry === undefined) return undefined;
      if (stamp - entry.stamp >= slack) {
        entries.delete(id);
        entry.stamp = ++stamp;
        entries.set(id, entry);
      }
      return entry.key;
    },
    set(id, key) {
      entries.delete(id);
      entries.set(id, { key, stamp: ++stamp });
      while (entries.size > maxEntries) {
        const oldest = entries.keys().next();
        if (oldest.done === true) break;
        entries.delete(oldest.value);
      }
    },
    getOrLoad(id, load) {
      const cached = cache.get(id);
      if (cached !== undefined) return Promise.resolve(cached);
      const pending = loading.get(id);
      if (pending !== undefined) return pending;
      const promise = load().then(
        (key) => {
          // Insert only if nobody deleted the id (or started another load) meanwhile.
          if (loading.get(id) === promise) {
            loading.delete(id);
            cache.set(id, key);
          }
          return key;
        },
        (err: unknown) => {
          if (loading.get(id) === promise) loading.delete(id);
          throw err;
        },
      );
      loading.set(id, promise);
      return promise;
    },
    delete(id) {
      loading.delete(id);
      return entries.delete(id);
    },
    clear() {
      loading.clear();
      entries.clear();
    },
    resolver() {
      return (ref) => cache.get(keyRefId(ref));
    },
    get size() {
      return entries.size;
    },
    maxEntries,
  };
  return cache;
}
