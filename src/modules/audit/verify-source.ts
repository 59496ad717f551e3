import SQLite from 'better-sqlite3';
import { PostgresAdapter, sql, type Kysely, type Selectable } from 'kysely';
import type { SignedCheckpoint } from '../../core/audit/index.ts';
import { sqliteFileOf } from '../../db/database.ts';
import type { AuditEventTable, Database } from '../../db/schema.ts';

/**
 * An event row's columns, in this order (the tenant is the one the snapshot reads): arrays, not
 * objects, because verification reads every row of the log.
 */
export type EventTuple = [
  leafIndex: number | string,
  canonical: string,
  leafHash: string,
  id: string,
  type: string,
  occurredAt: string,
  actorKind: string,
  actorId: string | null,
  ip: string | null,
  userAgent: string | null,
  requestId: string | null,
  targetType: string | null,
  targetId: string | null,
  outcome: string,
  reason: string | null,
  fields: string,
  breakGlassId: string | null,
];

const TUPLE_COLUMNS = [
  'leaf_index',
  'canonical',
  'leaf_hash',
  'id',
  'type',
  'occurred_at',
  'actor_kind',
  'actor_id',
  'ip',
  'user_agent',
  'request_id',
  'target_type',
  'target_id',
  'outcome',
  'reason',
  'fields',
  'break_glass_id',
] as const;

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
  };
}

// Cursor names, unique within a process (a caller's transaction may verify twice).
let cursors = 0;

type EventRow = Pick<Selectable<AuditEventTable>, (typeof TUPLE_COLUMNS)[number]>;

function toTuple(r: EventRow): EventTuple {
  return [
    r.leaf_index,
    r.canonical,
    r.leaf_hash,
    r.id,
    r.type,
    r.occurred_at,
    r.actor_kind,
    r.actor_id,
    r.ip,
    r.user_agent,
    r.request_id,
    r.target_type,
    r.target_id,
    r.outcome,
    r.reason,
    r.fields,
    r.break_glass_id,
  ];
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
