import type { Kysely } from 'kysely';
import { requireFreshAuth, type Actor } from '../../core/policy/index.ts';
import type { Database } from '../../db/schema.ts';
import { AppError } from '../../errors.ts';
import { newId } from '../../ids.ts';
import { sessionUser, type MfaDeps } from './common.ts';
import { hashRecoveryCode, newRecoveryCodes } from './totp.ts';

/** Replaces all of a user's recovery codes by `codes` (call inside the change's transaction). */
export async function replaceRecoveryCodes(
  trx: Kysely<Database>,
  user: { tenantId: string; userId: string },
  codes: readonly string[],
  now: string,
): Promise<void> {
  await trx.deleteFrom('user_recovery_codes').where('user_id', '=', user.userId).execute();
  await trx
    .insertInto('user_recovery_codes')
    .values(
      codes.map((c) => ({
        id: newId(),
        tenant_id: user.tenantId,
        user_id: user.userId,
        code_hash: hashRecoveryCode(user.userId, c),
        created_at: now,
        used_at: null,
      })),
    )
    .execute();
}

/**
 * Spends an unused recovery code (one statement: of two requests with one code, one wins) and
 * returns how many are left, or null when the code is not one of the user's unused codes.
 */
export async function spendRecoveryCode(
  db: Kysely<Database>,
  user: { tenantId: string; userId: string },
  code: string,
  now: Date,
): Promise<number | null> {
  const spent = await db
    .updateTable('user_recovery_codes')
    .set({ used_at: now.toISOString() })
    .where('user_id', '=', user.userId)
    .where('tenant_id', '=', user.tenantId)
    .where('code_hash', '=', hashRecoveryCode(user.userId, code))
    .where('used_at', 'is', null)
    .executeTakeFirst();
  if (Number(spent.numUpdatedRows) !== 1) return null;
  const left = await db
    .selectFrom('user_recovery_codes')
    .select((eb) => eb.fn.countAll<number | string>().as('n'))
    .where('user_id', '=', user.userId)
    .where('used_at', 'is', null)
    .executeTakeFirstOrThrow();
  return Number(left.n);
}

/**
 * `POST /api/v1/auth/mfa/recovery-codes`: a fresh set of recovery codes, shown once; every
 * earlier code, used or not, stops working. Needs TOTP on and a fresh authentication.
 */
export function createRecoveryCodeRegeneration(deps: Pick<MfaDeps, 'db' | 'clock' | 'audit'>) {
  const { db, clock, audit } = deps;
  return async function regenerateRecoveryCodes(who: Actor): Promise<{ recoveryCodes: string[] }> {
    const actor = sessionUser(who);
    requireFreshAuth(actor, clock);
    const user = { tenantId: actor.tenantId, userId: actor.userId };
    const codes = newRecoveryCodes();
    const now = clock.now().toISOString();
    const done = await db.transaction().execute(async (trx) => {
      const active = await trx
        .selectFrom('user_totp')
        .select('user_id')
        .where('user_id', '=', actor.userId)
        .where('tenant_id', '=', actor.tenantId)
        .where('status', '=', 'active')
        .executeTakeFirst();
      if (!active) return false;
      await replaceRecoveryCodes(trx, user, codes, now);
      return true;
    });
    if (!done) {
      throw new AppError('conflict', 'auth.mfa_not_enrolled', 'no active totp', {
        detail: 'Recovery codes come with two-factor authentication, which is not on.',
      });
    }
    await audit.record({
      type: 'auth.mfa.recovery_codes_regenerated',
      at: now,
      requestId: actor.request.requestId,
      ip: actor.request.ip,
      tenantId: actor.tenantId,
      userId: actor.userId,
      sessionId: actor.sessionId,
      count: codes.length,
    });
    return { recoveryCodes: codes };
  };
}
