import { sql, type Kysely } from 'kysely';
import { APP_ROLE, addTenantWall, dropTenantWall, isPostgres } from '../tenant-walls.ts';

/**
 * Tenant walls on PostgreSQL (issue 5, item 4): row-level security on every table of the schema
 * that has a `tenant_id` column, and on `tenants` itself (a tenant sees its own row), applied to
 * the role `custos_app` the application's queries run as (see src/db/database.ts). The role is
 * created if absent (NOLOGIN, no BYPASSRLS, owns nothing) and may use the tables, not TRUNCATE
 * them (TRUNCATE ignores row-level security). Tables created by later migrations are granted to
 * it by default privileges, but need their own `addTenantWall`. Nothing on SQLite.
 */
export async function up(db: Kysely<unknown>): Promise<void> {
  if (!isPostgres(db)) return;
  // Roles belong to the cluster: several databases (one per test file) may create it at once.
  await sql`
    DO $$
    BEGIN
      IF NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = ${sql.lit(APP_ROLE)}) THEN
        BEGIN
          CREATE ROLE ${sql.id(APP_ROLE)} NOLOGIN NOSUPERUSER NOBYPASSRLS NOINHERIT;
        EXCEPTION WHEN duplicate_object OR unique_violation THEN NULL;
        END;
      END IF;
      -- A non-superuser owner must be a member to SET ROLE (a superuser always may).
      IF NOT (SELECT rolsuper FROM pg_roles WHERE rolname = current_user)
         AND NOT pg_has_role(current_user, ${sql.lit(APP_ROLE)}, 'MEMBER') THEN
        BEGIN
          EXECUTE format('GRANT %I TO %I', ${sql.lit(APP_ROLE)}, current_user);
        EXCEPTION WHEN duplicate_object OR unique_violation THEN NULL;
        END;
      END IF;
    END
    $$`.execute(db);
  await sql`
    DO $$
    DECLARE s text := current_schema();
    BEGIN
      EXECUTE format('GRANT USAGE ON SCHEMA %I TO %I', s, ${sql.lit(APP_ROLE)});
      EXECUTE format('GRANT SELECT, INSERT, UPDATE, DELETE ON ALL TABLES IN SCHEMA %I TO %I', s, ${sql.lit(APP_ROLE)});
      EXECUTE format('GRANT USAGE, SELECT, UPDATE ON ALL SEQUENCES IN SCHEMA %I TO %I', s, ${sql.lit(APP_ROLE)});
      EXECUTE format('ALTER DEFAULT PRIVILEGES IN SCHEMA %I GRANT SELECT, INSERT, UPDATE, DELETE ON TABLES TO %I', s, ${sql.lit(APP_ROLE)});
      EXECUTE format('ALTER DEFAULT PRIVILEGES IN SCHEMA %I GRANT USAGE, SELECT, UPDATE ON SEQUENCES TO %I', s, ${sql.lit(APP_ROLE)});
      -- The migration bookkeeping is the owner's alone.
      EXECUTE format('REVOKE ALL ON kysely_migration, kysely_migration_lock FROM %I', ${sql.lit(APP_ROLE)});
    END
    $$`.execute(db);
  for (const table of await tenantOwnedTables(db)) await addTenantWall(db, table);
  await addTenantWall(db, 'tenants', 'id');
}

export async function down(db: Kysely<unknown>): Promise<void> {
  if (!isPostgres(db)) return;
  for (const table of await tenantOwnedTables(db)) await dropTenantWall(db, table);
  await dropTenantWall(db, 'tenants');
  await sql`
    DO $$
    DECLARE s text := current_schema();
    BEGIN
      EXECUTE format('ALTER DEFAULT PRIVILEGES IN SCHEMA %I REVOKE ALL ON TABLES FROM %I', s, ${sql.lit(APP_ROLE)});
      EXECUTE format('ALTER DEFAULT PRIVILEGES IN SCHEMA %I REVOKE ALL ON SEQUENCES FROM %I', s, ${sql.lit(APP_ROLE)});
      EXECUTE format('REVOKE ALL ON ALL TABLES IN SCHEMA %I FROM %I', s, ${sql.lit(APP_ROLE)});
      EXECUTE format('REVOKE ALL ON ALL SEQUENCES IN SCHEMA %I FROM %I', s, ${sql.lit(APP_ROLE)});
      EXECUTE format('REVOKE USAGE ON SCHEMA %I FROM %I', s, ${sql.lit(APP_ROLE)});
    END
    $$`.execute(db);
}

async function tenantOwnedTables(db: Kysely<unknown>): Promise<string[]> {
  const { rows } = await sql<{ table_name: string }>`
    SELECT c.table_name FROM information_schema.columns c
    JOIN information_schema.tables t
      ON t.table_schema = c.table_schema AND t.table_name = c.table_name
    WHERE c.table_schema = current_schema() AND c.column_name = 'tenant_id'
      AND t.table_type = 'BASE TABLE'
    ORDER BY c.table_name`.execute(db);
  return rows.map((r) => r.table_name);
}
