import { sql, type Kysely } from 'kysely';

/**
 * Detection and response (src/modules/detection): the per-tenant cursor of the detection worker
 * (advanced in the transaction of the alerts it raises), the alerts, the per-tenant rule settings
 * (JSON, merged over the defaults) and per-user restrictions a response can impose.
 */
export async function up(db: Kysely<unknown>): Promise<void> {
  await db.schema
    .createTable('detection_cursors')
    .addColumn('tenant_id', 'text', (c) => c.primaryKey())
    // The leaf index of the last audit event evaluated (-1: none yet).
    .addColumn('leaf_index', 'bigint', (c) => c.notNull())
    .addColumn('updated_at', 'text', (c) => c.notNull())
    .execute();
  await db.schema
    .createTable('alerts')
    .addColumn('id', 'text', (c) => c.primaryKey())
    .addColumn('tenant_id', 'text', (c) => c.notNull())
    .addColumn('rule', 'text', (c) => c.notNull())
    .addColumn('severity', 'text', (c) => c.notNull())
    .addColumn('status', 'text', (c) => c.notNull())
    .addColumn('subject_user_id', 'text')
    .addColumn('subject_ip', 'text')
    .addColumn('first_seen_at', 'text', (c) => c.notNull())
    .addColumn('last_seen_at', 'text', (c) => c.notNull())
    .addColumn('count', 'integer', (c) => c.notNull())
    .addColumn('dedup_key', 'text', (c) => c.notNull())
    // JSON: counts, thresholds, event ids, actions taken; never a personal value.
    .addColumn('details', 'text', (c) => c.notNull())
    .addColumn('created_at', 'text', (c) => c.notNull())
    .addColumn('acknowledged_at', 'text')
    .addColumn('acknowledged_by', 'text')
    .addColumn('resolved_at', 'text')
    .addColumn('resolved_by', 'text')
    .addCheckConstraint('alerts_status', sql`status in ('open', 'acknowledged', 'resolved')`)
    .addCheckConstraint('alerts_severity', sql`severity in ('low', 'medium', 'high', 'critical')`)
    .addUniqueConstraint('alerts_dedup', ['tenant_id', 'dedup_key'])
    .execute();
  await db.schema
    .createIndex('alerts_list')
    .on('alerts')
    .columns(['tenant_id', 'created_at', 'id'])
    .execute();
  await db.schema
    .createIndex('alerts_incident')
    .on('alerts')
    .columns(['tenant_id', 'rule', 'subject_user_id', 'subject_ip', 'last_seen_at'])
    .execute();
  await db.schema
    .createTable('detection_settings')
    .addColumn('tenant_id', 'text', (c) => c.primaryKey())
    .addColumn('settings', 'text', (c) => c.notNull())
    .addColumn('updated_at', 'text', (c) => c.notNull())
    .execute();
  await db.schema
    .createTable('user_restrictions')
    .addColumn('user_id', 'text', (c) => c.primaryKey())
    .addColumn('tenant_id', 'text', (c) => c.notNull())
    .addColumn('exports_blocked_until', 'text')
    .addColumn('updated_at', 'text', (c) => c.notNull())
    .execute();
  // Window queries of the rules: by type and time within a tenant.
  await db.schema
    .createIndex('audit_events_type_time')
    .on('audit_events')
    .columns(['tenant_id', 'type', 'occurred_at'])
    .execute();
  await db.schema
    .createIndex('audit_events_ip_time')
    .on('audit_events')
    .columns(['tenant_id', 'ip', 'occurred_at'])
    .execute();
  await db.schema
    .createIndex('audit_events_actor_time')
    .on('audit_events')
    .columns(['tenant_id', 'actor_id', 'occurred_at'])
    .execute();
}

export async function down(db: Kysely<unknown>): Promise<void> {
  await db.schema.dropIndex('audit_events_actor_time').execute();
  await db.schema.dropIndex('audit_events_ip_time').execute();
  await db.schema.dropIndex('audit_events_type_time').execute();
  await db.schema.dropTable('user_restrictions').execute();
  await db.schema.dropTable('detection_settings').execute();
  await db.schema.dropTable('alerts').execute();
  await db.schema.dropTable('detection_cursors').execute();
}
