import { Readable } from 'node:stream';
import type { Kysely } from 'kysely';
import { stringify } from 'csv-stringify/sync';
import type { Database } from '../../db/schema.ts';
import { authorize, type Actor } from '../../core/policy/index.ts';
import { neutralizeCell } from './csv-escape.ts';
import type { FieldCrypto } from '../records/field-crypto.ts';

/**
 * Export columns. Field names are the API's, which the importer recognises, so an export reads
 * back into any tenant (`company` by name; id, owner and timestamps are listed as ignored).
 */
export const EXPORT_HEADER = [
  'id',
  'firstName',
  'lastName',
  'email',
  'phone',
  'title',
  'company',
  'dateOfBirth',
  'nationalId',
  'address',
  'notes',
  'ownerId',
  'createdAt',
  'updatedAt',
] as const;

/** Rows read per query: bounded memory whatever the size of the tenant. */
export const EXPORT_PAGE = 1000;

export interface ExportDeps {
  db: Kysely<Database>;
  /** The contacts' field crypto: rows are opened page by page. */
  crypto: FieldCrypto;
}

async function page(db: Kysely<Database>, tenantId: string, after?: { at: string; id: string }) {
  let query = db
    .selectFrom('contacts as c')
    .leftJoin('companies as co', (j) =>
      j.onRef('co.id', '=', 'c.company_id').onRef('co.tenant_id', '=', 'c.tenant_id'),
    )
    .select([
      'c.id',
      'c.first_name',
      'c.last_name',
      'c.email',
      'c.phone',
      'c.title',
      'co.name as company',
      'c.date_of_birth',
      'c.national_id',
      'c.address',
      'c.notes',
      'c.owner_id',
      'c.created_at',
      'c.updated_at',
    ])
    .where('c.tenant_id', '=', tenantId);
  if (after) {
    const { at, id } = after;
    query = query.where((eb) =>
      eb.or([
        eb('c.created_at', '>', at),
        eb.and([eb('c.created_at', '=', at), eb('c.id', '>', id)]),
      ]),
    );
  }
  return query.orderBy('c.created_at').orderBy('c.id').limit(EXPORT_PAGE).execute();
}

const line = (cells: readonly (string | null)[]) =>
  stringify([cells.map((c) => (c === null ? '' : neutralizeCell(c)))], {
    record_delimiter: 'windows',
  });

async function* csvChunks(deps: ExportDeps, tenantId: string): AsyncGenerator<string> {
  // A BOM so that Excel opens the file as UTF-8 (the importer strips it).
  yield `\uFEFF${line(EXPORT_HEADER)}`;
  let after: { at: string; id: string } | undefined;
  for (;;) {
    const rows = await deps.crypto.open(tenantId, await page(deps.db, tenantId, after));
    if (rows.length === 0) return;
    yield rows
      .map((r) =>
        line([
          r.id,
          r.first_name,
          r.last_name,
          r.email,
          r.phone,
          r.title,
          r.company,
          r.date_of_birth,
          r.national_id,
          r.address,
          r.notes,
          r.owner_id,
          r.created_at,
          r.updated_at,
        ]),
      )
      .join('');
    if (rows.length < EXPORT_PAGE) return;
    const last = rows[rows.length - 1]!;
    after = { at: last.created_at, id: last.id };
  }
}

/**
 * The tenant's contacts as CSV (UTF-8 with BOM, CRLF), read page by page while the stream is
 * consumed. Every cell a spreadsheet would evaluate as a formula is neutralised with a leading
 * `'`. Authorises before the first byte, so a refusal is a proper error, not a cut stream.
 */
export function exportContacts(deps: ExportDeps, actor: Actor): Readable {
  authorize(actor, 'export', 'contact');
  return Readable.from(csvChunks(deps, actor.tenantId), { objectMode: false });
}
