import type { Kysely } from 'kysely';

/**
 * When a session last proved its user (sign-in, step-up). Sensitive actions need it within five
 * minutes. Sessions opened before this migration keep null: they must step up first.
 */
export async function up(db: Kysely<unknown>): Promise<void> {
  await db.schema.alterTable('sessions').addColumn('authenticated_at', 'text').execute();
}

export async function down(db: Kysely<unknown>): Promise<void> {
  await db.schema.alterTable('sessions').dropColumn('authenticated_at').execute();
}
