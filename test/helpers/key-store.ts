import { randomBytes } from 'node:crypto';
import fs from 'node:fs';
import { createManualClock } from '../../src/clock.ts';
import { createLocalKeyProvider } from '../../src/core/crypto/index.ts';
import { createKeyService } from '../../src/modules/keys/service.ts';
import type { KeyService, KeyServiceDeps } from '../../src/modules/keys/service.ts';
import { openKeyStore } from '../../src/modules/keys/store.ts';
import type { KeyStore } from '../../src/modules/keys/store.ts';
import type { RootKey } from '../../src/modules/keys/tenant-keys.ts';
import { createTestDatabase } from './database.ts';
import type { TestDatabase } from './database.ts';

/**
 * A data database (SQLite or PostgreSQL, as `createTestDatabase`) with a key store beside it:
 * `keys.db` in the same data directory, or schema `custos_keys` in the same PostgreSQL database.
 */
export interface TestKeys {
  database: TestDatabase;
  store: KeyStore;
  root: RootKey;
  rootKeyBytes: Buffer;
  clock: ReturnType<typeof createManualClock>;
  /** A service over the store (a fresh one per call: its cache starts empty, like a new node). */
  service(overrides?: Partial<KeyServiceDeps>): KeyService;
  /** Reopens the store (e.g. after a test closed a service). */
  reopenStore(): Promise<KeyStore>;
  close(): Promise<void>;
}

export async function createTestKeys(): Promise<TestKeys> {
  const database = await createTestDatabase();
  const open = () => openKeyStore({ databaseUrl: database.url, dataDir: database.dataDir });
  const stores: KeyStore[] = [await open()];
  const rootKeyBytes = randomBytes(32);
  const root: RootKey = {
    provider: createLocalKeyProvider({ rootKey: rootKeyBytes, keyId: 'root' }),
    keyId: 'root',
  };
  const clock = createManualClock();
  const current = () => stores[stores.length - 1]!;
  return {
    database,
    get store() {
      return current();
    },
    root,
    rootKeyBytes,
    clock,
    service: (overrides = {}) =>
      createKeyService({
        store: current(),
        root,
        clock,
        cacheSize: 100,
        // No record table lives beside this key store: no version seals a field value.
        protectedValues: () => Promise.resolve(0),
        ...overrides,
      }),
    async reopenStore() {
      stores.push(await open());
      return current();
    },
    async close() {
      for (const store of stores) await store.close().catch(() => undefined);
      await database.drop();
      fs.rmSync(database.dataDir, { recursive: true, force: true });
    },
  };
}
