import type { Kysely } from 'kysely';
import type { Clock } from '../../clock.ts';
import type { Database } from '../../db/schema.ts';
import type { MfaFailureReason } from '../auth/events.ts';
import { spendRecoveryCode } from './recovery-codes.ts';
import type { TotpSecretStore } from './secret-store.ts';
import { checkTotp, type TotpOutcome } from './totp.ts';

export type SecondFactor = { code: string } | { recoveryCode: string };

export type SecondFactorOutcome =
  | { ok: true; method: 'totp' }
  | { ok: true; method: 'recovery_code'; remaining: number }
  | { ok: false; reason: MfaFailureReason };

export function createSecondFactorVerifier(deps: {
  db: Kysely<Database>;
  clock: Clock;
  store: TotpSecretStore;
}) {
  const { db, clock, store } = deps;

  /**
   * Checks a TOTP code and, if right, records its step as used in the same statement that
   * checks it is newer than the last one: of two requests with one code, only one wins.
   */
  async function useCode(tenantId: string, userId: string, code: string): Promise<TotpOutcome> {
    const row = await store.enrolment(tenantId, userId);
    if (row?.status !== 'active') return { ok: false, reason: 'bad_code' };
    const secret = await store.unseal(tenantId, userId, row.secret);
    const outcome = checkTotp({ secret, code, at: clock.now(), lastStep: row.last_step });
    if (!outcome.ok) return outcome;
    const updated = await db
      .updateTable('user_totp')
      .set({ last_step: outcome.step })
      .where('user_id', '=', userId)
      .where('status', '=', 'active')
      .where((eb) => eb.or([eb('last_step', 'is', null), eb('last_step', '<', outcome.step)]))
      .executeTakeFirst();
    return Number(updated.numUpdatedRows) === 1 ? outcome : { ok: false, reason: 'replayed' };
  }

  /**
   * A TOTP code (once per step) or an unused recovery code (spent here), for the second step of
   * a sign-in and for step-up. The caller throttles and records the outcome.
   */
  async function verifySecondFactor(
    user: { tenantId: string; userId: string },
    factor: SecondFactor,
  ): Promise<SecondFactorOutcome> {
    if ('code' in factor) {
      const outcome = await useCode(user.tenantId, user.userId, factor.code);
      return outcome.ok ? { ok: true, method: 'totp' } : outcome;
    }
    const remaining = await spendRecoveryCode(db, user, factor.recoveryCode, clock.now());
    if (remaining === null) return { ok: false, reason: 'bad_recovery_code' };
    return { ok: true, method: 'recovery_code', remaining };
  }

  return { useCode, verifySecondFactor };
}

export type SecondFactorVerifier = ReturnType<typeof createSecondFactorVerifier>;
