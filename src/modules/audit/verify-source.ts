import SQLite from 'better-sqlite3';
import { PostgresAdapter, sql, type Kysely, type Selectable } from 'kysely';
import type { SignedCheckpoint } from '../../core/audit/index.ts';
import { sqliteFileOf } from '../../db/database.ts';
import {
  AUDIT_DERIVED_COLUMNS,
  AUDIT_EVENTS_SQLITE_COLUMNS,
  postgresExpression,
  sqliteDerivedColumn,
} from '../../db/migrations/0021-audit-derived-columns.ts';
import type { AuditEventTable, Database } from '../../db/schema.ts';

/**
 * What verification reads of an event row: its leaf index, canonical bytes and leaf hash. The
 * other columns are generated from the canonical bytes by the database (migration 0021), which
 * `columnsDetached` checks once per verification instead of comparing them row by row.
 */
export type EventTuple = [leafIndex: number | string, canonical: string, leafHash: string];

const TUPLE_COLUMNS = ['leaf_index', 'canonical', 'leaf_hash'] as const;

/** A stored hash by index: [idx, hex]. */
export type IndexedHash = [index: number | string, hash: string];

/**
 * One tenant's audit tables as of one moment: every read sees the same committed state, so
 * appends that commit meanwhile neither break nor join the verification.
 */
export interface AuditSnapshot {
  /**
   * Whether reading the next page ahead overlaps with verifying this one (a database server),
   * or only keeps two pages alive at once (SQLite reads in this thread).
   */
  readonly readAhead: boolean;
  /** The tree head row: frontier JSON and where retention resumed the log. */
  head(): Promise<{ frontier: string; prunedSize: number } | undefined>;
  checkpoints(): Promise<SignedCheckpoint[]>;
  /** The events with a leaf index above `after`, in leaf order, read `limit` at a time. */
  events(after: number): EventReader;
  /** Leaf hashes retention kept (level 0 of `audit_nodes`) in [from, to), in order. */
  keptLeafHashes(from: number, to: number, limit: number): Promise<IndexedHash[]>;
  /** Stored subtree hashes of `level` with index in [from, to], in order. */
  nodes(level: number, from: number, to: number): Promise<IndexedHash[]>;
  /**
   * The first event column that is no longer generated from the canonical bytes as migration
   * 0021 defined it (made writable, or derived differently), or undefined when all are.
   */
  columnsDetached(): Promise<string | undefined>;
}

export interface EventReader {
  /** The next up to `limit` events; an empty page at the end. */
  next(limit: number): Promise<EventTuple[]>;
}

/**
 * Runs `fn` over a snapshot of the tenant's audit tables. SQLite: a read-only connection of its
 * own in a read transaction (raw rows from prepared statements; Kysely's connection stays free
 * for writers). PostgreSQL: a REPEATABLE READ, READ ONLY transaction through Kysely (under the
 * caller's tenant walls). Inside a transaction, `fn` reads through it.
 */
export async function withAuditSnapshot<T>(
  db: Kysely<Database>,
  tenantId: string,
  fn: (snapshot: AuditSnapshot) => Promise<T>,
): Promise<T> {
  const file = sqliteFileOf(db);
  if (file !== undefined) {
    const conn = new SQLite(file, { readonly: true, fileMustExist: true });
    try {
      conn.pragma('busy_timeout = 5000');
      conn.exec('BEGIN'); // deferred: the snapshot is taken at the first read, kept to the end
      return await fn(sqliteSnapshot(conn, tenantId));
    } finally {
      conn.close(); // ends the read transaction
    }
  }
  if (db.isTransaction || !(db.getExecutor().adapter instanceof PostgresAdapter)) {
    return fn(kyselySnapshot(db, tenantId));
  }
  return db
    .transaction()
    .setIsolationLevel('repeatable read')
    .setAccessMode('read only')
    .execute((trx) => fn(kyselySnapshot(trx, tenantId)));
}

