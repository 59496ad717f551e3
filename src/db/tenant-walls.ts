import { PostgresAdapter, sql, type Kysely } from 'kysely';

/**
 * Row-level security of tenant-owned tables on PostgreSQL (migration 0016). A row is visible and
 * writable when its `tenant_id` is the connection's `custos.tenant_id`, or when the connection is
 * in the `system` scope (see tenant-scope.ts for who enters it). The settings are given to every
 * pooled connection by the wrapper in database.ts; a connection without them sees nothing.
 *
 * A migration that creates a tenant-owned table after 0016 must call `addTenantWall` for it:
 * test/integration/tenant-walls.test.ts fails for any table with a `tenant_id` column and no wall.
 */
export const TENANT_WALL_POLICY = 'tenant_wall';

/** The role the application's queries run as on PostgreSQL (NOLOGIN, no BYPASSRLS, owns nothing). */
export const APP_ROLE = 'custos_app';

/** The policy predicate over a column holding the tenant id (text). */
export const tenantWallPredicate = (column: string): string =>
  `(${column} = current_setting('custos.tenant_id', true) OR current_setting('custos.scope', true) = 'system')`;

export const isPostgres = (db: Kysely<unknown>): boolean =>
  db.getExecutor().adapter instanceof PostgresAdapter;

/** ENABLE + FORCE row-level security on `table` and its policy over `column` (PostgreSQL only). */
export async function addTenantWall(
  db: Kysely<unknown>,
  table: string,
  column = 'tenant_id',
): Promise<void> {
  if (!isPostgres(db)) return;
  const t = sql.table(table);
  await sql`ALTER TABLE ${t} ENABLE ROW LEVEL SECURITY`.execute(db);
  await sql`ALTER TABLE ${t} FORCE ROW LEVEL SECURITY`.execute(db);
  await sql`DROP POLICY IF EXISTS ${sql.id(TENANT_WALL_POLICY)} ON ${t}`.execute(db);
  const predicate = sql.raw(tenantWallPredicate(`"${column.replaceAll('"', '""')}"::text`));
  await sql`CREATE POLICY ${sql.id(TENANT_WALL_POLICY)} ON ${t} FOR ALL
    USING ${predicate} WITH CHECK ${predicate}`.execute(db);
}

/** Removes what `addTenantWall` added. */
export async function dropTenantWall(db: Kysely<unknown>, table: string): Promise<void> {
  if (!isPostgres(db)) return;
  const t = sql.table(table);
  await sql`DROP POLICY IF EXISTS ${sql.id(TENANT_WALL_POLICY)} ON ${t}`.execute(db);
  await sql`ALTER TABLE ${t} NO FORCE ROW LEVEL SECURITY`.execute(db);
  await sql`ALTER TABLE ${t} DISABLE ROW LEVEL SECURITY`.execute(db);
}
