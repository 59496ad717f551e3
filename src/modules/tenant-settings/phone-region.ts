import { PostgresAdapter, sql, type Kysely } from 'kysely';
import { isPhoneRegion, type CountryCode } from '../../core/crypto/index.ts';
import type { Database } from '../../db/schema.ts';

/**
 * The tenant's phone region: the region its national phone numbers ("(415) 555-2671",
 * "0171 1234567") are read in when they are indexed and when a filter value is normalised.
 *
 * The phone blind index depends on it, so a write that stores a phone index and a change of the
 * region (which re-indexes the tenant's phones) must not interleave: a contact written with the
 * old region after the re-index read the rows would keep an index nobody can find. SQLite runs
 * one transaction at a time on the connection Kysely writes through. On PostgreSQL, a write
 * reads the region under a shared transaction-level advisory lock of the tenant and a change
 * takes it exclusively, so the change waits for the writes in progress and later writes see the
 * new region.
 */

type Db = Kysely<Database>;

/** Advisory lock key space of this lock (the first of pg_advisory_xact_lock's two int4 keys). */
const LOCK_CLASS = 0x70686f6e; // "phon"

async function advisoryLock(trx: Db, tenantId: string, mode: 'shared' | 'exclusive') {
  if (!(trx.getExecutor().adapter instanceof PostgresAdapter)) return;
  if (!trx.isTransaction) throw new TypeError('the phone region lock needs a transaction');
  await (
    mode === 'shared'
      ? sql`select pg_advisory_xact_lock_shared(${LOCK_CLASS}, hashtext(${tenantId}))`
      : sql`select pg_advisory_xact_lock(${LOCK_CLASS}, hashtext(${tenantId}))`
  ).execute(trx);
}

/**
 * The tenant's phone region (null: none, only international numbers parse). In a transaction,
 * the region stays the one read until commit (see above); outside one it is only a reading.
 */
export async function readPhoneRegion(conn: Db, tenantId: string): Promise<CountryCode | null> {
  if (conn.isTransaction) await advisoryLock(conn, tenantId, 'shared');
  const row = await conn
    .selectFrom('tenant_settings')
    .select('phone_region')
    .where('tenant_id', '=', tenantId)
    .executeTakeFirst();
  const region = row?.phone_region ?? null;
  // The column's check admits any two upper-case letters; a region libphonenumber does not know
  // (none such is written by Custos) reads no national number, as no region does.
  return region !== null && isPhoneRegion(region) ? region : null;
}

/**
 * Holds off every write of a phone index of the tenant until `trx` ends: called by a change of
 * the region before it writes the region and re-indexes.
 */
export async function lockPhoneRegion(trx: Db, tenantId: string): Promise<void> {
  await advisoryLock(trx, tenantId, 'exclusive');
}
