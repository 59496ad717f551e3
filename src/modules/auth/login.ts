import type { Kysely } from 'kysely';
import type { Clock } from '../../clock.ts';
import type { Database } from '../../db/schema.ts';
import { AppError } from '../../errors.ts';
import { newId } from '../../ids.ts';
import type { RequestMeta } from '../../core/policy/index.ts';
import {
  burnPasswordCheck,
  hashPassword,
  needsRehash,
  verifyPassword,
} from '../identity/passwords.ts';
import { hashToken, newToken } from '../identity/tokens.ts';
import { userHasPasskey } from '../passkeys/repository.ts';
import type { AuditSink, LoginFailureReason } from './events.ts';
import { startSession, type LoginResult } from './start-session.ts';
import { lockoutEvent, type LoginThrottle } from './throttle.ts';
import type { UserCrypto } from '../users/crypto.ts';

export interface LoginDeps {
  db: Kysely<Database>;
  clock: Clock;
  sessionAbsoluteMs: number;
  throttle: LoginThrottle;
  audit: AuditSink;
  /** Finds the user by the e-mail's blind index and opens e-mail and name. */
  users: UserCrypto;
}

/**
 * A session, or (TOTP or a passkey) a challenge to complete with `POST /auth/login/mfa` or
 * `POST /auth/passkeys/login/mfa`.
 */
export type LoginOutcome =
  | ({ mfaRequired: false } & LoginResult)
  | { mfaRequired: true; mfaToken: string; expiresAt: string };

const invalidCredentials = () =>
  new AppError('unauthenticated', 'auth.invalid_credentials', 'invalid credentials', {
    detail: 'The tenant, e-mail or password is not correct.',
  });

export function createLogin(deps: LoginDeps) {
  const { db, clock, audit, throttle } = deps;

  return async function login(
    input: { tenant: string; email: string; password: string },
    meta: RequestMeta,
  ): Promise<LoginOutcome> {
    // The same queries whatever exists: the tenant, then its users under the e-mail's blind
    // index (a decoy index against no tenant when it does not exist), candidates opened and
    // confirmed. The tenant's id lets an unknown user's attempt be recorded like a wrong
    // password's (same work).
    const tenant = await db
      .selectFrom('tenants')
      .select('id')
      .where('slug', '=', input.tenant.trim().toLowerCase())
      .executeTakeFirst();
    const tenantId = tenant?.id ?? null;
    const user = await deps.users.findByEmail(tenantId, input.email, (emailBidx) =>
      db
        .selectFrom('users')
        .leftJoin('user_totp', (join) =>
          join.onRef('user_totp.user_id', '=', 'users.id').on('user_totp.status', '=', 'active'),
        )
        .select([
          'users.id',
          'users.tenant_id',
          'users.email',
          'users.name',
          'users.role',
          'users.status',
          'users.password_hash',
          'user_totp.user_id as totp_user_id',
        ])
        .where('users.tenant_id', '=', tenantId ?? '')
        .where('users.email_bidx', '=', emailBidx)
        .execute(),
    );
    // The same work and the same answer whether the user is unknown, disabled, mistyped, locked
    // out or signing in from a blocked address: the argon2 check always runs, with the counters
    // beside it, never instead of it. The attempt is counted as a failure before its outcome is
    // known, so parallel guesses cannot outrun the lockout.
    const [ok, claimed] = await Promise.all([
      user?.password_hash != null
        ? verifyPassword(user.password_hash, input.password)
        : burnPasswordCheck(input.password),
      throttle.claim(meta.ip, user?.id),
    ]);
    const base = { requestId: meta.requestId, ip: meta.ip };
    const fail = async (reason: LoginFailureReason) => {
      const at = clock.now().toISOString();
      await audit.record({
        type: 'auth.login.failed',
        at,
        ...base,
        reason,
        tenantId,
        userId: user?.id ?? null,
      });
      // This failure may have armed a lock (the attempt was counted before its outcome).
      const locked =
        user && lockoutEvent(claimed, { tenantId: user.tenant_id, userId: user.id }, meta, at);
      if (locked) await audit.record(locked);
      return invalidCredentials();
    };
    if (claimed.addressBlocked) throw await fail('address_blocked');
    if (!user) throw await fail('unknown_user');
    if (claimed.account?.admitted === false) throw await fail('locked');
    if (!ok) throw await fail('bad_password');
    if (user.status !== 'active') throw await fail('disabled');

    if (user.password_hash !== null && needsRehash(user.password_hash)) {
      // Parameters have risen since this hash was made: upgrade it while the password is known.
      await db
        .updateTable('users')
        .set({ password_hash: await hashPassword(input.password) })
        .where('id', '=', user.id)
        .where('password_hash', '=', user.password_hash)
        .execute();
      await audit.record({
        type: 'auth.password.rehashed',
        at: clock.now().toISOString(),
        ...base,
        tenantId: user.tenant_id,
        userId: user.id,
      });
    }

    // The lead replaces this with `hasSecondFactor` (src/modules/mfa/factors.ts) when merging.
    if (user.totp_user_id != null || (await userHasPasskey(db, user.tenant_id, user.id))) {
      // The password was right but the second factor is still owed: no session yet, and the
      // account's failure count stands until the code is right too (else each right password
      // would hand a code guesser a fresh allowance).
      await throttle.passedFirstFactor(claimed);
      return { mfaRequired: true, ...(await startChallenge(deps, user)) };
    }
    await throttle.succeeded(claimed, user.id);
    return {
      mfaRequired: false,
      ...(await startSession(deps, user, meta, { mfa: false })),
    };
  };
}

/** How long the `mfaToken` between the password and the second factor lives. */
export const MFA_CHALLENGE_MS = 5 * 60_000;

async function startChallenge(
  deps: Pick<LoginDeps, 'db' | 'clock'>,
  user: { id: string; tenant_id: string },
): Promise<{ mfaToken: string; expiresAt: string }> {
  const now = deps.clock.now();
  const mfaToken = newToken();
  const expiresAt = new Date(now.getTime() + MFA_CHALLENGE_MS).toISOString();
  await deps.db
    .insertInto('mfa_challenges')
    .values({
      id: newId(),
      tenant_id: user.tenant_id,
      user_id: user.id,
      token_hash: hashToken(mfaToken),
      created_at: now.toISOString(),
      expires_at: expiresAt,
      used_at: null,
    })
    .execute();
  return { mfaToken, expiresAt };
}
