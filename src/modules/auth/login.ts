import type { Kysely } from 'kysely';
import type { Clock } from '../../clock.ts';
import type { Database, UserRow } from '../../db/schema.ts';
import { AppError } from '../../errors.ts';
import { newId } from '../../ids.ts';
import type { RequestMeta } from '../../core/policy/index.ts';
import {
  burnPasswordCheck,
  hashPassword,
  needsRehash,
  verifyPassword,
} from '../identity/passwords.ts';
import { normalizeEmail } from '../identity/normalize.ts';
import { hashToken, newToken } from '../identity/tokens.ts';
import type { AuditSink, LoginFailureReason } from './events.ts';
import type { LoginThrottle } from './throttle.ts';

export interface LoginDeps {
  db: Kysely<Database>;
  clock: Clock;
  sessionAbsoluteMs: number;
  throttle: LoginThrottle;
  audit: AuditSink;
}

export interface LoginResult {
  token: string;
  sessionId: string;
  expiresAt: string;
  user: Pick<UserRow, 'id' | 'tenant_id' | 'email' | 'name' | 'role'>;
}

const invalidCredentials = () =>
  new AppError('unauthenticated', 'auth.invalid_credentials', 'invalid credentials', {
    detail: 'The tenant, e-mail or password is not correct.',
  });

export function createLogin(deps: LoginDeps) {
  const { db, clock, audit, throttle } = deps;

  return async function login(
    input: { tenant: string; email: string; password: string },
    meta: RequestMeta,
  ): Promise<LoginResult> {
    // One query whatever exists: the tenant, and its user with this e-mail if there is one. The
    // tenant's id lets an unknown user's attempt be recorded like a wrong password's (same work).
    const row = await db
      .selectFrom('tenants')
      .leftJoin('users', (join) =>
        join
          .onRef('users.tenant_id', '=', 'tenants.id')
          .on('users.email_normalized', '=', normalizeEmail(input.email)),
      )
      .select([
        'tenants.id as tenant_id',
        'users.id',
        'users.email',
        'users.name',
        'users.role',
        'users.status',
        'users.password_hash',
      ])
      .where('tenants.slug', '=', input.tenant.trim().toLowerCase())
      .executeTakeFirst();
    const tenantId = row?.tenant_id ?? null;
    const user =
      row?.id != null &&
      row.email != null &&
      row.name != null &&
      row.role != null &&
      row.status != null
        ? {
            ...row,
            id: row.id,
            email: row.email,
            name: row.name,
            role: row.role,
            status: row.status,
          }
        : undefined;
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
      const account = claimed.account;
      // This failure armed a lock (the attempt was counted before its outcome was known).
      if (user && account?.admitted && account.lockedUntil) {
        await audit.record({
          type: 'auth.account.locked',
          at,
          ...base,
          tenantId: user.tenant_id,
          userId: user.id,
          failures: account.failures,
          until: account.permanent ? null : account.lockedUntil.toISOString(),
        });
      }
      return invalidCredentials();
    };
    if (claimed.addressBlocked) throw await fail('address_blocked');
    if (!user) throw await fail('unknown_user');
    if (claimed.account?.admitted === false) throw await fail('locked');
    if (!ok) throw await fail('bad_password');
    if (user.status !== 'active') throw await fail('disabled');

    await throttle.succeeded(claimed, user.id);
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

    const now = clock.now();
    const token = newToken();
    const sessionId = newId();
    const expiresAt = new Date(now.getTime() + deps.sessionAbsoluteMs).toISOString();
    await db
      .insertInto('sessions')
      .values({
        id: sessionId,
        tenant_id: user.tenant_id,
        user_id: user.id,
        token_hash: hashToken(token),
        created_at: now.toISOString(),
        last_seen_at: now.toISOString(),
        expires_at: expiresAt,
        ip: meta.ip,
        user_agent: meta.userAgent?.slice(0, 512) ?? null,
        revoked_at: null,
      })
      .execute();
    await audit.record({
      type: 'auth.login.succeeded',
      at: now.toISOString(),
      ...base,
      tenantId: user.tenant_id,
      userId: user.id,
      sessionId,
    });
    return {
      token,
      sessionId,
      expiresAt,
      user: {
        id: user.id,
        tenant_id: user.tenant_id,
        email: user.email,
        name: user.name,
        role: user.role,
      },
    };
  };
}
