import type { Actor } from '../../core/policy/index.ts';
import { AppError } from '../../errors.ts';
import type { MfaFailureReason } from '../auth/events.ts';
import { recordRevocations, revokeSessions } from '../auth/sessions.ts';
import { verifyPassword } from '../identity/passwords.ts';
import { invalidCode, sessionUser, type FailureRecorder, type MfaDeps } from './common.ts';
import type { TotpSecretStore } from './secret-store.ts';
import { checkTotp } from './totp.ts';
import type { SecondFactorVerifier } from './verify.ts';

/**
 * Removes TOTP after a current code or the password. Failures count in the sign-in throttle,
 * so a stolen session cannot be used to guess the password here.
 */
export function createTotpRemoval(
  deps: MfaDeps,
  store: TotpSecretStore,
  verifier: Pick<SecondFactorVerifier, 'useCode'>,
  failed: FailureRecorder,
) {
  const { db, clock, audit } = deps;

  return async function removeTotp(who: Actor, proof: { code: string } | { password: string }) {
    const actor = sessionUser(who);
    const meta = actor.request;
    const row = await store.enrolment(actor.tenantId, actor.userId);
    if (!row) {
      throw new AppError('conflict', 'auth.mfa_not_enrolled', 'no totp enrolment', {
        detail: 'Two-factor authentication is not on.',
      });
    }
    const claimed = await deps.throttle.claim(meta.ip, actor.userId);
    let reason: MfaFailureReason | null = null;
    if (claimed.addressBlocked) reason = 'address_blocked';
    else if (claimed.account?.admitted === false) reason = 'locked';
    else if ('code' in proof) {
      const outcome =
        row.status === 'active'
          ? await verifier.useCode(actor.tenantId, actor.userId, proof.code)
          : checkTotp({
              secret: await store.unseal(actor.tenantId, actor.userId, row.secret),
              code: proof.code,
              at: clock.now(),
            });
      if (!outcome.ok) reason = outcome.reason;
    } else {
      const user = await db
        .selectFrom('users')
        .select(['password_hash'])
        .where('id', '=', actor.userId)
        .executeTakeFirstOrThrow();
      const ok =
        user.password_hash !== null && (await verifyPassword(user.password_hash, proof.password));
      if (!ok) reason = 'bad_password';
    }
    if (reason !== null) {
      await failed(actor, meta, 'remove', reason);
      throw invalidCode('invalid');
    }
    await deps.throttle.succeeded(claimed, actor.userId);
    // Without its second factor the account trusts only the session that removed it.
    const at = clock.now().toISOString();
    const revoked = await db.transaction().execute(async (trx) => {
      await trx.deleteFrom('user_totp').where('user_id', '=', actor.userId).execute();
      await trx.deleteFrom('user_recovery_codes').where('user_id', '=', actor.userId).execute();
      const target = { tenantId: actor.tenantId, userId: actor.userId, except: actor.sessionId };
      return revokeSessions(trx, target, at);
    });
    await audit.record({
      type: 'auth.mfa.removed',
      at: clock.now().toISOString(),
      requestId: meta.requestId,
      ip: meta.ip,
      tenantId: actor.tenantId,
      userId: actor.userId,
      method: 'totp',
      by: actor.userId,
      proof: 'code' in proof ? 'code' : 'password',
    });
    const ended = { userId: actor.userId, sessionIds: revoked, reason: 'mfa_removed' } as const;
    await recordRevocations(audit, actor, ended, at);
  };
}
