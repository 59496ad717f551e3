import type { Kysely } from 'kysely';

/**
 * SIEM outbox: one delivery cursor per (destination, tenant) over the tenant's ordered audit log.
 * `next_leaf_index` is the first leaf not yet confirmed delivered; it only moves forward, and only
 * after the destination confirmed a batch (see src/modules/siem/worker.ts for why the log itself
 * is the outbox).
 */
export async function up(db: Kysely<unknown>): Promise<void> {
  await db.schema
    .createTable('siem_cursors')
    .addColumn('destination', 'text', (c) => c.notNull())
    .addColumn('tenant_id', 'text', (c) => c.notNull().references('tenants.id'))
    .addColumn('next_leaf_index', 'bigint', (c) => c.notNull())
    .addColumn('updated_at', 'text', (c) => c.notNull())
    .addPrimaryKeyConstraint('siem_cursors_pk', ['destination', 'tenant_id'])
    .execute();
}

export async function down(db: Kysely<unknown>): Promise<void> {
  await db.schema.dropTable('siem_cursors').execute();
}
