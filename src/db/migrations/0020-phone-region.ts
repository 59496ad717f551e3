import { sql, type Kysely } from 'kysely';

/**
 * The region a tenant's national phone numbers are read in (ISO 3166-1 alpha-2, e.g. `US`), for
 * the phone blind index and phone filters. Existing tenants keep null: only international
 * (`+...`) numbers are indexed, as before, so no index changes with this migration.
 */
export async function up(db: Kysely<unknown>): Promise<void> {
  await db.schema
    .alterTable('tenant_settings')
    .addColumn('phone_region', 'text', (c) =>
      c.check(
        sql`phone_region is null or (length(phone_region) = 2 and phone_region = upper(phone_region))`,
      ),
    )
    .execute();
}

export async function down(db: Kysely<unknown>): Promise<void> {
  await db.schema.alterTable('tenant_settings').dropColumn('phone_region').execute();
}
