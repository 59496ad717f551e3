import { sql, type Kysely } from 'kysely';

/**
 * Per-tenant settings, one row per tenant, created on the first change. A null column means "the
 * server default" (`CUSTOS_SESSION_IDLE_MINUTES`, `CUSTOS_SESSION_ABSOLUTE_HOURS`). The checks
 * repeat the API's ranges so no other writer can store a timeout the API would refuse.
 */
export async function up(db: Kysely<unknown>): Promise<void> {
  await db.schema
    .createTable('tenant_settings')
    .addColumn('tenant_id', 'text', (c) => c.primaryKey())
    .addColumn('session_idle_minutes', 'integer')
    .addColumn('session_absolute_hours', 'integer')
    .addColumn('updated_at', 'text', (c) => c.notNull())
    .addCheckConstraint(
      'tenant_settings_idle_range',
      sql`session_idle_minutes is null or session_idle_minutes between 5 and 1440`,
    )
    .addCheckConstraint(
      'tenant_settings_absolute_range',
      sql`session_absolute_hours is null or session_absolute_hours between 1 and 168`,
    )
    .execute();
}

export async function down(db: Kysely<unknown>): Promise<void> {
  await db.schema.dropTable('tenant_settings').execute();
}
