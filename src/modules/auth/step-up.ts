import type { AuthenticationResponseJSON } from '@simplewebauthn/server';
import { sql, type Kysely } from 'kysely';
import type { Clock } from '../../clock.ts';
import { FRESH_AUTH_MS, type Actor } from '../../core/policy/index.ts';
import type { Database } from '../../db/schema.ts';
import { AppError } from '../../errors.ts';
import { verifyPassword } from '../identity/passwords.ts';
import { asFlag, secondFactorExists } from '../mfa/factors.ts';
import type { MfaService } from '../mfa/service.ts';
import type { PasskeySignIn, UserBinding } from '../passkeys/sign-in.ts';
import { rotateSessionToken } from './sessions.ts';
import type { AuditSink, StepUpFailureReason } from './events.ts';
import { lockoutEvent, type LoginThrottle } from './throttle.ts';

export interface StepUpDeps {
  db: Kysely<Database>;
  clock: Clock;
  throttle: LoginThrottle;
  audit: AuditSink;
  mfa: Pick<MfaService, 'verifySecondFactor'>;
  passkeys: Pick<PasskeySignIn, 'userAssertionStart' | 'verifyUserAssertion'>;
}

export type StepUpProof =
  | { password: string }
  | { code: string }
  | { recoveryCode: string }
  | { passkey: AuthenticationResponseJSON };

export interface StepUpResult {
  authenticatedAt: string;
  freshUntil: string;
  /** The session's new token: re-authentication never keeps the old one. */
  session: { token: string; expiresAt: string };
}

const failed = () =>
  new AppError('invalid', 'auth.step_up_failed', 'step-up refused', {
    detail: 'The password, code or passkey is not correct.',
  });

type UserActor = Extract<Actor, { kind: 'user' }>;

function sessionActor(who: Actor): UserActor {
  if (who.kind !== 'user') {
    throw new AppError('forbidden', 'policy.forbidden', 'step-up needs a session', {
      detail: 'Only a signed-in session can confirm its authentication, not an API key.',
    });
  }
  return who;
}

/** A step-up passkey challenge answers for this session only. */
const stepUpBinding = (actor: UserActor): UserBinding => ({
  purpose: 'step_up',
  tenantId: actor.tenantId,
  userId: actor.userId,
  sessionId: actor.sessionId,
});

/**
 * `POST /api/v1/auth/step-up`: the signed-in user proves themselves again, and the current
 * session counts as freshly authenticated for five minutes, under a new token (the old one stops
 * working: a re-authentication never keeps a token). With a second factor on (TOTP or a passkey)
 * the password alone will not do (a stolen password must not unlock sensitive actions): a current
 * code, an unused recovery code (spent here) or a passkey assertion (options from
 * `POST /api/v1/auth/step-up/passkey-options`). Every attempt counts in the account's sign-in
 * throttle first, so a stolen session cannot guess the password here.
 */
export function createStepUp(deps: StepUpDeps) {
  const { db, clock, throttle, audit } = deps;

  /** `POST /api/v1/auth/step-up/passkey-options`: a challenge bound to this session. */
  async function passkeyOptions(who: Actor) {
    return deps.passkeys.userAssertionStart(stepUpBinding(sessionActor(who)));
  }

  async function stepUp(who: Actor, proof: StepUpProof): Promise<StepUpResult> {
    const actor = sessionActor(who);
    const meta = actor.request;
    const user = await db
      .selectFrom('users')
      .leftJoin('user_totp', (join) =>
        join.onRef('user_totp.user_id', '=', 'users.id').on('user_totp.status', '=', 'active'),
      )
      .select([
        'users.password_hash',
        'user_totp.user_id as totp_user_id',
        secondFactorExists(sql.val(actor.userId)).as('has_second_factor'),
      ])
      .where('users.id', '=', actor.userId)
      .where('users.tenant_id', '=', actor.tenantId)
      .executeTakeFirstOrThrow();
    const totp = user.totp_user_id != null;
    if (asFlag(user.has_second_factor) && 'password' in proof) {
      throw new AppError('invalid', 'auth.step_up_code_required', 'second factor on: no password', {
        detail:
          'Two-factor authentication is on: confirm with a current code, a recovery code or a passkey, not a password.',
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
    } else if ('passkey' in proof) {
      const checked = await deps.passkeys.verifyUserAssertion(
        stepUpBinding(actor),
        proof.passkey,
        meta,
      );
      if (!checked.ok) throw await fail('bad_passkey');
    } else {
      const ok =
        user.password_hash !== null && (await verifyPassword(user.password_hash, proof.password));
      if (!ok) throw await fail('bad_password');
    }
    await throttle.succeeded(claimed, actor.userId);
    const now = clock.now();
    const session = await db.transaction().execute(async (trx) => {
      const updated = await trx
        .updateTable('sessions')
        .set({ authenticated_at: now.toISOString() })
        .where('id', '=', actor.sessionId)
        .where('revoked_at', 'is', null)
        .executeTakeFirst();
      if (Number(updated.numUpdatedRows) !== 1) return null;
      return rotateSessionToken(trx, actor.sessionId);
    });
    if (!session) {
      throw new AppError('unauthenticated', 'auth.unauthenticated', 'session gone', {
        detail: 'Sign in to continue.',
      });
    }
    await audit.record({
      type: 'auth.step_up.succeeded',
      at: now.toISOString(),
      ...base,
      method: methodOf(proof),
    });
    return {
      authenticatedAt: now.toISOString(),
      freshUntil: new Date(now.getTime() + FRESH_AUTH_MS).toISOString(),
      session,
    };
  }

  return { stepUp, passkeyOptions };
}

const methodOf = (proof: StepUpProof) =>
  'code' in proof
    ? 'totp'
    : 'recoveryCode' in proof
      ? 'recovery_code'
      : 'passkey' in proof
        ? 'passkey'
        : 'password';
