import type { Kysely } from 'kysely';
import { addTenantWall, dropTenantWall } from '../tenant-walls.ts';

/**
 * Re-encryption after a key rotation as a server job (issue 3, item 5): one row per tenant with
 * the run in progress or the last one finished, so that a killed process resumes where it
 * stopped (phase and cursor), `custos keys status` shows progress without scanning the records,
 * and only one process works on a tenant at a time (the lease: owner and expiry, taken and
 * renewed by a conditional UPDATE, which both SQLite and PostgreSQL make atomic).
 */
export async function up(db: Kysely<unknown>): Promise<void> {
  await db.schema
    .createTable('key_reencryption')
    .addColumn('tenant_id', 'text', (c) => c.primaryKey())
    // The tenant data key version values are moved to; a rotation starts a new run.
    .addColumn('target_version', 'integer', (c) => c.notNull())
    .addColumn('state', 'text', (c) => c.notNull())
    // 'rewrap' (subject keys, in the key store), then 'values' (records, by table and id).
    .addColumn('phase', 'text', (c) => c.notNull())
    .addColumn('cursor_table', 'text')
    .addColumn('cursor_id', 'text')
    .addColumn('rewrapped', 'integer', (c) => c.notNull())
    .addColumn('reencrypted', 'integer', (c) => c.notNull())
    .addColumn('encrypted_clear', 'integer', (c) => c.notNull())
    .addColumn('failed', 'integer', (c) => c.notNull())
    // JSON: values per tenant key version, under subject keys, in clear, damaged; kept current
    // by the job's own writes, re-counted at the start and the end of a run (`census_at`).
    .addColumn('census', 'text', (c) => c.notNull())
    .addColumn('census_at', 'text', (c) => c.notNull())
    .addColumn('started_at', 'text', (c) => c.notNull())
    .addColumn('last_batch_at', 'text')
    .addColumn('finished_at', 'text')
    .addColumn('lease_owner', 'text')
    .addColumn('lease_until', 'text')
    .execute();
  await addTenantWall(db, 'key_reencryption');
}

export async function down(db: Kysely<unknown>): Promise<void> {
  await dropTenantWall(db, 'key_reencryption');
  await db.schema.dropTable('key_reencryption').execute();
}