function sqliteSnapshot(conn: SQLite.Database, tenantId: string): AuditSnapshot {
  const prepare = (text: string) => conn.prepare(text).raw(true);
  const head = prepare(
    'select frontier, pruned_size from audit_tree where tenant_id = ?',
  ) as SQLite.Statement<[string], [string, number]>;
  const checkpoints = prepare(
    'select tenant_id, tree_size, root_hash, signed_at, key_id, signature from audit_checkpoints where tenant_id = ? order by tree_size',
  ) as SQLite.Statement<[string], [string, number, string, string, string, string]>;
  const events = prepare(
    `select ${TUPLE_COLUMNS.join(', ')} from audit_events where tenant_id = ? and leaf_index > ? order by leaf_index limit ?`,
  ) as SQLite.Statement<[string, number, number], EventTuple>;
  const kept = prepare(
    'select idx, hash from audit_nodes where tenant_id = ? and level = 0 and idx >= ? and idx < ? order by idx limit ?',
  ) as SQLite.Statement<[string, number, number, number], IndexedHash>;
  const nodes = prepare(
    'select idx, hash from audit_nodes where tenant_id = ? and level = ? and idx >= ? and idx <= ? order by idx',
  ) as SQLite.Statement<[string, number, number, number], IndexedHash>;
  return {
    readAhead: false,
    head: () => {
      const row = head.get(tenantId);
      return Promise.resolve(row && { frontier: row[0], prunedSize: Number(row[1]) });
    },
    checkpoints: () => Promise.resolve(checkpoints.all(tenantId).map(toCheckpoint)),
    events(after) {
      // Keyset pages: the connection must stay free between pages for the node queries.
      let last = after;
      return {
        next(limit) {
          const rows = events.all(tenantId, last, limit);
          if (rows.length > 0) last = Number(rows.at(-1)![0]);
          return Promise.resolve(rows);
        },
      };
    },
    keptLeafHashes: (from, to, limit) => Promise.resolve(kept.all(tenantId, from, to, limit)),
    nodes: (level, from, to) => Promise.resolve(nodes.all(tenantId, level, from, to)),
    columnsDetached: () => {
      const row = conn
        .prepare("select sql from sqlite_master where type = 'table' and name = 'audit_events'")
        .raw(true)
        .get() as [string] | undefined;
      return Promise.resolve(sqliteColumnsDetached(row?.[0]));
    },
  };
}

// What SQLite stores for the table migration 0021 built (renamed into place).
const SQLITE_TABLE = `CREATE TABLE "audit_events" (\n  ${AUDIT_EVENTS_SQLITE_COLUMNS}\n)`;

/** SQLite: the stored definition of audit_events, character for character. */
function sqliteColumnsDetached(stored: string | undefined): string | undefined {
  if (stored === SQLITE_TABLE) return undefined;
  const column = AUDIT_DERIVED_COLUMNS.find(
    (c) => !(stored ?? '').includes(sqliteDerivedColumn(c)),
  );
  return column?.[0] ?? 'the table definition';
}

/**
 * PostgreSQL: every derived column generated (STORED) by the expression migration 0021 gave it,
 * as PostgreSQL prints it back (`information_schema.columns.generation_expression`), compared
 * without the parentheses, `::text` casts and spaces its printing adds (PostgreSQL 15 prints
 * `(((canonical)::json -> 'actor'::text) ->> 'id'::text)` for `canonical::json -> 'actor' ->>
 * 'id'`), so that another version's printing of the same expression still matches.
 */
function postgresColumnsDetached(
  rows: readonly {
    column_name: string;
    is_generated: string;
    generation_expression: string | null;
  }[],
): string | undefined {
  const byName = new Map(rows.map((r) => [r.column_name, r]));
  for (const [name, path] of AUDIT_DERIVED_COLUMNS) {
    const row = byName.get(name);
    if (
      row?.is_generated !== 'ALWAYS' ||
      bare(row.generation_expression ?? '') !== bare(postgresExpression(path))
    ) {
      return name;
    }
  }
  return undefined;
}

/** An expression without parentheses, `::text` casts and white space. */
const bare = (expression: string) => expression.replace(/::text\b|[()\s]/g, '');

// Cursor names, unique within a process (a caller's transaction may verify twice).
let cursors = 0;

