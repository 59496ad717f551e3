import type { Kysely } from 'kysely';

/** Tamper-evident audit log: events as Merkle leaves, tree heads, subtree hashes, checkpoints. */
export async function up(db: Kysely<unknown>): Promise<void> {
  await db.schema
    .createTable('audit_events')
    .addColumn('tenant_id', 'text', (c) => c.notNull().references('tenants.id'))
    .addColumn('leaf_index', 'bigint', (c) => c.notNull())
    .addColumn('id', 'text', (c) => c.notNull())
    .addColumn('type', 'text', (c) => c.notNull())
    .addColumn('occurred_at', 'text', (c) => c.notNull())
    .addColumn('actor_kind', 'text', (c) => c.notNull())
    .addColumn('actor_id', 'text')
    .addColumn('ip', 'text')
    .addColumn('user_agent', 'text')
    .addColumn('request_id', 'text')
    .addColumn('target_type', 'text')
    .addColumn('target_id', 'text')
    .addColumn('outcome', 'text', (c) => c.notNull())
    .addColumn('reason', 'text')
    .addColumn('fields', 'text', (c) => c.notNull())
    .addColumn('canonical', 'text', (c) => c.notNull())
    .addColumn('leaf_hash', 'text', (c) => c.notNull())
    .addPrimaryKeyConstraint('audit_events_pk', ['tenant_id', 'leaf_index'])
    .execute();
  await db.schema
    .createIndex('audit_events_target')
    .on('audit_events')
    .columns(['tenant_id', 'target_type', 'target_id', 'leaf_index'])
    .execute();
  await db.schema
    .createIndex('audit_events_type')
    .on('audit_events')
    .columns(['tenant_id', 'type', 'leaf_index'])
    .execute();

  await db.schema
    .createTable('audit_tree')
    .addColumn('tenant_id', 'text', (c) => c.primaryKey().references('tenants.id'))
    .addColumn('tree_size', 'bigint', (c) => c.notNull())
    .addColumn('frontier', 'text', (c) => c.notNull())
    .addColumn('checkpoint_size', 'bigint', (c) => c.notNull())
    .addColumn('checkpoint_at', 'text')
    .execute();

  await db.schema
    .createTable('audit_nodes')
    .addColumn('tenant_id', 'text', (c) => c.notNull().references('tenants.id'))
    .addColumn('level', 'integer', (c) => c.notNull())
    .addColumn('idx', 'bigint', (c) => c.notNull())
    .addColumn('hash', 'text', (c) => c.notNull())
    .addPrimaryKeyConstraint('audit_nodes_pk', ['tenant_id', 'level', 'idx'])
    .execute();

  await db.schema
    .createTable('audit_checkpoints')
    .addColumn('tenant_id', 'text', (c) => c.notNull().references('tenants.id'))
    .addColumn('tree_size', 'bigint', (c) => c.notNull())
    .addColumn('root_hash', 'text', (c) => c.notNull())
    .addColumn('signed_at', 'text', (c) => c.notNull())
    .addColumn('key_id', 'text', (c) => c.notNull())
    .addColumn('signature', 'text', (c) => c.notNull())
    .addPrimaryKeyConstraint('audit_checkpoints_pk', ['tenant_id', 'tree_size', 'key_id'])
    .execute();

  await db.schema
    .createTable('audit_signing_keys')
    .addColumn('key_id', 'text', (c) => c.primaryKey())
    .addColumn('public_key', 'text', (c) => c.notNull())
    .addColumn('created_at', 'text', (c) => c.notNull())
    .execute();
}

export async function down(db: Kysely<unknown>): Promise<void> {
  for (const table of [
    'audit_signing_keys',
    'audit_checkpoints',
    'audit_nodes',
    'audit_tree',
    'audit_events',
  ]) {
    await db.schema.dropTable(table).execute();
  }
}
