import { SqliteAdapter, sql, type Insertable, type Kysely, type Transaction } from 'kysely';
import { eachRowQuery } from '../../db/database.ts';
import type { CompanyTable, ContactTable, Database } from '../../db/schema.ts';
import { newId } from '../../ids.ts';

/**
 * The queries of a contact import. Every function takes the connection it must use: inside an
 * import that is the transaction, never the pool (SQLite has one connection; asking the pool
 * from inside a transaction would wait for ever).
 */
export type Db = Kysely<Database> | Transaction<Database>;
export type NewContact = Insertable<ContactTable>;

/** Rows per INSERT: 500 x 20 columns stays under both databases' bound-parameter limits. */
export const BATCH_SIZE = 500;

/**
 * Rows an import reads before it seals and writes them (import.ts): best-effort, one key-store
 * transaction for their subject keys (the key store commits durably: an fsync each, ~8 ms on a
 * quiet disk, far more on a busy one) and one data transaction. 500 spent a third of a
 * 100,000-row import waiting on those fsyncs.
 */
export const IMPORT_BATCH_ROWS = 2000;

/** An existing contact found by its e-mail: whoever owns it (the caller checks the scope). */
export interface ExistingContact {
  id: string;
  version: number;
  ownerId: string | null;
}

/**
 * Existing contacts of the whole tenant (e-mail is unique tenant-wide, so out-of-scope ones are
 * found too) by the untruncated keyed hash of their e-mail (`email_eq`, exact: no candidates to
 * confirm): hash -> id, version and owner. SQLite: one statement whatever the number of hashes,
 * the hashes as ONE parameter (a JSON array read by `json_each`): IN lists of 500 placeholders
 * cost Kysely a compilation and SQLite a parse each, for a lookup that finds nothing in a fresh
 * import. PostgreSQL: IN lists of BATCH_SIZE (its planner keeps the index scan on them).
 */
export async function findContactsByEmailHash(
  db: Db,
  tenantId: string,
  hashes: readonly string[],
): Promise<Map<string, ExistingContact>> {
  const found = new Map<string, ExistingContact>();
  if (hashes.length === 0) return found;
  const query = db
    .selectFrom('contacts')
    .select(['id', 'version', 'email_eq', 'owner_id'])
    .where('tenant_id', '=', tenantId);
  const rows =
    db.getExecutor().adapter instanceof SqliteAdapter
      ? await query
          .where((eb) =>
            eb(
              eb.ref('email_eq'),
              'in',
              sql<string>`(select value from json_each(${JSON.stringify(hashes)}))`,
            ),
          )
          .execute()
      : [];
  if (!(db.getExecutor().adapter instanceof SqliteAdapter)) {
    for (let i = 0; i < hashes.length; i += BATCH_SIZE) {
      rows.push(
        ...(await query.where('email_eq', 'in', hashes.slice(i, i + BATCH_SIZE)).execute()),
      );
    }
  }
  for (const r of rows) {
    if (r.email_eq) {
      found.set(r.email_eq, { id: r.id, version: Number(r.version), ownerId: r.owner_id });
    }
  }
  return found;
}

/**
 * Company ids of the tenant by exact name, among the companies `visible` accepts (by owner: the
 * caller's read scope); names not found are created when `create` is true (several companies
 * with one name: the oldest visible one is used). A name only out-of-scope companies bear is
 * treated like an unknown one.
 */
