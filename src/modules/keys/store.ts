import fs from 'node:fs';
import path from 'node:path';
import SQLite from 'better-sqlite3';
import pg from 'pg';
import { Kysely, Migrator, PostgresDialect, SqliteDialect, sql } from 'kysely';
import type { Migration, MigrationResult } from 'kysely';
import { MigrationError, withStatementCache } from '../../db/database.ts';

/**
 * The key store, kept apart from the data so that a backup of the data alone decrypts nothing:
 * on SQLite its own file `keys.db` beside `custos.db` (own connection, WAL, mode 0600,
 * `secure_delete` so destroyed wrapped keys are overwritten with zeros, not left in free pages);
 * on PostgreSQL the schema `custos_keys` (own migrations table) of the same database, or of
 * another database named by CUSTOS_KEYS_DATABASE_URL. Wrapped keys are base64 text on both.
 */

/** A tenant key version. `wrapped` is NULL once the version is retired (destroyed). */
export interface TenantKeyTable {
  tenant_id: string;
  purpose: 'data' | 'index';
  version: number;
  provider_id: string;
  provider_key_id: string;
  wrapped: string | null;
  state: 'active' | 'decrypt-only' | 'retired';
  created_at: string;
  /** When the version stopped encrypting new values (rotation), then when it was retired. */
  deactivated_at: string | null;
  retired_at: string | null;
}

/**
 * A data subject's key, wrapped by the tenant data key `tenant_key_version`. Shredding keeps the
 * row as a tombstone (`wrapped` NULL, `destroyed_at` set) so the erased subject is told apart
 * from one that never had a key, and a key is never silently re-created for an erased person.
 */
export interface SubjectKeyTable {
  tenant_id: string;
  subject_id: string;
  tenant_key_version: number;
  wrapped: string | null;
  created_at: string;
  destroyed_at: string | null;
}

export interface KeySettingsTable {
  tenant_id: string;
  min_decrypt_version: number;
}

export interface KeyTables {
  tenant_keys: TenantKeyTable;
  subject_keys: SubjectKeyTable;
  key_settings: KeySettingsTable;
}

export interface KeyStore {
  db: Kysely<KeyTables>;
  dialect: 'sqlite' | 'postgres';
  /** The SQLite file (undefined on PostgreSQL). */
  file: string | undefined;
  /** The PostgreSQL schema (undefined on SQLite). */
  schema: string | undefined;
  ping(): Promise<void>;
  /**
   * Called after wrapped bytes were destroyed. On SQLite it checkpoints and truncates the WAL,
   * whose older frames could still hold the page as it was before (`secure_delete` zeroes freed
   * cells). On PostgreSQL the UPDATE leaves the old row version in the heap until VACUUM prunes
   * the page: it runs VACUUM on the two key tables (checked on PostgreSQL 15: after it and a
   * checkpoint the heap file no longer holds the old bytes). WAL segments and WAL archives keep
   * them until recycled: a key store's WAL archive must have a short retention.
   */
  afterShred(): Promise<void>;
  close(): Promise<void>;
}

export const KEYS_SQLITE_FILE = 'keys.db';
export const KEYS_SCHEMA = 'custos_keys';

const initial: Migration = {
  async up(db: Kysely<unknown>) {
    await db.schema
      .createTable('tenant_keys')
      .addColumn('tenant_id', 'text', (c) => c.notNull())
      .addColumn('purpose', 'text', (c) => c.notNull().check(sql`purpose in ('data', 'index')`))
      .addColumn('version', 'integer', (c) => c.notNull().check(sql`version >= 1`))
      .addColumn('provider_id', 'text', (c) => c.notNull())
      .addColumn('provider_key_id', 'text', (c) => c.notNull())
      .addColumn('wrapped', 'text')
      .addColumn('state', 'text', (c) =>
        c.notNull().check(sql`state in ('active', 'decrypt-only', 'retired')`),
      )
      .addColumn('created_at', 'text', (c) => c.notNull())
      .addColumn('deactivated_at', 'text')
      .addColumn('retired_at', 'text')
      .addPrimaryKeyConstraint('tenant_keys_pk', ['tenant_id', 'purpose', 'version'])
      .execute();
    await db.schema
      .createTable('subject_keys')
      .addColumn('tenant_id', 'text', (c) => c.notNull())
      .addColumn('subject_id', 'text', (c) => c.notNull())
      .addColumn('tenant_key_version', 'integer', (c) => c.notNull())
      .addColumn('wrapped', 'text')
      .addColumn('created_at', 'text', (c) => c.notNull())
      .addColumn('destroyed_at', 'text')
      .addPrimaryKeyConstraint('subject_keys_pk', ['tenant_id', 'subject_id'])
      .execute();
    // Re-wrapping after rotation looks up the keys still under an old version.
    await db.schema
      .createIndex('subject_keys_by_version')
      .on('subject_keys')
      .columns(['tenant_id', 'tenant_key_version'])
      .execute();
    await db.schema
      .createTable('key_settings')
      .addColumn('tenant_id', 'text', (c) => c.primaryKey())
      .addColumn('min_decrypt_version', 'integer', (c) => c.notNull())
      .execute();
  },
};

