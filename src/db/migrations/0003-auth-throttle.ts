import type { Kysely } from 'kysely';

/** Sign-in failure counters (per account, per client address and day) for throttling. */
export async function up(db: Kysely<unknown>): Promise<void> {
  await db.schema
    .createTable('auth_throttle')
    .addColumn('scope', 'text', (c) => c.notNull())
    .addColumn('key', 'text', (c) => c.notNull())
    .addColumn('count', 'integer', (c) => c.notNull())
    .addColumn('last_at', 'text', (c) => c.notNull())
    .addColumn('expires_at', 'text')
    .addColumn('locked_until', 'text')
    .addPrimaryKeyConstraint('auth_throttle_pk', ['scope', 'key'])
    .execute();
  await db.schema
    .createIndex('auth_throttle_expires')
    .on('auth_throttle')
    .columns(['expires_at'])
    .execute();
}

export async function down(db: Kysely<unknown>): Promise<void> {
  await db.schema.dropTable('auth_throttle').execute();
}
