import type { Clock } from '../../clock.ts';
import type { Config } from '../../config.ts';
import { AppError } from '../../errors.ts';
import { openRootKey } from './providers.ts';
import type { KeyProviderConfig, OpenedRootKey } from './providers.ts';
import { createKeyService } from './service.ts';
import type { KeyService, KeyServiceDeps } from './service.ts';
import { openKeyStore } from './store.ts';
import type { KeyStore } from './store.ts';
import { probeRootKey, unwrapTenantKey } from './tenant-keys.ts';

export type KeysConfig = KeyProviderConfig &
  Pick<Config, 'dataDir' | 'databaseUrl' | 'keysDatabaseUrl' | 'keyCacheSize'>;

/** Key store, root key and service, opened together. `service.close()` releases all three. */
export interface OpenedKeys {
  store: KeyStore;
  root: OpenedRootKey;
  service: KeyService;
}

/**
 * Opens the key store (migrating it), then the root key (which may depend on the store: a key
 * file is only created while no wrapped key exists), then the service.
 *
 * @example
 * ```ts
 * const keys = await openKeys(config, { clock: systemClock });
 * await assertKeysUsable(keys);
 * const services = createServices({ config, database, clock, keys: keys.service });
 * ```
 */
export async function openKeys(
  config: KeysConfig,
  deps: { clock: Clock } & Partial<Pick<KeyServiceDeps, 'protectedValues' | 'random'>>,
): Promise<OpenedKeys> {
  const store = await openKeyStore({
    databaseUrl: config.keysDatabaseUrl ?? config.databaseUrl,
    dataDir: config.dataDir,
  });
  let root: OpenedRootKey;
  try {
    root = await openRootKey(config, store);
  } catch (err) {
    await store.close();
    throw err;
  }
  const service = createKeyService({
    ...deps,
    store,
    root,
    cacheSize: config.keyCacheSize,
    onClose: () => root.close(),
  });
  return { store, root, service };
}

/**
 * The start-up check (`server.ts` calls it before listening): the key store answers, the root
 * key provider works (a wrap/unwrap round trip), and the root key unwraps a stored tenant key
 * of every (provider, key) that wrapped any. A wrong root key or provider stops the start with
 * a message saying which, instead of failing on the first encrypted read. Throws AppError
 * (`keys.root_key_mismatch`, `keys.provider_unavailable`).
 *
 * @example
 * ```ts
 * await assertKeysUsable(await openKeys(config, { clock }));
 * ```
 */
export async function assertKeysUsable(keys: Pick<OpenedKeys, 'store' | 'root'>): Promise<void> {
  const { store, root } = keys;
  try {
    await store.ping();
  } catch (err) {
    throw new AppError('unavailable', 'keys.provider_unavailable', 'key store unreachable', {
      cause: err,
    });
  }
  await probeRootKey(root, root.describe);
  // One stored key per wrapping (provider, key): the newest live one.
  const rows = await store.db
    .selectFrom('tenant_keys')
    .select(['tenant_id', 'purpose', 'version', 'provider_id', 'provider_key_id', 'wrapped'])
    .where('wrapped', 'is not', null)
    .orderBy('created_at', 'desc')
    .execute();
  const seen = new Set<string>();
  for (const row of rows) {
    const id = `${row.provider_id}\u0000${row.provider_key_id}`;
    if (seen.has(id) || row.wrapped === null) continue;
    seen.add(id);
    try {
      await unwrapTenantKey(root, {
        ...row,
        tenantId: row.tenant_id,
        wrapped: row.wrapped,
      });
    } catch (err) {
      if (err instanceof AppError && err.code === 'keys.root_key_mismatch') {
        throw new AppError(
          'unavailable',
          'keys.root_key_mismatch',
          `${root.describe} cannot unwrap the tenant keys in the key store: it is not the root key they were created with. ` +
            'Restore the original root key; starting with another one would leave every encrypted value unreadable.',
          { cause: err },
        );
      }
      throw err;
    }
  }
}

/**
 * A `KeyService` that opens the store and root key on first use: what `createServices` builds
 * when no opened service is passed in. Failures surface at that first call, so `server.ts` should
 * open keys eagerly with `openKeys` and `assertKeysUsable`.
 *
 * @example
 * ```ts
 * const keys = createLazyKeyService(config, { clock });
 * ```
 */
export function createLazyKeyService(
  config: KeysConfig,
  deps: { clock: Clock } & Partial<Pick<KeyServiceDeps, 'protectedValues' | 'random'>>,
): KeyService {
  let opened: Promise<OpenedKeys> | undefined;
  /** The service once open: calls then go straight to it (every encrypted read makes some). */
  let ready: KeyService | undefined;
  const get = async (): Promise<KeyService> => {
    opened ??= openKeys(config, deps);
    try {
      ready = (await opened).service;
      return ready;
    } catch (err) {
      opened = undefined;
      throw err;
    }
  };
  const via = <R>(use: (service: KeyService) => Promise<R>): Promise<R> =>
    ready ? use(ready) : get().then(use);
  return {
    tenantDataKey: (...a) => via((s) => s.tenantDataKey(...a)),
    tenantDataKeyVersion: (...a) => via((s) => s.tenantDataKeyVersion(...a)),
    tenantIndexKey: (...a) => via((s) => s.tenantIndexKey(...a)),
    subjectKey: (...a) => via((s) => s.subjectKey(...a)),
    subjectKeys: (...a) => via((s) => s.subjectKeys(...a)),
    createSubjectKeys: (...a) => via((s) => s.createSubjectKeys(...a)),
    subjectKeyWrapping: (...a) => via((s) => s.subjectKeyWrapping(...a)),
    storeSubjectKeys: (...a) => via((s) => s.storeSubjectKeys(...a)),
    keyFor: (...a) => via((s) => s.keyFor(...a)),
    cachedSubjectKey: (...a) => ready?.cachedSubjectKey(...a),
    destroySubjectKey: (...a) => via((s) => s.destroySubjectKey(...a)),
    rotateTenantKey: (...a) => via((s) => s.rotateTenantKey(...a)),
    rewrapSubjectKeys: (...a) => via((s) => s.rewrapSubjectKeys(...a)),
    status: (...a) => via((s) => s.status(...a)),
    openRotations: () => via((s) => s.openRotations()),
    retireVersion: (...a) => via((s) => s.retireVersion(...a)),
    ping: () => via((s) => s.ping()),
    async close() {
      if (opened === undefined) return;
      const pending = opened;
      opened = undefined;
      ready = undefined;
      await (await pending).service.close();
    },
  };
}