const migrations: Record<string, Migration> = { 'keys-0001-initial': initial };

/**
 * Opens (and migrates) the key store: PostgreSQL when `databaseUrl` is given, else
 * `dataDir/keys.db`.
 *
 * @example
 * ```ts
 * const store = await openKeyStore({ databaseUrl: config.keysDatabaseUrl ?? config.databaseUrl, dataDir: config.dataDir });
 * ```
 */
export async function openKeyStore(options: {
  databaseUrl?: string | undefined;
  dataDir: string;
  poolSize?: number;
}): Promise<KeyStore> {
  const store = options.databaseUrl
    ? openPostgres(options.databaseUrl, options.poolSize ?? 4)
    : openSqlite(options.dataDir);
  try {
    await migrate(store);
  } catch (err) {
    await store.close();
    throw err;
  }
  return store;
}

function openPostgres(url: string, poolSize: number): KeyStore {
  const pool = new pg.Pool({ connectionString: url, max: poolSize });
  pool.on('error', () => undefined);
  const root = new Kysely<KeyTables>({ dialect: new PostgresDialect({ pool }) });
  const db = root.withSchema(KEYS_SCHEMA);
  return {
    db,
    dialect: 'postgres',
    file: undefined,
    schema: KEYS_SCHEMA,
    ping: async () => void (await sql`select 1`.execute(db)),
    // VACUUM cannot run in a transaction; it goes through the pool on its own connection.
    afterShred: async () =>
      void (await sql`vacuum (skip_locked) ${sql.table(`${KEYS_SCHEMA}.subject_keys`)}, ${sql.table(`${KEYS_SCHEMA}.tenant_keys`)}`.execute(
        root,
      )),
    close: () => root.destroy(),
  };
}

function openSqlite(dataDir: string): KeyStore {
  fs.mkdirSync(dataDir, { recursive: true, mode: 0o700 });
  const file = path.join(dataDir, KEYS_SQLITE_FILE);
  // Created 0600 before SQLite opens it, so it is never readable by others, even briefly; the
  // -wal and -shm files take the database file's mode.
  fs.closeSync(fs.openSync(file, 'a', 0o600));
  fs.chmodSync(file, 0o600);
  const sqlite = new SQLite(file);
  sqlite.pragma('journal_mode = WAL');
  sqlite.pragma('synchronous = FULL');
  sqlite.pragma('secure_delete = ON');
  sqlite.pragma('busy_timeout = 5000');
  // Cached prepared statements (as for the data database), so each-row inserts can run there.
  const db = new Kysely<KeyTables>({
    dialect: new SqliteDialect({ database: withStatementCache(sqlite) }),
  });
  return {
    db,
    dialect: 'sqlite',
    file,
    schema: undefined,
    ping: async () => void (await sql`select 1`.execute(db)),
    afterShred: async () => void (await sql`pragma wal_checkpoint(TRUNCATE)`.execute(db)),
    close: () => db.destroy(),
  };
}

async function migrate(store: KeyStore): Promise<void> {
  const migrator = new Migrator({
    db: store.db,
    provider: { getMigrations: () => Promise.resolve(migrations) },
    migrationTableName: 'keys_migrations',
    migrationLockTableName: 'keys_migrations_lock',
    ...(store.schema === undefined ? {} : { migrationTableSchema: store.schema }),
  });
  const { error, results } = await migrator.migrateToLatest();
  if (error) {
    const failed = results?.find((r: MigrationResult) => r.status === 'Error');
    throw new MigrationError(`Key store migration ${failed?.migrationName ?? '?'} failed`, {
      cause: error,
    });
  }
}
