import { Readable } from 'node:stream';
import type { Kysely } from 'kysely';
import { stringify } from 'csv-stringify/sync';
import type { Database } from '../../db/schema.ts';
import { authorize, type Actor } from '../../core/policy/index.ts';
import type { ApiRecord, RecordService } from '../records/service.ts';
import { neutralizeCell } from './csv-escape.ts';

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

export type ExportFormat = 'csv' | 'json';
export const EXPORT_FORMATS: readonly ExportFormat[] = ['csv', 'json'];

/** The media type of each format, also the JWE `cty` of an encrypted export. */
export const EXPORT_MEDIA_TYPES: Record<ExportFormat, string> = {
  csv: 'text/csv; charset=utf-8',
  json: 'application/json; charset=utf-8',
};

/** Rows read per query: bounded memory whatever the size of the tenant. */
export const EXPORT_PAGE = 1000;

export interface ExportDeps {
  db: Kysely<Database>;
  /**
   * Contacts are read through the record service, so an export holds exactly what the API
   * answers for the same actor (values decrypted by the records layer, never raw columns).
   */
  contacts: RecordService;
}

type ExportRow = Record<(typeof EXPORT_HEADER)[number], string | null>;

const text = (value: unknown): string | null => {
  if (value === null || value === undefined) return null;
  return typeof value === 'string' ? value : JSON.stringify(value);
};

/** Company names of one page, by id, in one query scoped to the tenant. */
async function companyNames(db: Kysely<Database>, tenantId: string, items: ApiRecord[]) {
  const ids = [...new Set(items.map((c) => c.companyId).filter((id) => typeof id === 'string'))];
  if (ids.length === 0) return new Map<string, string>();
  const rows = await db
    .selectFrom('companies')
    .select(['id', 'name'])
    .where('tenant_id', '=', tenantId)
    .where('id', 'in', ids)
    .execute();
  return new Map(rows.map((r) => [r.id, r.name]));
}

/** The tenant's contacts, page by page (creation order), as export rows. */
async function* exportRows(deps: ExportDeps, actor: Actor): AsyncGenerator<ExportRow[]> {
  let cursor: string | undefined;
  for (;;) {
    const page = await deps.contacts.list(actor, {
      limit: EXPORT_PAGE,
      cursor,
      sort: 'createdAt',
      filters: {},
      purpose: 'export',
    });
    const names = await companyNames(deps.db, actor.tenantId, page.items);
    yield page.items.map((c) => ({
      id: c.id,
      firstName: text(c.firstName),
      lastName: text(c.lastName),
      email: text(c.email),
      phone: text(c.phone),
      title: text(c.title),
      company: typeof c.companyId === 'string' ? (names.get(c.companyId) ?? null) : null,
      dateOfBirth: text(c.dateOfBirth),
      nationalId: text(c.nationalId),
      address: text(c.address),
      notes: text(c.notes),
      ownerId: c.ownerId,
      createdAt: c.createdAt,
      updatedAt: c.updatedAt,
    }));
    if (page.nextCursor === null) return;
    cursor = page.nextCursor;
  }
}

const line = (cells: readonly (string | null)[]) =>
  stringify([cells.map((c) => (c === null ? '' : neutralizeCell(c)))], {
    record_delimiter: 'windows',
  });

async function* csvChunks(rows: AsyncIterable<ExportRow[]>): AsyncGenerator<string> {
  // A BOM so that Excel opens the file as UTF-8 (the importer strips it).
  yield `\uFEFF${line(EXPORT_HEADER)}`;
  for await (const page of rows) {
    if (page.length > 0) yield page.map((r) => line(EXPORT_HEADER.map((h) => r[h]))).join('');
  }
}

/** A JSON array of objects keyed like the CSV header; values as stored (no formula escaping). */
async function* jsonChunks(rows: AsyncIterable<ExportRow[]>): AsyncGenerator<string> {
  let first = true;
  yield '[';
  for await (const page of rows) {
    for (const r of page) {
      yield `${first ? '\n' : ',\n'}${JSON.stringify(r)}`;
      first = false;
    }
  }
  yield first ? ']\n' : '\n]\n';
}

/**
 * The tenant's contacts, read page by page while the stream is consumed.
 *
 * - `csv`: UTF-8 with BOM, CRLF; every cell a spreadsheet would evaluate as a formula is
 *   neutralised with a leading `'`.
 * - `json`: an array of objects with the CSV header's keys, values unchanged (`null` when empty).
 *
 * Authorises before the first byte, so a refusal is a proper error, not a cut stream.
 */
export function exportContacts(
  deps: ExportDeps,
  actor: Actor,
  format: ExportFormat = 'csv',
): Readable {
  authorize(actor, 'export', 'contact');
  const rows = exportRows(deps, actor);
  const chunks = format === 'csv' ? csvChunks(rows) : jsonChunks(rows);
  return Readable.from(chunks, { objectMode: false });
}
