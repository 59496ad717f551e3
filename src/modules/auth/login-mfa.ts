import type { AuthenticationResponseJSON } from '@simplewebauthn/server';
import type { Kysely } from 'kysely';
import type { Clock } from '../../clock.ts';
import type { RequestMeta } from '../../core/policy/index.ts';
import type { Database } from '../../db/schema.ts';
import { AppError } from '../../errors.ts';
import { hashToken } from '../identity/tokens.ts';
import { invalidCode, type MfaService, type SecondFactor } from '../mfa/service.ts';
import { passkeyInvalid } from '../passkeys/errors.ts';
import type { PasskeySignIn } from '../passkeys/sign-in.ts';
import type { AuditSink, MfaFailureReason } from './events.ts';
import { startSession, type LoginResult } from './start-session.ts';
import { lockoutEvent, type LoginThrottle } from './throttle.ts';
import type { UserCrypto } from '../users/crypto.ts';

export interface LoginMfaDeps {
  db: Kysely<Database>;
  clock: Clock;
  sessionAbsoluteMs: number;
  throttle: LoginThrottle;
  audit: AuditSink;
  mfa: Pick<MfaService, 'verifySecondFactor' | 'recordFailure'>;
  passkeys: Pick<PasskeySignIn, 'verifySecondFactor'>;
  users: UserCrypto;
}

/** A TOTP code, a recovery code, or a passkey assertion (see src/modules/passkeys). */
export type LoginSecondFactor = SecondFactor | { passkey: AuthenticationResponseJSON };

const challengeInvalid = () =>
  new AppError('unauthenticated', 'auth.mfa_challenge_invalid', 'unknown or spent mfa token', {
    detail: 'The sign-in has expired or was already completed. Sign in again.',
  });

/** The sign-in an `mfaToken` is pending for, with its user; unknown, spent or expired throw. */
export async function pendingMfaChallenge(db: Kysely<Database>, clock: Clock, mfaToken: string) {
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
    .where('mfa_challenges.token_hash', '=', hashToken(mfaToken))
    .executeTakeFirst();
  if (!row || row.used_at !== null || clock.now().getTime() >= Date.parse(row.expires_at)) {
    throw challengeInvalid();
  }
  return row;
}

/**
 * The second step of a sign-in with TOTP or a passkey: the `mfaToken` from the password step and
 * a code, a recovery code or a passkey assertion. A wrong one counts as a failed sign-in in the
 * account's throttle, so codes cannot be guessed faster than passwords; the token stays usable
 * until it expires or succeeds.
 */
export function createLoginMfa(deps: LoginMfaDeps) {
  const { db, clock, throttle, audit } = deps;

  return async function completeLogin(
    input: { mfaToken: string } & LoginSecondFactor,
    meta: RequestMeta,
  ): Promise<LoginResult> {
    const row = await pendingMfaChallenge(db, clock, input.mfaToken);
    const who = { tenantId: row.tenant_id, userId: row.id };
    // Counted as a failure before the code is checked, as passwords are (see throttle.ts).
    const claimed = await throttle.claim(meta.ip, row.id);
    const fail = async (reason: MfaFailureReason) => {
      await deps.mfa.recordFailure(who, meta, 'login', reason);
      const locked = lockoutEvent(claimed, who, meta, clock.now().toISOString());
      if (locked) await audit.record(locked);
      return 'passkey' in input
        ? passkeyInvalid('unauthenticated')
        : invalidCode('unauthenticated');
    };
    if (claimed.addressBlocked) throw await fail('address_blocked');
    if (claimed.account?.admitted === false) throw await fail('locked');
    if (row.status !== 'active') throw await fail('disabled');
    const outcome =
      'passkey' in input
        ? await verifyPasskey(input.passkey)
        : await deps.mfa.verifySecondFactor(
            who,
            'recoveryCode' in input ? { recoveryCode: input.recoveryCode } : { code: input.code },
          );
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
    const passkey = outcome.method === 'passkey' ? 'second_factor' : undefined;
    const user = await deps.users.openOne(row.tenant_id, row);
    return startSession(deps, user, meta, { mfa: true, ...(passkey ? { passkey } : {}) });

    async function verifyPasskey(response: AuthenticationResponseJSON) {
      const challenge = { id: row.challenge_id, tenantId: row.tenant_id, userId: row.id };
      const checked = await deps.passkeys.verifySecondFactor(challenge, response, meta);
      return checked.ok
        ? ({ ok: true, method: 'passkey' } as const)
        : ({ ok: false, reason: 'bad_passkey' } as const);
    }
  };
}
