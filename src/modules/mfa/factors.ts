import { sql, type Kysely, type RawBuilder } from 'kysely';
import type { Database } from '../../db/schema.ts';

/**
 * THE definition of "this user has a second factor", as SQL over a user id column, so the
 * per-request session and API key lookups can carry it without another query: a confirmed
 * (active) TOTP enrolment or a passkey that is not disabled. Every check (`hasSecondFactor`, the
 * session lookup, API keys, sign-in) follows this one definition.
 */
export function secondFactorExists(userId: RawBuilder<unknown>): RawBuilder<boolean | number> {
  return sql<
    boolean | number
  >`(exists (select 1 from user_totp where user_totp.user_id = ${userId} and user_totp.status = 'active') or exists (select 1 from user_passkeys where user_passkeys.user_id = ${userId} and user_passkeys.disabled_at is null))`;
}

/** `secondFactorExists` over a column, e.g. `secondFactorColumn('sessions.user_id')`. */
export const secondFactorColumn = (column: string) => secondFactorExists(sql.ref(column));

/** PostgreSQL answers `exists` with a boolean, SQLite with 0 or 1. */
export const asFlag = (value: boolean | number | string | null | undefined): boolean =>
  value === true || value === 1 || value === '1' || value === 't';

/** Does this user have a second factor (see `secondFactorExists`)? */
export async function hasSecondFactor(
  db: Kysely<Database>,
  user: { tenantId: string; userId: string },
): Promise<boolean> {
  const row = await db
    .selectFrom('users')
    .select(secondFactorExists(sql.val(user.userId)).as('has'))
    .where('users.id', '=', user.userId)
    .where('users.tenant_id', '=', user.tenantId)
    .executeTakeFirst();
  return asFlag(row?.has);
}
