import { sql, type Expression, type Kysely, type SqlBool, type Transaction } from 'kysely';
import type { Actor, Scope } from '../../core/policy/index.ts';
import type { Database, RecordTableName } from '../../db/schema.ts';
import { prepared } from '../../db/prepared.ts';
import type { SyncReader } from '../../db/database.ts';
import type { SortSpec } from './spec.ts';

/**
 * Generic record queries. Every function takes the tenant id and scopes by it: there is no query
 * here that can reach another tenant's rows. Table and column names come from a RecordSpec (code),
 * never from the request.
 */
type Row = Record<string, unknown>;
// Kysely's types are per table; the spec-driven queries use the same builder over plain rows.
type AnyDb = Kysely<Record<string, Row>>;
export type Db = Kysely<Database> | Transaction<Database>;

const any = (db: Db) => db as unknown as AnyDb;

export interface ListQuery {
  tenantId: string;
  columns: readonly string[];
  equals: ReadonlyArray<{ column: string; value: string }>;
  ranges: ReadonlyArray<{ column: string; op: '>=' | '<'; value: string }>;
  sort: SortSpec;
  direction: 'asc' | 'desc';
  after?: { value: string | number; id: string };
  limit: number;
  /** Record scope (own, team): only records this user or their teams' members own. */
  scope?: OwnerScope | undefined;
}

/** `own`: records `userId` owns; `team`: those and the ones owned by members of their teams. */
export interface OwnerScope {
  kind: 'own' | 'team';
  userId: string;
}

/** The owner filter of `scope` for `actor` (none for `all`); a system job owns no records. */
export function ownerScopeOf(actor: Actor, scope: Scope): OwnerScope | undefined {
  if (scope === 'all') return undefined;
  return { kind: scope, userId: actor.kind === 'system' ? '' : actor.userId };
}

/** The users who share a team with `userId` (in `tenantId`), as a subquery. */
function teamMates(db: Db, tenantId: string, userId: string) {
  return any(db)
    .selectFrom('team_members as mine')
    .innerJoin('team_members as mate', 'mate.team_id', 'mine.team_id')
    .select('mate.user_id')
    .where('mine.tenant_id', '=', tenantId)
    .where('mine.user_id', '=', userId);
}

function sortExpression(sort: SortSpec): Expression<unknown> {
  return sort.nullsAs === undefined
    ? sql.ref(sort.column)
    : sql`coalesce(${sql.ref(sort.column)}, ${sort.nullsAs})`;
}

export async function listRows(db: Db, table: string, q: ListQuery): Promise<Row[]> {
  const key = sortExpression(q.sort);
  let query = any(db)
    .selectFrom(table)
    .select(q.columns.map((c) => sql.ref(c).as(c)))
    .where(sql.ref('tenant_id'), '=', q.tenantId);
  if (q.scope?.kind === 'own') query = query.where(sql.ref('owner_id'), '=', q.scope.userId);
  if (q.scope?.kind === 'team') {
    const { userId } = q.scope;
    query = query.where((eb) =>
      eb.or([
        eb(sql.ref('owner_id'), '=', userId),
        eb(sql.ref('owner_id'), 'in', teamMates(db, q.tenantId, userId)),
      ]),
    );
  }
  for (const f of q.equals) query = query.where(sql.ref(f.column), '=', f.value);
  for (const r of q.ranges) query = query.where(sql.ref(r.column), r.op, r.value);
  if (q.after) {
    const { value, id } = q.after;
    const op = q.direction === 'asc' ? '>' : '<';
    query = query.where(
      (eb) =>
        eb.or([
          eb(key, op, value),
          eb.and([eb(key, '=', value), eb(sql.ref('id'), op, id)]),
        ]) as Expression<SqlBool>,
    );
  }
  return query
    .orderBy(key, q.direction)
    .orderBy(sql.ref('id'), q.direction)
    .limit(q.limit)
    .execute();
}

const getRowQueries = new Map<string, ReturnType<typeof prepareGetRow>>();

function prepareGetRow(table: string, columns: readonly string[]) {
  return prepared<Record<string, Row>, Row, 'tenantId' | 'id'>((db, p) =>
    db
      .selectFrom(table)
      .select(columns.map((c) => sql.ref(c).as(c)))
      .where(sql.ref('tenant_id'), '=', p('tenantId'))
      .where(sql.ref('id'), '=', p('id')),
  );
}

