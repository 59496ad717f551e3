import { sql, type Kysely } from 'kysely';

/**
 * Whether a tenant requires a second factor: `off`, `all` (everyone) or `roles` (those listed,
 * comma-separated, in `mfa_required_roles`). Existing tenants keep `off`.
 */
export async function up(db: Kysely<unknown>): Promise<void> {
  await db.schema
    .alterTable('tenant_settings')
    .addColumn('mfa_required', 'text', (c) =>
      c
        .notNull()
        .defaultTo('off')
        .check(sql`mfa_required in ('off', 'all', 'roles')`),
    )
    .execute();
  await db.schema
    .alterTable('tenant_settings')
    .addColumn('mfa_required_roles', 'text', (c) => c.notNull().defaultTo(''))
    .execute();
  // The purge job deletes old sessions by their absolute end.
  await db.schema.createIndex('sessions_expires_at').on('sessions').column('expires_at').execute();
}

export async function down(db: Kysely<unknown>): Promise<void> {
  await db.schema.dropIndex('sessions_expires_at').execute();
  await db.schema.alterTable('tenant_settings').dropColumn('mfa_required_roles').execute();
  await db.schema.alterTable('tenant_settings').dropColumn('mfa_required').execute();
}
