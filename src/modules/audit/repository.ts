import { CompiledQuery, type Kysely, type Transaction } from 'kysely';
import type { Database } from '../../db/schema.ts';
import type { Dialect, SyncWriter } from '../../db/database.ts';
import { prepared } from '../../db/prepared.ts';
import { WRITTEN_COLUMNS } from './event.ts';
import {
  CompactTree,
  hashFromHex,
  type FrontierState,
  type NodeId,
  type SignedCheckpoint,
} from '../../core/audit/index.ts';

export type Db = Kysely<Database> | Transaction<Database>;

export interface TreeHead {
  tree: CompactTree;
  checkpointSize: number;
  checkpointAt: string | null;
}

const EMPTY_FRONTIER = JSON.stringify(new CompactTree().toState());

/** The tree head row as stored (bigints come back as strings from PostgreSQL). */
export interface HeadRow {
  tree_size: number | string;
  frontier: string;
  checkpoint_size: number | string;
  checkpoint_at: string | null;
}

/** What one append writes: its event row, the subtree hashes it completes, the new head. */
export interface LeafWrite {
  tenantId: string;
  /** The event's values in `WRITTEN_COLUMNS` order. */
  event: readonly unknown[];
  nodes: readonly { level: number; index: number; hash: string }[];
  size: number;
  /** The new frontier (`FrontierState` JSON). */
  frontier: string;
  /** Set when the append signed a checkpoint of the new head. */
  checkpoint?: { size: number; at: string } | undefined;
}

const HEAD_COLUMNS = 'tree_size, frontier, checkpoint_size, checkpoint_at';
const INSERT_EVENT = `insert into audit_events (${WRITTEN_COLUMNS.join(', ')}) values (${WRITTEN_COLUMNS.map(() => '?').join(', ')})`;
const SQLITE = {
  head: `select ${HEAD_COLUMNS} from audit_tree where tenant_id = ?`,
  createHead: `insert into audit_tree (tenant_id, tree_size, frontier, checkpoint_size, checkpoint_at) values (?, 0, ?, 0, null) on conflict (tenant_id) do nothing`,
  insertEvent: INSERT_EVENT,
  insertNode: 'insert into audit_nodes (tenant_id, level, idx, hash) values (?, ?, ?, ?)',
  updateHead: 'update audit_tree set tree_size = ?, frontier = ? where tenant_id = ?',
  updateHeadSigned:
    'update audit_tree set tree_size = ?, frontier = ?, checkpoint_size = ?, checkpoint_at = ? where tenant_id = ?',
};
// PostgreSQL: the event, its subtree hashes and the new head in one statement (one round trip).
const E = WRITTEN_COLUMNS.length;
const POSTGRES = {
  head: `select ${HEAD_COLUMNS} from audit_tree where tenant_id = $1 for update`,
  createHead: `insert into audit_tree (tenant_id, tree_size, frontier, checkpoint_size, checkpoint_at) values ($1, 0, $2, 0, null) on conflict (tenant_id) do nothing`,
  writeLeaf: `with event as (
    insert into audit_events (${WRITTEN_COLUMNS.join(', ')})
    values (${WRITTEN_COLUMNS.map((_, i) => `$${i + 1}`).join(', ')})
  ), nodes as (
    insert into audit_nodes (tenant_id, level, idx, hash)
    select $1, n.level, n.idx, n.hash
    from unnest($${E + 1}::integer[], $${E + 2}::bigint[], $${E + 3}::text[]) as n (level, idx, hash)
  )
  update audit_tree
  set tree_size = $${E + 4}, frontier = $${E + 5},
    checkpoint_size = coalesce($${E + 6}::bigint, checkpoint_size),
    checkpoint_at = coalesce($${E + 7}::text, checkpoint_at)
  where tenant_id = $1`,
};

/**
 * The statements of an append, run in the caller's transaction with SQL written once (no query
 * building per call). SQLite: synchronously on the connection when `writer` is given (no promise
 * and executor per statement), else through Kysely; the one connection serialises writers.
 * PostgreSQL: the head row is read `FOR UPDATE` (appends of one tenant serialise across
 * processes) and the event, its subtree hashes and the new head are written in one statement.
 */