type EventRow = Pick<Selectable<AuditEventTable>, (typeof TUPLE_COLUMNS)[number]>;

function toTuple(r: EventRow): EventTuple {
  return [r.leaf_index, r.canonical, r.leaf_hash];
}

function kyselySnapshot(db: Kysely<Database>, tenantId: string): AuditSnapshot {
  const postgres = db.getExecutor().adapter instanceof PostgresAdapter;
  return {
    readAhead: postgres,
    async head() {
      const row = await db
        .selectFrom('audit_tree')
        .select(['frontier', 'pruned_size'])
        .where('tenant_id', '=', tenantId)
        .executeTakeFirst();
      return row && { frontier: row.frontier, prunedSize: Number(row.pruned_size) };
    },
    async checkpoints() {
      const rows = await db
        .selectFrom('audit_checkpoints')
        .select(['tenant_id', 'tree_size', 'root_hash', 'signed_at', 'key_id', 'signature'])
        .where('tenant_id', '=', tenantId)
        .orderBy('tree_size')
        .execute();
      return rows.map((r) =>
        toCheckpoint([r.tenant_id, r.tree_size, r.root_hash, r.signed_at, r.key_id, r.signature]),
      );
    },
    events(after) {
      const query = db
        .selectFrom('audit_events')
        .select(TUPLE_COLUMNS)
        .where('tenant_id', '=', tenantId)
        .orderBy('leaf_index');
      if (!postgres) {
        let last = after;
        return {
          async next(limit) {
            const rows = await query.where('leaf_index', '>', last).limit(limit).execute();
            if (rows.length > 0) last = Number(rows.at(-1)!.leaf_index);
            return rows.map(toTuple);
          },
        };
      }
      // One cursor instead of a query per page: planned once, for the first rows fast (an index
      // scan in leaf order), whatever the table's statistics say.
      const cursor = sql.id(`audit_verify_${++cursors}`);
      let opened: Promise<unknown> | undefined;
      return {
        async next(limit) {
          opened ??=
            sql`declare ${cursor} no scroll cursor for ${query.where('leaf_index', '>', after)}`.execute(
              db,
            );
          await opened;
          const result =
            await sql<EventRow>`fetch forward ${sql.lit(limit)} from ${cursor}`.execute(db);
          if (result.rows.length < limit) await sql`close ${cursor}`.execute(db);
          return result.rows.map(toTuple);
        },
      };
    },
    async keptLeafHashes(from, to, limit) {
      const rows = await db
        .selectFrom('audit_nodes')
        .select(['idx', 'hash'])
        .where('tenant_id', '=', tenantId)
        .where('level', '=', 0)
        .where('idx', '>=', from)
        .where('idx', '<', to)
        .orderBy('idx')
        .limit(limit)
        .execute();
      return rows.map((r): IndexedHash => [r.idx, r.hash]);
    },
    async nodes(level, from, to) {
      const rows = await db
        .selectFrom('audit_nodes')
        .select(['idx', 'hash'])
        .where('tenant_id', '=', tenantId)
        .where('level', '=', level)
        .where('idx', '>=', from)
        .where('idx', '<=', to)
        .orderBy('idx')
        .execute();
      return rows.map((r): IndexedHash => [r.idx, r.hash]);
    },
    async columnsDetached() {
      if (!postgres) {
        const { rows } = await sql<{
          sql: string;
        }>`select sql from sqlite_master where type = 'table' and name = 'audit_events'`.execute(
          db,
        );
        return sqliteColumnsDetached(rows[0]?.sql);
      }
      const { rows } = await sql<{
        column_name: string;
        is_generated: string;
        generation_expression: string | null;
      }>`select column_name, is_generated, generation_expression from information_schema.columns
        where table_schema = current_schema() and table_name = 'audit_events'`.execute(db);
      return postgresColumnsDetached(rows);
    },
  };
}

function toCheckpoint([tenantId, treeSize, rootHash, timestamp, keyId, signature]: [
  string,
  number | string,
  string,
  string,
  string,
  string,
]): SignedCheckpoint {
  return { tenantId, treeSize: Number(treeSize), rootHash, timestamp, keyId, signature };
}
