import { sql, type Kysely } from 'kysely';

/**
 * Per-tenant audit settings (retention, legal hold, optional event categories), one row per
 * tenant, created on the first change; a missing row or a null retention means the server
 * default (`CUSTOS_AUDIT_RETENTION_DAYS`). `audit_tree.pruned_size`: leaves below it had their
 * events removed by retention; their leaf hashes stay in `audit_nodes` (level 0) so roots and
 * proofs still verify.
 */
export async function up(db: Kysely<unknown>): Promise<void> {
  await db.schema
    .createTable('audit_settings')
    .addColumn('tenant_id', 'text', (c) => c.primaryKey().references('tenants.id'))
    .addColumn('retention_days', 'integer')
    .addColumn('legal_hold', 'integer', (c) => c.notNull().defaultTo(0))
    .addColumn('legal_hold_reason', 'text')
    .addColumn('legal_hold_since', 'text')
    .addColumn('record_reads', 'integer', (c) => c.notNull().defaultTo(0))
    .addColumn('api_calls', 'integer', (c) => c.notNull().defaultTo(0))
    .addColumn('updated_at', 'text', (c) => c.notNull())
    .addCheckConstraint(
      'audit_settings_retention_range',
      sql`retention_days is null or retention_days between 30 and 36500`,
    )
    .addCheckConstraint(
      'audit_settings_flags',
      sql`legal_hold in (0, 1) and record_reads in (0, 1) and api_calls in (0, 1)`,
    )
    .execute();
  await db.schema
    .alterTable('audit_tree')
    .addColumn('pruned_size', 'bigint', (c) => c.notNull().defaultTo(0))
    .execute();
}

export async function down(db: Kysely<unknown>): Promise<void> {
  await db.schema.alterTable('audit_tree').dropColumn('pruned_size').execute();
  await db.schema.dropTable('audit_settings').execute();
}