export function appendStatements(dialect: Dialect, writer?: SyncWriter) {
  const pg = dialect === 'postgres';
  const sql = pg ? POSTGRES : SQLITE;
  const sync = pg ? undefined : writer;
  async function exec(trx: Db, text: string, parameters: readonly unknown[]): Promise<unknown[]> {
    if (sync) return sync.execute(text, parameters);
    return (await trx.executeQuery(CompiledQuery.raw(text, [...parameters]))).rows;
  }

  return {
    /** Locks the tenant's head row for the rest of `trx` (creating it at the first event). */
    async lockHead(trx: Db, tenantId: string): Promise<HeadRow> {
      // The synchronous statements join whatever transaction the connection is in: there must be
      // one (the change's), or the event would commit apart from the change it records.
      if (sync && !sync.inTransaction) {
        throw new TypeError('an audit append must run in the transaction of what it records');
      }
      let [row] = (await exec(trx, sql.head, [tenantId])) as HeadRow[];
      if (row === undefined) {
        // First event of the tenant: two writers may race here; the loser waits, then locks.
        await exec(trx, sql.createHead, [tenantId, EMPTY_FRONTIER]);
        [row] = (await exec(trx, sql.head, [tenantId])) as HeadRow[];
        if (row === undefined) throw new TypeError('audit_tree row vanished');
      }
      return row;
    },

    async writeLeaf(trx: Db, leaf: LeafWrite): Promise<void> {
      const { tenantId, nodes, checkpoint } = leaf;
      if (pg) {
        await exec(trx, POSTGRES.writeLeaf, [
          ...leaf.event,
          nodes.map((n) => n.level),
          nodes.map((n) => n.index),
          nodes.map((n) => n.hash),
          leaf.size,
          leaf.frontier,
          checkpoint?.size ?? null,
          checkpoint?.at ?? null,
        ]);
        return;
      }
      await exec(trx, SQLITE.insertEvent, leaf.event);
      for (const n of nodes)
        await exec(trx, SQLITE.insertNode, [tenantId, n.level, n.index, n.hash]);
      await (checkpoint
        ? exec(trx, SQLITE.updateHeadSigned, [
            leaf.size,
            leaf.frontier,
            checkpoint.size,
            checkpoint.at,
            tenantId,
          ])
        : exec(trx, SQLITE.updateHead, [leaf.size, leaf.frontier, tenantId]));
    },
  };
}

/**
 * Locks the tenant's tree row for the rest of `trx` (creating it at the first event) and returns
 * the tree head. PostgreSQL: `SELECT ... FOR UPDATE`, so appends of one tenant are serialised
 * across processes; SQLite serialises every write transaction by itself.
 */
// Compiled once: appends run these on every audited change (Kysely's build and compile per call
// was a large share of an append).
const selectTree = prepared<
  Database,
  {
    tree_size: number | string;
    frontier: string;
    checkpoint_size: number | string;
    checkpoint_at: string | null;
  },
  'tenantId'
>((db, p) =>
  db
    .selectFrom('audit_tree')
    .select(['tree_size', 'frontier', 'checkpoint_size', 'checkpoint_at'])
    .where('tenant_id', '=', p('tenantId')),
);
const selectTreeForUpdate = prepared<
  Database,
  {
    tree_size: number | string;
    frontier: string;
    checkpoint_size: number | string;
    checkpoint_at: string | null;
  },
  'tenantId'
>((db, p) =>
  db
    .selectFrom('audit_tree')
    .select(['tree_size', 'frontier', 'checkpoint_size', 'checkpoint_at'])
    .where('tenant_id', '=', p('tenantId'))
    .forUpdate(),
);

export async function lockTree(trx: Db, dialect: Dialect, tenantId: string): Promise<TreeHead> {
  const select = async () =>
    (await (dialect === 'postgres' ? selectTreeForUpdate : selectTree).run(trx, { tenantId }))[0];
  let row = await select();
  if (row === undefined) {
    // First event of the tenant: two writers may race here; the loser waits, then locks.
    await trx
      .insertInto('audit_tree')
      .values({
        tenant_id: tenantId,
        tree_size: 0,
        frontier: EMPTY_FRONTIER,
        checkpoint_size: 0,
        checkpoint_at: null,
      })
      .onConflict((oc) => oc.column('tenant_id').doNothing())
      .execute();
    row = await select();
    if (row === undefined) throw new TypeError('audit_tree row vanished');
  }
  const tree = CompactTree.fromState(JSON.parse(row.frontier) as FrontierState);
  if (tree.size !== Number(row.tree_size)) {
    throw new TypeError('audit_tree frontier and tree_size disagree');
  }
  return {
    tree,
    checkpointSize: Number(row.checkpoint_size),
    checkpointAt: row.checkpoint_at,
  };
}

/** Where the retained events start (0 unless retention pruned the oldest). */
export async function prunedSize(db: Db, tenantId: string): Promise<number> {
  const row = await db
    .selectFrom('audit_tree')
    .select('pruned_size')
    .where('tenant_id', '=', tenantId)
    .executeTakeFirst();
  return row ? Number(row.pruned_size) : 0;
}

/** Reads the tree head without locking (for proofs and checkpoints of committed state). */
export async function readTree(db: Db, tenantId: string): Promise<CompactTree> {
  const row = await db
    .selectFrom('audit_tree')
    .select(['frontier'])
    .where('tenant_id', '=', tenantId)
    .executeTakeFirst();
  return row ? CompactTree.fromState(JSON.parse(row.frontier) as FrontierState) : new CompactTree();
}

const updateTree = prepared<Database, never, 'tenantId' | 'size' | 'frontier'>((db, p) =>
  db
    .updateTable('audit_tree')
    .set({ tree_size: p('size') as unknown as number, frontier: p('frontier') })
    .where('tenant_id', '=', p('tenantId')),
);

