import type { Kysely, Transaction } from 'kysely';
import type { Database, KeyReencryptionTable } from '../../db/schema.ts';
import type { ReencryptCursor, ValueCensus } from './reencrypt.ts';

/**
 * The durable record of a tenant's re-encryption run (table `key_reencryption`, migration 0017):
 * which version it moves values to, how far it got (phase, cursor, counters, census), and which
 * process holds it (the lease). Every write of a batch is conditional on still holding the lease,
 * so two processes never work on one tenant at once, on SQLite or PostgreSQL; a process that dies
 * holding it blocks others until `lease_until`.
 */

type Db = Kysely<Database> | Transaction<Database>;
export type ReencryptionRow = KeyReencryptionTable;

/** The census as stored (JSON): versions as object keys. */
interface StoredCensus {
  byVersion: Record<string, number>;
  subjectValues: number;
  clear: number;
  damaged: number;
}

export function encodeCensus(census: ValueCensus): string {
  const stored: StoredCensus = {
    byVersion: Object.fromEntries([...census.byVersion].map(([v, n]) => [String(v), n])),
    subjectValues: census.subjectValues,
    clear: census.clear,
    damaged: census.damaged,
  };
  return JSON.stringify(stored);
}

export function decodeCensus(text: string): ValueCensus {
  const stored = JSON.parse(text) as Partial<StoredCensus>;
  return {
    byVersion: new Map(Object.entries(stored.byVersion ?? {}).map(([v, n]) => [Number(v), n])),
    subjectValues: stored.subjectValues ?? 0,
    clear: stored.clear ?? 0,
    damaged: stored.damaged ?? 0,
  };
}

const COLUMNS = [
  'tenant_id',
  'target_version',
  'state',
  'phase',
  'cursor_table',
  'cursor_id',
  'rewrapped',
  'reencrypted',
  'encrypted_clear',
  'failed',
  'census',
  'census_at',
  'started_at',
  'last_batch_at',
  'finished_at',
  'lease_owner',
  'lease_until',
] as const;

export async function readReencryption(
  db: Db,
  tenantId: string,
): Promise<ReencryptionRow | undefined> {
  return db
    .selectFrom('key_reencryption')
    .select(COLUMNS)
    .where('tenant_id', '=', tenantId)
    .executeTakeFirst();
}

/** Every tenant's row (one query: the job's look for pending work). */
export async function readReencryptions(db: Db): Promise<Map<string, ReencryptionRow>> {
  const rows = await db.selectFrom('key_reencryption').select(COLUMNS).execute();
  return new Map(rows.map((r) => [r.tenant_id, r]));
}

/**
 * Takes (or renews) the tenant's lease for `owner` until `until`, creating the row if absent (a
 * placeholder: target 0, done). False when another owner's lease has not expired at `now`.
 */
export async function claimLease(
  db: Db,
  tenantId: string,
  owner: string,
  now: string,
  until: string,
): Promise<boolean> {
  await db
    .insertInto('key_reencryption')
    .values({
      tenant_id: tenantId,
      target_version: 0,
      state: 'done',
      phase: 'rewrap',
      cursor_table: null,
      cursor_id: null,
      rewrapped: 0,
      reencrypted: 0,
      encrypted_clear: 0,
      failed: 0,
      census: encodeCensus({ byVersion: new Map(), subjectValues: 0, clear: 0, damaged: 0 }),
      census_at: now,
      started_at: now,
      last_batch_at: null,
      finished_at: null,
      lease_owner: null,
      lease_until: null,
    })
    .onConflict((oc) => oc.column('tenant_id').doNothing())
    .execute();
  // One conditional UPDATE: atomic on both databases, so of two claimants one wins.
  const result = await db
    .updateTable('key_reencryption')
    .set({ lease_owner: owner, lease_until: until })
    .where('tenant_id', '=', tenantId)
    .where((eb) =>
      eb.or([
        eb('lease_owner', 'is', null),
        eb('lease_owner', '=', owner),
        eb('lease_until', '<', now),
      ]),
    )
    .executeTakeFirst();
  return Number(result.numUpdatedRows) === 1;
}

/** The lease was taken over by another process (this one was too slow to renew it). */
export class LeaseLost extends Error {
  override readonly name = 'LeaseLost';
}

/**
 * Updates the run's row if `owner` still holds the lease (extending it to `until`); throws
 * `LeaseLost` otherwise.
 */
export async function saveRun(
  db: Db,
  tenantId: string,
  owner: string,
  changes: Partial<Omit<ReencryptionRow, 'tenant_id' | 'lease_owner'>>,
): Promise<void> {
  const result = await db
    .updateTable('key_reencryption')
    .set(changes)
    .where('tenant_id', '=', tenantId)
    .where('lease_owner', '=', owner)
    .executeTakeFirst();
  if (Number(result.numUpdatedRows) !== 1) {
    throw new LeaseLost(`re-encryption lease of tenant ${tenantId} lost by ${owner}`);
  }
}

/** Gives the lease up (a stop, the end of a run); nothing if another owner holds it now. */
export async function releaseLease(db: Db, tenantId: string, owner: string): Promise<void> {
  await db
    .updateTable('key_reencryption')
    .set({ lease_owner: null, lease_until: null })
    .where('tenant_id', '=', tenantId)
    .where('lease_owner', '=', owner)
    .execute();
}

export const cursorOf = (row: ReencryptionRow): ReencryptCursor | undefined =>
  row.cursor_table === null || row.cursor_id === null
    ? undefined
    : { table: row.cursor_table, id: row.cursor_id };
