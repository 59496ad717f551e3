import fs from 'node:fs';
import path from 'node:path';
import SQLite from 'better-sqlite3';
import pg from 'pg';
import {
  CompiledQuery,
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
import {
  FALLBACK_CHECKPOINT_PAGES,
  startWalCheckpointer,
  type WalCheckpointer,
} from './wal-checkpointer.ts';
import { currentScope, runAsMigration, type TenantScope } from './tenant-scope.ts';
import { APP_ROLE } from './tenant-walls.ts';

export type Dialect = 'sqlite' | 'postgres';

export interface DatabaseOptions {
  /** postgres:// URL; SQLite in `dataDir` when absent. */
  databaseUrl?: string | undefined;
  dataDir: string;
  poolSize?: number;
  /**
   * PostgreSQL: run every query as `custos_app` under the row-level security of migration 0016,
   * scoped by the caller's tenant scope (default true). False connects as the login role as is:
   * for tests' own inspection of what the application wrote, never for the application.
   */
  tenantWalls?: boolean;
  /**
   * SQLite: where write-ahead-log checkpoints run. `inline` (default): SQLite's automatic
   * checkpoint, inside the commit that crosses 1000 pages, on the event loop. `thread`: on a
   * thread of their own (wal-checkpointer.ts), so the event loop never waits for their fsyncs;
   * the server uses it.
   */
  walCheckpoints?: 'inline' | 'thread';
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
   * SQLite only: synchronous statements on the connection Kysely writes through, for the hot
   * statements of an audit append. Valid only while the caller holds that connection inside a
   * transaction (`inTransaction`): then they are part of it, as Kysely's own queries would be.
   */
  writer?: SyncWriter;
  /**
   * SQLite only: a watch over this process's writes (see write-watch.ts), for in-memory caches
   * of what every request reads. Absent on PostgreSQL, where other nodes write too.
   */
  watchWrites?: (affects: (sql: string) => boolean) => WriteWatch;
  /** SQLite with `walCheckpoints: 'thread'`: the checkpointing thread. */
  walCheckpointer?: WalCheckpointer;
  /** A trivial query: is the database reachable? */
  ping(): Promise<void>;
  close(): Promise<void>;
}

export interface SyncReader {
  all(sql: string, parameters: readonly unknown[]): unknown[];
}

export interface SyncWriter {
  /** True while a transaction is open on the connection. */
  readonly inTransaction: boolean;
  /** Runs one statement; the rows when it returns any (as Kysely's SQLite driver does). */
  execute(sql: string, parameters: readonly unknown[]): unknown[];
}

export const SQLITE_FILE = 'custos.db';

// The file behind each SQLite Kysely instance openDatabase made (see sqliteFileOf).
const sqliteFiles = new WeakMap<Kysely<Database>, string>();

/**
 * The SQLite file behind `db` when openDatabase opened it (undefined on PostgreSQL and for a
 * transaction): for bulk reads that open a read-only connection of their own, e.g. a
 * consistent snapshot that long reads keep across awaits without holding up the connection
 * Kysely writes on.
 */
export function sqliteFileOf(db: Kysely<Database>): string | undefined {
  return sqliteFiles.get(db);
}

/** Opens the database: SQLite (WAL, foreign keys on) by default, PostgreSQL with a URL. */
export function openDatabase(options: DatabaseOptions): DatabaseHandle {
  if (options.databaseUrl) {
    const pool = new pg.Pool({
      connectionString: options.databaseUrl,
      max: options.poolSize ?? 10,
    });
    // A pool error on an idle client must not crash the process; the next query reports it.
    pool.on('error', () => undefined);
    const walled = options.tenantWalls === false ? pool : withTenantWalls(pool);
    const db = new Kysely<Database>({ dialect: new PostgresDialect({ pool: walled }) });
    return { db, dialect: 'postgres', ping: () => ping(db), close: () => db.destroy() };
  }
  fs.mkdirSync(options.dataDir, { recursive: true, mode: 0o700 });
  const file = path.join(options.dataDir, SQLITE_FILE);
  const sqlite = new SQLite(file);
  sqlite.pragma('journal_mode = WAL');
  sqlite.pragma('synchronous = NORMAL');
  sqlite.pragma('foreign_keys = ON');
  sqlite.pragma('busy_timeout = 5000');
  // Page cache of the writing connection: up to 64 MiB (SQLite's default is 2 MiB), taken only
  // as pages are used. A large import inserts into indexes over random keyed hashes (e-mail,
  // phone): with 2 MiB, each insert touched pages evicted since and read them back, ~4 us of
  // the ~25 us a contact row cost (measured on 100,000 rows).
  sqlite.pragma('cache_size = -65536');
  fs.chmodSync(file, 0o600);
  let walCheckpointer: WalCheckpointer | undefined;
  if (options.walCheckpoints === 'thread') {
    // A safety net only: the thread keeps the log far below it.
    sqlite.pragma(`wal_autocheckpoint = ${FALLBACK_CHECKPOINT_PAGES}`);
    walCheckpointer = startWalCheckpointer({ file });
  }
  const watches = createWriteWatches();
  const statements = withStatementCache(sqlite, watches.wrap);
  const db = new Kysely<Database>({ dialect: new SqliteDialect({ database: statements }) });
  // The same statement cache and write watches as Kysely's queries on this connection.
  const writer: SyncWriter = {
    get inTransaction() {
      return sqlite.inTransaction;
    },
    execute(text, parameters) {
      const statement = statements.prepare(text);
      if (statement.reader) return statement.all(parameters);
      statement.run(parameters);
      return [];
    },
  };
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
  sqliteFiles.set(db, file);
  return {
    db,
    dialect: 'sqlite',
    file,
    reader,
    writer,
    watchWrites: watches.watch,
    ...(walCheckpointer ? { walCheckpointer } : {}),
    ping: () => ping(db),
    close: async () => {
      await walCheckpointer?.stop();
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
  const { error, results } = await runAsMigration(() => migrator.migrateToLatest());
  if (error) {
    const failed = results?.find((r: MigrationResult) => r.status === 'Error');
    throw new MigrationError(`Migration ${failed?.migrationName ?? '(unknown)'} failed`, {
      cause: error,
    });
  }
  return (results ?? []).filter((r) => r.status === 'Success').map((r) => r.migrationName);
}

/** The slice of pg's pool Kysely uses. */
interface PoolLike {
  connect(): Promise<pg.PoolClient>;
  end(): Promise<void>;
}

/**
 * Tenant walls: before Kysely runs anything on a pooled connection (a query, or the BEGIN of a
 * transaction), the connection takes the role and settings of the caller's tenant scope. Session
 * settings (not transaction-local ones) because Kysely acquires the connection before BEGIN; they
 * are set outside any transaction, so no rollback undoes them. Each connection remembers what it
 * was last given, so a pool serving one tenant pays the extra round trip only on a change.
 *
 * `custos_app` has no BYPASSRLS and owns nothing, so PostgreSQL applies the policies even to a
 * query that forgot its `tenant_id` filter. Superusers bypass row-level security: that is why the
 * role is taken with SET ROLE even when the login role is `postgres`.
 */
function withTenantWalls(pool: pg.Pool): PoolLike {
  const applied = new WeakMap<pg.PoolClient, string>();
  return {
    async connect() {
      const client = await pool.connect();
      const [role, tenantId, scope] = connectionSettings(currentScope());
      const key = `${role}\u0000${tenantId}\u0000${scope}`;
      if (applied.get(client) === key) return client;
      try {
        await client.query(
          `select set_config('role', $1, false), set_config('custos.tenant_id', $2, false),
                  set_config('custos.scope', $3, false)`,
          [role, tenantId, scope],
        );
      } catch (error) {
        // A connection in an unknown state goes away instead of back to the pool.
        applied.delete(client);
        client.release(error instanceof Error ? error : true);
        throw error;
      }
      applied.set(client, key);
      return client;
    },
    end: () => pool.end(),
  };
}

/** [role, custos.tenant_id, custos.scope] for a scope; no scope sees no tenant's rows. */
function connectionSettings(scope: TenantScope | undefined): [string, string, string] {
  switch (scope?.kind) {
    case undefined:
      return [APP_ROLE, '', ''];
    case 'tenant':
      return [APP_ROLE, scope.tenantId, 'tenant'];
    case 'system':
      return [APP_ROLE, '', 'system'];
    case 'migration':
      // The login role (the schema owner); `system` because FORCE ROW LEVEL SECURITY applies
      // to a non-superuser owner too, and data migrations touch every tenant.
      return ['none', '', 'system'];
  }
}

async function ping(db: Kysely<Database>): Promise<void> {
  await sql`select 1`.execute(db);
}

const STATEMENT_CACHE_SIZE = 500;

/** Marks a query `eachRowQuery` built: a `custos:each-row:<width>` comment, then the text. */
const EACH_ROW = /^\/\*custos:each-row:(\d+)\*\/ /;

/**
 * SQLite: many rows of one single-row statement (`text`, with `width` placeholders) in ONE call
 * to the driver, which runs the statement once per row from its prepared-statement cache
 * (`withStatementCache`). Faster than a multi-row VALUES list there: better-sqlite3 binds and
 * steps a small cached statement for a fraction of what SQLite spends on a 500-row VALUES list,
 * and Kysely's per-query machinery (an async call each) runs once for all the rows. A reader
 * statement (`... returning x`) returns the rows of every run, in order. `parameters` holds the
 * rows one after another. PostgreSQL has no such path: use a multi-row INSERT there.
 *
 * @example
 * ```ts
 * await trx.executeQuery(eachRowQuery('insert into t (a, b) values (?, ?)', 2, [1, 'x', 2, 'y']));
 * ```
 */
export function eachRowQuery(
  text: string,
  width: number,
  parameters: readonly unknown[],
): CompiledQuery {
  if (!Number.isInteger(width) || width < 1 || parameters.length % width !== 0) {
    throw new TypeError('parameters must hold whole rows of `width` values');
  }
  return CompiledQuery.raw(`/*custos:each-row:${width}*/ ${text}`, [...parameters]);
}

/** The statement run once per `width` parameters (see `eachRowQuery`). */
function eachRow(statement: SQLite.Statement, width: number): SqliteStatement {
  return {
    reader: statement.reader,
    all(parameters) {
      const found: unknown[] = [];
      for (let i = 0; i < parameters.length; i += width) {
        for (const r of statement.all(parameters.slice(i, i + width))) found.push(r);
      }
      return found;
    },
    run(parameters) {
      let changes = 0;
      let lastInsertRowid: number | bigint = 0;
      for (let i = 0; i < parameters.length; i += width) {
        const result = statement.run(parameters.slice(i, i + width));
        changes += result.changes;
        lastInsertRowid = result.lastInsertRowid;
      }
      return { changes, lastInsertRowid };
    },
    iterate() {
      throw new TypeError('an each-row statement cannot be streamed');
    },
  };
}

/**
 * better-sqlite3 compiles SQL on every `prepare`, which Kysely calls for every query: the largest
 * single cost of a request in profiles. The queries are parameterised, so their text repeats;
 * prepared statements are kept by text (bounded, least recently used out first). Safe because
 * Kysely runs one statement at a time on the single SQLite connection.
 */
export function withStatementCache(
  sqlite: SQLite.Database,
  wrap: (text: string, statement: SqliteStatement) => SqliteStatement = (_, s) => s,
): SqliteDatabase {
  const cache = new Map<string, SQLite.Statement>();
  return {
    close: () => sqlite.close(),
    prepare(text: string) {
      const each = EACH_ROW.exec(text);
      let statement = cache.get(text);
      if (statement) {
        cache.delete(text);
      } else {
        statement = sqlite.prepare(each === null ? text : text.slice(each[0].length));
        if (cache.size >= STATEMENT_CACHE_SIZE) {
          const oldest = cache.keys().next().value;
          if (oldest !== undefined) cache.delete(oldest);
        }
      }
      cache.set(text, statement);
      return wrap(text, each === null ? statement : eachRow(statement, Number(each[1])));
    },
  };
}
