import type { Kysely } from 'kysely';
import type { Clock } from '../../clock.ts';
import type { Actor } from '../../core/policy/index.ts';
import type { Database } from '../../db/schema.ts';
import { AppError } from '../../errors.ts';
import type { AuditSink } from '../auth/events.ts';
import { recordRevocations, revokeSessions } from '../auth/sessions.ts';
import { lockoutEvent, type LoginThrottle } from '../auth/throttle.ts';
import { assertPasswordAcceptable } from '../identity/password-policy.ts';
import { hashPassword, verifyPassword } from '../identity/passwords.ts';
import { hashToken, newToken } from '../identity/tokens.ts';
import { revokeLinks } from './links.ts';

import type { UserCrypto } from '../users/crypto.ts';
export interface PasswordChangeDeps {
  db: Kysely<Database>;
  clock: Clock;
  audit: AuditSink;
  throttle: LoginThrottle;
  /** Opens e-mail and name (the password policy refuses passwords made of them). */
  users: UserCrypto;
}

/** The session's new token (new cookie) and how many other sessions ended. */
export interface PasswordChanged {
  token: string;
  expiresAt: string;
  sessionsEnded: number;
}

export const signedInUser = (actor: Actor, what: string): Extract<Actor, { kind: 'user' }> => {
  if (actor.kind !== 'user') {
    throw new AppError('forbidden', 'policy.forbidden', `${what} needs a session`, {
      detail: `The ${what} is changed from a signed-in session, not with an API key.`,
    });
  }
  return actor;
};

/**
 * `POST /auth/password`: the current password (checked under the sign-in throttle, so a stolen
 * session cannot guess it here) and a new one the policy accepts. Every other session ends, the
 * current one gets a new token, and open reset links stop working.
 */
export function createPasswordChange(deps: PasswordChangeDeps) {
  const { db, clock, audit, throttle } = deps;

  return async function changePassword(
    who: Actor,
    input: { currentPassword: string; newPassword: string },
  ): Promise<PasswordChanged> {
    const actor = signedInUser(who, 'password');
    const meta = actor.request;
    const user = await deps.users.openOne(
      actor.tenantId,
      await db
        .selectFrom('users')
        .innerJoin('tenants', 'tenants.id', 'users.tenant_id')
        .select([
          'users.id',
          'users.password_hash',
          'users.email',
          'users.name',
          'tenants.slug',
          'tenants.name as tenant_name',
        ])
        .where('users.id', '=', actor.userId)
        .where('users.tenant_id', '=', actor.tenantId)
        .executeTakeFirstOrThrow(),
    );
    const [ok, claimed] = await Promise.all([
      user.password_hash === null
        ? Promise.resolve(false)
        : verifyPassword(user.password_hash, input.currentPassword),
      throttle.claim(meta.ip, actor.userId),
    ]);
    const base = {
      requestId: meta.requestId,
      ip: meta.ip,
      tenantId: actor.tenantId,
      userId: actor.userId,
    };
    const reason = claimed.addressBlocked
      ? 'address_blocked'
      : claimed.account?.admitted === false
        ? 'locked'
        : ok
          ? null
          : 'bad_password';
    if (reason !== null) {
      const at = clock.now().toISOString();
      await audit.record({
        type: 'auth.password.change_failed',
        at,
        ...base,
        sessionId: actor.sessionId,
        reason,
      });
      const locked = lockoutEvent(claimed, actor, meta, at);
      if (locked) await audit.record(locked);
      throw new AppError('invalid', 'auth.current_password_invalid', 'current password refused', {
        detail: 'The current password is not correct.',
      });
    }
    await throttle.succeeded(claimed, actor.userId);
    await assertPasswordAcceptable(
      input.newPassword,
      { email: user.email, name: user.name, tenantSlug: user.slug, tenantName: user.tenant_name },
      { field: 'body/newPassword' },
    );
    const passwordHash = await hashPassword(input.newPassword);
    const token = newToken();
    const at = clock.now().toISOString();
    const done = await db.transaction().execute(async (trx) => {
      const session = await trx
        .updateTable('sessions')
        .set({ token_hash: hashToken(token), authenticated_at: at, last_seen_at: at })
        .where('id', '=', actor.sessionId)
        .where('revoked_at', 'is', null)
        .returning(['expires_at'])
        .executeTakeFirst();
      if (!session) return null;
      await trx
        .updateTable('users')
        .set({ password_hash: passwordHash, updated_at: at })
        .where('id', '=', actor.userId)
        .where('tenant_id', '=', actor.tenantId)
        .execute();
      await revokeLinks(trx, actor.userId, 'password_reset', at);
      const target = { tenantId: actor.tenantId, userId: actor.userId, except: actor.sessionId };
      const ended = await revokeSessions(trx, target, at);
      return { expiresAt: session.expires_at, ended };
    });
    if (!done) {
      throw new AppError('unauthenticated', 'auth.unauthenticated', 'session gone', {
        detail: 'Sign in to continue.',
      });
    }
    await audit.record({
      type: 'auth.password.changed',
      at,
      ...base,
      by: actor.userId,
      method: 'change',
    });
    await recordRevocations(
      audit,
      actor,
      { userId: actor.userId, sessionIds: done.ended, reason: 'password_changed' },
      at,
    );
    return { token, expiresAt: done.expiresAt, sessionsEnded: done.ended.length };
  };
}