export async function resolveCompanies(
  db: Db,
  tenant: { tenantId: string; ownerId: string | null; now: string },
  names: readonly string[],
  create: boolean,
  visible: (ownerId: string | null) => Promise<boolean> = async () => true,
): Promise<Map<string, string>> {
  const ids = new Map<string, string>();
  if (names.length === 0) return ids;
  for (let i = 0; i < names.length; i += BATCH_SIZE) {
    const rows = await db
      .selectFrom('companies')
      .select(['id', 'name', 'owner_id'])
      .where('tenant_id', '=', tenant.tenantId)
      .where('name', 'in', names.slice(i, i + BATCH_SIZE))
      .orderBy('created_at')
      .orderBy('id')
      .execute();
    for (const r of rows) {
      if (!ids.has(r.name) && (await visible(r.owner_id))) ids.set(r.name, r.id);
    }
  }
  const missing = names.filter((n) => !ids.has(n));
  if (!create || missing.length === 0) return ids;
  const rows: Insertable<CompanyTable>[] = missing.map((name) => ({
    id: newId(),
    tenant_id: tenant.tenantId,
    owner_id: tenant.ownerId,
    created_at: tenant.now,
    updated_at: tenant.now,
    version: 1,
    name,
  }));
  for (let i = 0; i < rows.length; i += BATCH_SIZE) {
    await db
      .insertInto('companies')
      .values(rows.slice(i, i + BATCH_SIZE))
      .execute();
  }
  for (const r of rows) ids.set(r.name, r.id);
  return ids;
}

/** Every column of a new contact, in the order of the SQLite each-row INSERT. */
const CONTACT_COLUMNS = [
  'id',
  'tenant_id',
  'owner_id',
  'created_at',
  'updated_at',
  'version',
  'first_name',
  'last_name',
  'email',
  'email_bidx',
  'email_eq',
  'phone',
  'phone_bidx',
  'title',
  'company_id',
  'date_of_birth',
  'national_id',
  'national_id_bidx',
  'address',
  'notes',
] as const satisfies readonly (keyof NewContact)[];

const INSERT_CONTACT = `insert into "contacts" (${CONTACT_COLUMNS.map((c) => `"${c}"`).join(', ')}) values (${CONTACT_COLUMNS.map(() => '?').join(', ')})`;

/**
 * Inserts new contacts. SQLite: one cached single-row statement run for every row, in one driver
 * call (`eachRowQuery`; a 500-row VALUES list cost SQLite more than the rows themselves).
 * PostgreSQL: one multi-row INSERT per BATCH_SIZE rows (one round trip each).
 */
export async function insertContacts(db: Db, rows: readonly NewContact[]): Promise<void> {
  if (rows.length === 0) return;
  if (db.getExecutor().adapter instanceof SqliteAdapter) {
    const width = CONTACT_COLUMNS.length;
    const parameters = new Array<unknown>(rows.length * width);
    let at = 0;
    for (const row of rows) {
      for (const column of CONTACT_COLUMNS) parameters[at++] = row[column] ?? null;
    }
    await db.executeQuery(eachRowQuery(INSERT_CONTACT, width, parameters));
    return;
  }
  for (let i = 0; i < rows.length; i += BATCH_SIZE) {
    await db
      .insertInto('contacts')
      .values(rows.slice(i, i + BATCH_SIZE))
      .execute();
  }
}

/** The id and the given columns of one contact of the tenant (stored values, still sealed). */
export async function readContactColumns(
  db: Db,
  tenantId: string,
  id: string,
  columns: readonly string[],
): Promise<Record<string, unknown> | undefined> {
  return (db as unknown as Kysely<Record<string, Record<string, unknown>>>)
    .selectFrom('contacts')
    .select(['id', ...columns].map((c) => sql.ref(c).as(c)))
    .where(sql.ref('tenant_id'), '=', tenantId)
    .where(sql.ref('id'), '=', id)
    .executeTakeFirst();
}

/** Writes the given columns over an existing contact of the tenant and bumps its version. */
export async function mergeContact(
  db: Db,
  tenantId: string,
  id: string,
  columns: Partial<NewContact>,
  now: string,
): Promise<void> {
  await db
    .updateTable('contacts')
    .set((eb) => ({ ...columns, updated_at: now, version: eb('version', '+', 1) }))
    .where('tenant_id', '=', tenantId)
    .where('id', '=', id)
    .execute();
}