export async function saveTree(
  trx: Db,
  tenantId: string,
  tree: CompactTree,
  checkpoint?: { size: number; at: string },
): Promise<void> {
  const frontier = JSON.stringify(tree.toState());
  if (checkpoint === undefined) {
    await updateTree.run(trx, { tenantId, size: tree.size, frontier });
    return;
  }
  await trx
    .updateTable('audit_tree')
    .set({
      tree_size: tree.size,
      frontier,
      checkpoint_size: checkpoint.size,
      checkpoint_at: checkpoint.at,
    })
    .where('tenant_id', '=', tenantId)
    .execute();
}

/**
 * Hashes of the given perfect subtrees, in order, in at most two queries: leaves from
 * `audit_events`, higher levels from `audit_nodes`. Missing ones come back `undefined`.
 */
export async function subtreeHashes(
  db: Db,
  tenantId: string,
  nodes: readonly NodeId[],
): Promise<(Uint8Array | undefined)[]> {
  const leafIndexes = nodes.filter((n) => n.level === 0).map((n) => n.index);
  const inner = nodes.filter((n) => n.level > 0);
  const leaves = new Map<number, string>();
  const found = new Map<string, string>();
  if (leafIndexes.length > 0) {
    const rows = await db
      .selectFrom('audit_events')
      .select(['leaf_index', 'leaf_hash'])
      .where('tenant_id', '=', tenantId)
      .where('leaf_index', 'in', leafIndexes)
      .execute();
    for (const r of rows) leaves.set(Number(r.leaf_index), r.leaf_hash);
    // Leaves whose events retention pruned keep their hash in audit_nodes at level 0.
    for (const index of leafIndexes) {
      if (!leaves.has(index)) inner.push({ level: 0, index });
    }
  }
  if (inner.length > 0) {
    // One primary-key lookup per node, in one statement (an OR of pairs scans the tenant).
    const lookup = (n: NodeId) =>
      db
        .selectFrom('audit_nodes')
        .select(['level', 'idx', 'hash'])
        .where('tenant_id', '=', tenantId)
        .where('level', '=', n.level)
        .where('idx', '=', n.index);
    const [first, ...rest] = inner;
    let query = lookup(first!);
    for (const n of rest) query = query.unionAll(lookup(n));
    const rows = await query.execute();
    for (const r of rows) found.set(`${r.level}/${Number(r.idx)}`, r.hash);
  }
  return nodes.map((n) => {
    const hex =
      (n.level === 0 ? leaves.get(n.index) : undefined) ?? found.get(`${n.level}/${n.index}`);
    return hex === undefined ? undefined : hashFromHex(hex);
  });
}

export async function insertCheckpoint(trx: Db, cp: SignedCheckpoint): Promise<void> {
  await trx
    .insertInto('audit_checkpoints')
    .values({
      tenant_id: cp.tenantId,
      tree_size: cp.treeSize,
      root_hash: cp.rootHash,
      signed_at: cp.timestamp,
      key_id: cp.keyId,
      signature: cp.signature,
    })
    .onConflict((oc) => oc.columns(['tenant_id', 'tree_size', 'key_id']).doNothing())
    .execute();
}

type CheckpointRow = {
  tenant_id: string;
  tree_size: number | string;
  root_hash: string;
  signed_at: string;
  key_id: string;
  signature: string;
};

function toCheckpoint(r: CheckpointRow): SignedCheckpoint {
  return {
    tenantId: r.tenant_id,
    treeSize: Number(r.tree_size),
    rootHash: r.root_hash,
    timestamp: r.signed_at,
    keyId: r.key_id,
    signature: r.signature,
  };
}

const CHECKPOINT_COLUMNS = [
  'tenant_id',
  'tree_size',
  'root_hash',
  'signed_at',
  'key_id',
  'signature',
] as const;

export async function checkpointAt(
  db: Db,
  tenantId: string,
  treeSize: number,
  keyId: string,
): Promise<SignedCheckpoint | undefined> {
  const row = await db
    .selectFrom('audit_checkpoints')
    .select(CHECKPOINT_COLUMNS)
    .where('tenant_id', '=', tenantId)
    .where('tree_size', '=', treeSize)
    .where('key_id', '=', keyId)
    .executeTakeFirst();
  return row ? toCheckpoint(row) : undefined;
}

export async function allCheckpoints(db: Db, tenantId: string): Promise<SignedCheckpoint[]> {
  const rows = await db
    .selectFrom('audit_checkpoints')
    .select(CHECKPOINT_COLUMNS)
    .where('tenant_id', '=', tenantId)
    .orderBy('tree_size')
    .execute();
  return rows.map(toCheckpoint);
}

export async function registerPublicKey(
  trx: Db,
  key: { keyId: string; publicKeyPem: string },
  now: string,
): Promise<void> {
  await trx
    .insertInto('audit_signing_keys')
    .values({ key_id: key.keyId, public_key: key.publicKeyPem, created_at: now })
    .onConflict((oc) => oc.column('key_id').doNothing())
    .execute();
}
