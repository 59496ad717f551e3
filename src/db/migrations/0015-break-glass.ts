import { sql, type Kysely } from 'kysely';

/**
 * Break-glass (emergency access): one row per grant a user opened, with its written reason and
 * its end (the expiry, or an earlier `ended_at`). Audit events carry the grant they were recorded
 * under (`break_glass_id`, also in their canonical bytes; null for every other event).
 */
export async function up(db: Kysely<unknown>): Promise<void> {
  await db.schema
    .createTable('break_glass_grants')
    .addColumn('id', 'text', (c) => c.primaryKey())
    .addColumn('tenant_id', 'text', (c) => c.notNull())
    .addColumn('user_id', 'text', (c) => c.notNull())
    .addColumn('reason', 'text', (c) => c.notNull())
    .addColumn('opened_at', 'text', (c) => c.notNull())
    .addColumn('expires_at', 'text', (c) => c.notNull())
    .addColumn('ended_at', 'text')
    .addColumn('ended_by', 'text')
    .execute();
  // The per-request lookup: the user's grant that has not been ended, latest expiry first.
  await db.schema
    .createIndex('break_glass_grants_user')
    .on('break_glass_grants')
    .columns(['user_id', 'ended_at', 'expires_at'])
    .execute();
  // One grant per user not yet closed: opening closes the user's expired ones first (ended_at =
  // expires_at, ended_by null), so two concurrent openings cannot both succeed.
  await db.schema
    .createIndex('break_glass_grants_one_open')
    .unique()
    .on('break_glass_grants')
    .column('user_id')
    .where(sql.ref('ended_at'), 'is', null)
    .execute();
  await db.schema
    .createIndex('break_glass_grants_list')
    .on('break_glass_grants')
    .columns(['tenant_id', 'opened_at', 'id'])
    .execute();
  await db.schema.alterTable('audit_events').addColumn('break_glass_id', 'text').execute();
}

export async function down(db: Kysely<unknown>): Promise<void> {
  await db.schema.alterTable('audit_events').dropColumn('break_glass_id').execute();
  await db.schema.dropTable('break_glass_grants').execute();
}
