import fs from 'node:fs';
import path from 'node:path';
import SQLite from 'better-sqlite3';
import pg from 'pg';
import {
  Kysely,
  Migrator,
  sql,
  PostgresDialect,
  SqliteDialect,
  type MigrationResult,
  type SqliteDatabase,
  type SqliteStatement,
} from 'kysely';
import type { Database } from './schema.ts';
import { migrations } from './migrations/index.ts';
import { createWriteWatches, type WriteWatch } from './write-watch.ts';

export type Dialect = 'sqlite' | 'postgres';

export interface DatabaseOptions {
  /** postgres:// URL; SQLite in `dataDir` when absent. */
  databaseUrl?: string | undefined;
  dataDir: string;
  poolSize?: number;
}

export interface DatabaseHandle {
  db: Kysely<Database>;
  dialect: Dialect;
  /** Where the SQLite file lives (undefined on PostgreSQL). */
  file?: string;
  /**
   * SQLite only: a second, read-only connection for the reads every request makes (session,
   * record by id), run synchronously without Kysely's per-query machinery. It sees every
   * committed write (WAL) and never another request's open transaction.
   */
  reader?: SyncReader;
  /**
   * SQLite only: a watch over this process's writes (see write-watch.ts), for in-memory caches
   * of what every request reads. Absent on PostgreSQL, where other nodes write too.
   */
  watchWrites?: (affects: (sql: string) => boolean) => WriteWatch;
  /** A trivial query: is the database reachable? */
  ping(): Promise<void>;
  close(): Promise<void>;
}

export interface SyncReader {
  all(sql: string, parameters: readonly unknown[]): unknown[];
}

export const SQLITE_FILE = 'custos.db';

/** Opens the database: SQLite (WAL, foreign keys on) by default, PostgreSQL with a URL. */
export function openDatabase(options: DatabaseOptions): DatabaseHandle {
  if (options.databaseUrl) {
    const pool = new pg.Pool({
      connectionString: options.databaseUrl,
      max: options.poolSize ?? 10,
    });
    // A pool error on an idle client must not crash the process; the next query reports it.
    pool.on('error', () => undefined);
    const db = new Kysely<Database>({ dialect: new PostgresDialect({ pool }) });
    return { db, dialect: 'postgres', ping: () => ping(db), close: () => db.destroy() };
  }
  fs.mkdirSync(options.dataDir, { recursive: true, mode: 0o700 });
  const file = path.join(options.dataDir, SQLITE_FILE);
  const sqlite = new SQLite(file);
  sqlite.pragma('journal_mode = WAL');
  sqlite.pragma('synchronous = NORMAL');
  sqlite.pragma('foreign_keys = ON');
  sqlite.pragma('busy_timeout = 5000');
  fs.chmodSync(file, 0o600);
  const watches = createWriteWatches();
  const db = new Kysely<Database>({
    dialect: new SqliteDialect({ database: withStatementCache(sqlite, watches.wrap) }),
  });
  let readConnection: SQLite.Database | undefined;
  let readStatements: SqliteDatabase | undefined;
  const reader: SyncReader = {
    all(text, parameters) {
      if (!readStatements) {
        readConnection = new SQLite(file, { readonly: true, fileMustExist: true });
        readConnection.pragma('busy_timeout = 5000');
        readStatements = withStatementCache(readConnection);
      }
      return readStatements.prepare(text).all(parameters);
    },
  };
  return {
    db,
    dialect: 'sqlite',
    file,
    reader,
    watchWrites: watches.watch,
    ping: () => ping(db),
    close: async () => {
      readConnection?.close();
      await db.destroy();
    },
  };
}

export class MigrationError extends Error {
  override readonly name = 'MigrationError';
}

/** Applies every pending migration; returns the names applied now. */
export async function migrateToLatest(db: Kysely<Database>): Promise<string[]> {
  const migrator = new Migrator({
    db,
    provider: { getMigrations: () => Promise.resolve(migrations) },
  });
  const { error, results } = await migrator.migrateToLatest();
  if (error) {
    const failed = results?.find((r: MigrationResult) => r.status === 'Error');
    throw new MigrationError(`Migration ${failed?.migrationName ?? '(unknown)'} failed`, {
      cause: error,
    });
  }
  return (results ?? []).filter((r) => r.status === 'Success').map((r) => r.migrationName);
}

async function ping(db: Kysely<Database>): Promise<void> {
  await sql`select 1`.execute(db);
}

const STATEMENT_CACHE_SIZE = 500;

/**
 * better-sqlite3 compiles SQL on every `prepare`, which Kysely calls for every query: the largest
 * single cost of a request in profiles. The queries are parameterised, so their text repeats;
 * prepared statements are kept by text (bounded, least recently used out first). Safe because
 * Kysely runs one statement at a time on the single SQLite connection.
 */
function withStatementCache(
  sqlite: SQLite.Database,
  wrap: (text: string, statement: SqliteStatement) => SqliteStatement = (_, s) => s,
): SqliteDatabase {
  const cache = new Map<string, SQLite.Statement>();
  return {
    close: () => sqlite.close(),
    prepare(text: string) {
      let statement = cache.get(text);
      if (statement) {
        cache.delete(text);
      } else {
        statement = sqlite.prepare(text);
        if (cache.size >= STATEMENT_CACHE_SIZE) {
          const oldest = cache.keys().next().value;
          if (oldest !== undefined) cache.delete(oldest);
        }
      }
      cache.set(text, statement);
      return wrap(text, statement);
    },
  };
}
