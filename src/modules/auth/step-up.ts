import type { Kysely } from 'kysely';
import type { Clock } from '../../clock.ts';
import { FRESH_AUTH_MS, type Actor } from '../../core/policy/index.ts';
import type { Database } from '../../db/schema.ts';
import { AppError } from '../../errors.ts';
import { verifyPassword } from '../identity/passwords.ts';
import type { MfaService } from '../mfa/service.ts';
import type { AuditSink, StepUpFailureReason } from './events.ts';
import { lockoutEvent, type LoginThrottle } from './throttle.ts';

export interface StepUpDeps {
  db: Kysely<Database>;
  clock: Clock;
  throttle: LoginThrottle;
  audit: AuditSink;
  mfa: Pick<MfaService, 'verifySecondFactor'>;
}

export type StepUpProof = { password: string } | { code: string } | { recoveryCode: string };

const failed = () =>
  new AppError('invalid', 'auth.step_up_failed', 'step-up refused', {
    detail: 'The password or code is not correct.',
  });

/**
 * `POST /api/v1/auth/step-up`: the signed-in user proves themselves again, and the current
 * session counts as freshly authenticated for five minutes. With TOTP on, only a current code or
 * an unused recovery code (spent here) will do (a stolen password alone must not unlock
 * sensitive actions). Every attempt counts in
 * the account's sign-in throttle first, so a stolen session cannot guess the password here.
 */
export function createStepUp(deps: StepUpDeps) {
  const { db, clock, throttle, audit } = deps;

  return async function stepUp(
    who: Actor,
    proof: StepUpProof,
  ): Promise<{ authenticatedAt: string; freshUntil: string }> {
    if (who.kind !== 'user') {
      throw new AppError('forbidden', 'policy.forbidden', 'step-up needs a session', {
        detail: 'Only a signed-in session can confirm its authentication, not an API key.',
      });
    }
    const actor = who;
    const meta = actor.request;
    const user = await db
      .selectFrom('users')
      .leftJoin('user_totp', (join) =>
        join.onRef('user_totp.user_id', '=', 'users.id').on('user_totp.status', '=', 'active'),
      )
      .select(['users.password_hash', 'user_totp.user_id as totp_user_id'])
      .where('users.id', '=', actor.userId)
      .where('users.tenant_id', '=', actor.tenantId)
      .executeTakeFirstOrThrow();
    const totp = user.totp_user_id != null;
    if (totp && 'password' in proof) {
      throw new AppError('invalid', 'auth.step_up_code_required', 'totp on: code required', {
        detail: 'Two-factor authentication is on: confirm with the current code, not a password.',
      });
    }
    const claimed = await throttle.claim(meta.ip, actor.userId);
    const base = {
      requestId: meta.requestId,
      ip: meta.ip,
      tenantId: actor.tenantId,
      userId: actor.userId,
      sessionId: actor.sessionId,
    };
    const fail = async (reason: StepUpFailureReason) => {
      const at = clock.now().toISOString();
      await audit.record({ type: 'auth.step_up.failed', at, ...base, reason });
      const locked = lockoutEvent(claimed, base, meta, at);
      if (locked) await audit.record(locked);
      return failed();
    };
    if (claimed.addressBlocked) throw await fail('address_blocked');
    if (claimed.account?.admitted === false) throw await fail('locked');
    if ('code' in proof) {
      const outcome = totp
        ? await deps.mfa.verifySecondFactor(actor, { code: proof.code })
        : ({ ok: false, reason: 'bad_code' } as const);
      if (!outcome.ok) throw await fail(outcome.reason === 'replayed' ? 'replayed' : 'bad_code');
    } else if ('recoveryCode' in proof) {
      const outcome = totp
        ? await deps.mfa.verifySecondFactor(actor, { recoveryCode: proof.recoveryCode })
        : ({ ok: false } as const);
      if (!outcome.ok) throw await fail('bad_recovery_code');
      if (outcome.method === 'recovery_code') {
        await audit.record({
          type: 'auth.mfa.recovery_code_used',
          at: clock.now().toISOString(),
          requestId: meta.requestId,
          ip: meta.ip,
          tenantId: actor.tenantId,
          userId: actor.userId,
          remaining: outcome.remaining,
        });
      }
    } else {
      const ok =
        user.password_hash !== null && (await verifyPassword(user.password_hash, proof.password));
      if (!ok) throw await fail('bad_password');
    }
    await throttle.succeeded(claimed, actor.userId);
    const now = clock.now();
    const updated = await db
      .updateTable('sessions')
      .set({ authenticated_at: now.toISOString() })
      .where('id', '=', actor.sessionId)
      .where('revoked_at', 'is', null)
      .executeTakeFirst();
    if (Number(updated.numUpdatedRows) !== 1) {
      throw new AppError('unauthenticated', 'auth.unauthenticated', 'session gone', {
        detail: 'Sign in to continue.',
      });
    }
    await audit.record({
      type: 'auth.step_up.succeeded',
      at: now.toISOString(),
      ...base,
      method: 'code' in proof ? 'totp' : 'recoveryCode' in proof ? 'recovery_code' : 'password',
    });
    return {
      authenticatedAt: now.toISOString(),
      freshUntil: new Date(now.getTime() + FRESH_AUTH_MS).toISOString(),
    };
  };
}