function getRowQuery(table: string, columns: readonly string[]) {
  const key = `${table}|${columns.join(',')}`;
  let query = getRowQueries.get(key);
  if (!query) {
    query = prepareGetRow(table, columns);
    getRowQueries.set(key, query);
  }
  return query;
}

/** One record of the tenant by id (the query is compiled once per table and column list). */
export async function getRow(
  db: Db,
  table: string,
  tenantId: string,
  id: string,
  columns: readonly string[],
  reader?: SyncReader,
): Promise<Row | undefined> {
  const rows = await getRowQuery(table, columns).run(any(db), { tenantId, id }, reader);
  return rows[0];
}

/**
 * `getRow` read at once from SQLite's `reader` (no promise: the GET of one record runs it on
 * every request): `found` false when there is no reader (PostgreSQL), then use `getRow`.
 */
export function getRowNow(
  db: Db,
  table: string,
  tenantId: string,
  id: string,
  columns: readonly string[],
  reader: SyncReader | undefined,
): { found: false } | { found: true; row: Row | undefined } {
  const rows = getRowQuery(table, columns).readNow(any(db), { tenantId, id }, reader);
  return rows ? { found: true, row: rows[0] } : { found: false };
}

export async function insertRow(db: Db, table: string, row: Row): Promise<void> {
  await any(db).insertInto(table).values(row).execute();
}

/** Updates only when the stored version is `version`; returns whether a row changed. */
export async function updateRowAtVersion(
  db: Db,
  table: string,
  tenantId: string,
  id: string,
  version: number,
  values: Row,
): Promise<boolean> {
  const result = await any(db)
    .updateTable(table)
    .set({ ...values, version: version + 1 })
    .where(sql.ref('tenant_id'), '=', tenantId)
    .where(sql.ref('id'), '=', id)
    .where(sql.ref('version'), '=', version)
    .executeTakeFirst();
  return Number(result.numUpdatedRows) === 1;
}

export async function deleteRow(
  db: Db,
  table: string,
  tenantId: string,
  id: string,
  version: number | undefined,
): Promise<boolean> {
  let query = any(db)
    .deleteFrom(table)
    .where(sql.ref('tenant_id'), '=', tenantId)
    .where(sql.ref('id'), '=', id);
  if (version !== undefined) query = query.where(sql.ref('version'), '=', version);
  const result = await query.executeTakeFirst();
  return Number(result.numDeletedRows) === 1;
}

/** Does `id` exist in `table` for this tenant? Used to check references before writing. */
export async function existsInTenant(
  db: Db,
  table: string,
  tenantId: string,
  id: string,
): Promise<boolean> {
  const row = await any(db)
    .selectFrom(table)
    .select(sql.lit(1).as('one'))
    .where(sql.ref('tenant_id'), '=', tenantId)
    .where(sql.ref('id'), '=', id)
    .executeTakeFirst();
  return row !== undefined;
}

/** The owner of a record of this tenant (`null` for none), or undefined when there is no such record. */
export async function recordOwner(
  db: Db,
  table: RecordTableName,
  tenantId: string,
  id: string,
): Promise<{ ownerId: string | null } | undefined> {
  const row = await any(db)
    .selectFrom(table)
    .select(sql.ref<string | null>('owner_id').as('owner_id'))
    .where(sql.ref('tenant_id'), '=', tenantId)
    .where(sql.ref('id'), '=', id)
    .executeTakeFirst();
  return row === undefined ? undefined : { ownerId: row.owner_id ?? null };
}

/** Is the record owner `ownerId` within `scope` (the same rule as `listRows`)? */
export async function ownerInScope(
  db: Db,
  tenantId: string,
  scope: OwnerScope,
  ownerId: string | null,
): Promise<boolean> {
  if (ownerId === null) return false;
  if (ownerId === scope.userId) return true;
  if (scope.kind === 'own') return false;
  const row = await teamMates(db, tenantId, scope.userId)
    .where('mate.user_id', '=', ownerId)
    .executeTakeFirst();
  return row !== undefined;
}

/** Unique-constraint violations on SQLite and PostgreSQL. */
export function isUniqueViolation(error: unknown): boolean {
  const code = (error as { code?: unknown } | null)?.code;
  return code === 'SQLITE_CONSTRAINT_UNIQUE' || code === '23505';
}

/** Foreign-key violations (a referenced record deleted meanwhile). */
export function isForeignKeyViolation(error: unknown): boolean {
  const code = (error as { code?: unknown } | null)?.code;
  return code === 'SQLITE_CONSTRAINT_FOREIGNKEY' || code === '23503';
}
