import type { Kysely } from 'kysely';
import type { Clock } from '../../clock.ts';
import type { RequestMeta } from '../../core/policy/index.ts';
import type { Database } from '../../db/schema.ts';
import { AppError } from '../../errors.ts';
import { hashToken } from '../identity/tokens.ts';
import { invalidCode, type MfaService, type SecondFactor } from '../mfa/service.ts';
import type { AuditSink, MfaFailureReason } from './events.ts';
import { startSession, type LoginResult } from './start-session.ts';
import { lockoutEvent, type LoginThrottle } from './throttle.ts';

export interface LoginMfaDeps {
  db: Kysely<Database>;
  clock: Clock;
  sessionAbsoluteMs: number;
  throttle: LoginThrottle;
  audit: AuditSink;
  mfa: Pick<MfaService, 'verifySecondFactor' | 'recordFailure'>;
}

const challengeInvalid = () =>
  new AppError('unauthenticated', 'auth.mfa_challenge_invalid', 'unknown or spent mfa token', {
    detail: 'The sign-in has expired or was already completed. Sign in again.',
  });

/**
 * The second step of a sign-in with TOTP: the `mfaToken` from the password step and a code (or
 * a recovery code). A wrong code counts as a failed sign-in in the account's throttle, so codes
 * cannot be guessed faster than passwords; the token stays usable until it expires or succeeds.
 */
export function createLoginMfa(deps: LoginMfaDeps) {
  const { db, clock, throttle, audit } = deps;

  return async function completeLogin(
    input: { mfaToken: string } & SecondFactor,
    meta: RequestMeta,
  ): Promise<LoginResult> {
    const now = clock.now();
    const row = await db
      .selectFrom('mfa_challenges')
      .innerJoin('users', 'users.id', 'mfa_challenges.user_id')
      .select([
        'mfa_challenges.id as challenge_id',
        'mfa_challenges.expires_at',
        'mfa_challenges.used_at',
        'users.id',
        'users.tenant_id',
        'users.email',
        'users.name',
        'users.role',
        'users.status',
      ])
      .where('mfa_challenges.token_hash', '=', hashToken(input.mfaToken))
      .executeTakeFirst();
    if (!row || row.used_at !== null || now.getTime() >= Date.parse(row.expires_at)) {
      throw challengeInvalid();
    }
    const who = { tenantId: row.tenant_id, userId: row.id };
    // Counted as a failure before the code is checked, as passwords are (see throttle.ts).
    const claimed = await throttle.claim(meta.ip, row.id);
    const fail = async (reason: MfaFailureReason) => {
      await deps.mfa.recordFailure(who, meta, 'login', reason);
      const locked = lockoutEvent(claimed, who, meta, clock.now().toISOString());
      if (locked) await audit.record(locked);
      return invalidCode('unauthenticated');
    };
    if (claimed.addressBlocked) throw await fail('address_blocked');
    if (claimed.account?.admitted === false) throw await fail('locked');
    if (row.status !== 'active') throw await fail('disabled');
    const factor: SecondFactor =
      'recoveryCode' in input ? { recoveryCode: input.recoveryCode } : { code: input.code };
    const outcome = await deps.mfa.verifySecondFactor(who, factor);
    if (!outcome.ok) throw await fail(outcome.reason);

    // Single use: of two requests racing with one token, only the first gets a session.
    const spent = await db
      .updateTable('mfa_challenges')
      .set({ used_at: clock.now().toISOString() })
      .where('id', '=', row.challenge_id)
      .where('used_at', 'is', null)
      .executeTakeFirst();
    if (Number(spent.numUpdatedRows) !== 1) throw challengeInvalid();

    await throttle.succeeded(claimed, row.id);
    if (outcome.method === 'recovery_code') {
      await audit.record({
        type: 'auth.mfa.recovery_code_used',
        at: clock.now().toISOString(),
        requestId: meta.requestId,
        ip: meta.ip,
        tenantId: row.tenant_id,
        userId: row.id,
        remaining: outcome.remaining,
      });
    }
    return startSession(deps, row, meta, { mfa: true });
  };
}
