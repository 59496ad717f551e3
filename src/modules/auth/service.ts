import type { Kysely } from 'kysely';
import type { Clock } from '../../clock.ts';
import type { Database, UserRow } from '../../db/schema.ts';
import { AppError } from '../../errors.ts';
import { newId } from '../../ids.ts';
import { prepared } from '../../db/prepared.ts';
import type { SyncReader } from '../../db/database.ts';
import { weakerRole, type Actor, type RequestMeta } from '../../core/policy/index.ts';
import {
  burnPasswordCheck,
  hashPassword,
  needsRehash,
  verifyPassword,
} from '../identity/passwords.ts';
import { normalizeEmail } from '../identity/normalize.ts';
import { hashToken, newToken, safeEqual } from '../identity/tokens.ts';
import { API_KEY_PATTERN } from '../api-keys/format.ts';
import type { AuditSink, LoginFailureReason } from './events.ts';
import type { LoginThrottle } from './throttle.ts';

export interface AuthDeps {
  db: Kysely<Database>;
  /** SQLite's read-only connection for the per-request lookups (absent on PostgreSQL). */
  reader?: SyncReader | undefined;
  clock: Clock;
  sessionIdleMs: number;
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

/** Sessions touch `last_seen_at` at most this often: the idle timeout needs no finer grain. */
const TOUCH_INTERVAL_MS = 30_000;

/** Every authenticated request runs one of these two: compiled once. */
const sessionByTokenHash = prepared((db: Kysely<Database>, p: (n: 'tokenHash') => string) =>
  db
    .selectFrom('sessions')
    .innerJoin('users', 'users.id', 'sessions.user_id')
    .select([
      'sessions.id',
      'sessions.tenant_id',
      'sessions.user_id',
      'sessions.last_seen_at',
      'sessions.expires_at',
      'sessions.revoked_at',
      'users.role',
      'users.status',
    ])
    .where('sessions.token_hash', '=', p('tokenHash')),
);

const apiKeyByPrefix = prepared((db: Kysely<Database>, p: (n: 'prefix') => string) =>
  db
    .selectFrom('api_keys')
    .innerJoin('users', 'users.id', 'api_keys.user_id')
    .select([
      'api_keys.id',
      'api_keys.tenant_id',
      'api_keys.user_id',
      'api_keys.secret_hash',
      'api_keys.role',
      'api_keys.expires_at',
      'api_keys.revoked_at',
      'api_keys.last_used_at',
      'users.role as user_role',
      'users.status as user_status',
    ])
    .where('api_keys.prefix', '=', p('prefix')),
);

const invalidCredentials = () =>
  new AppError('unauthenticated', 'auth.invalid_credentials', 'invalid credentials', {
    detail: 'The tenant, e-mail or password is not correct.',
  });

export function createAuthService(deps: AuthDeps) {
  const { db, clock } = deps;

  async function login(
    input: { tenant: string; email: string; password: string },
    meta: RequestMeta,
  ): Promise<LoginResult> {
    const user = await db
      .selectFrom('users')
      .innerJoin('tenants', 'tenants.id', 'users.tenant_id')
      .select([
        'users.id',
        'users.tenant_id',
        'users.email',
        'users.name',
        'users.role',
        'users.status',
        'users.password_hash',
      ])
      .where('tenants.slug', '=', input.tenant.trim().toLowerCase())
      .where('users.email_normalized', '=', normalizeEmail(input.email))
      .executeTakeFirst();
    // The same work and the same answer whether the user is unknown, disabled, mistyped, locked
    // out or signing in from a blocked address: the argon2 check always runs, and the counters
    // are read beside it, never instead of it.
    const [ok, blocked, lock] = await Promise.all([
      user?.password_hash != null
        ? verifyPassword(user.password_hash, input.password)
        : burnPasswordCheck(input.password),
      deps.throttle.addressBlocked(meta.ip),
      user ? deps.throttle.accountLock(user.id) : undefined,
    ]);
    const base = { requestId: meta.requestId, ip: meta.ip };
    const fail = async (reason: LoginFailureReason, countAgainstAccount = false) => {
      const newLock = await deps.throttle.recordFailure(
        meta.ip,
        countAgainstAccount ? user?.id : undefined,
      );
      await deps.audit.record({
        type: 'auth.login.failed',
        at: clock.now().toISOString(),
        ...base,
        reason,
        tenantId: user?.tenant_id ?? null,
        userId: user?.id ?? null,
      });
      if (user && newLock?.locked) {
        await deps.audit.record({
          type: 'auth.account.locked',
          at: clock.now().toISOString(),
          ...base,
          tenantId: user.tenant_id,
          userId: user.id,
          failures: newLock.failures,
          until: newLock.until?.toISOString() ?? null,
        });
      }
      return invalidCredentials();
    };
    if (blocked) throw await fail('address_blocked');
    if (!user) throw await fail('unknown_user');
    if (lock?.locked) throw await fail('locked');
    if (!ok) throw await fail('bad_password', true);
    if (user.status !== 'active') throw await fail('disabled');

    if (lock && lock.failures > 0) await deps.throttle.recordSuccess(user.id);
    if (user.password_hash !== null && needsRehash(user.password_hash)) {
      // Parameters have risen since this hash was made: upgrade it while the password is known.
      await db
        .updateTable('users')
        .set({ password_hash: await hashPassword(input.password) })
        .where('id', '=', user.id)
        .where('password_hash', '=', user.password_hash)
        .execute();
      await deps.audit.record({
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
    await deps.audit.record({
      type: 'auth.login.succeeded',
      at: now.toISOString(),
      requestId: meta.requestId,
      ip: meta.ip,
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
  }

  /** Turns a session cookie into an actor, or throws `unauthenticated`. */
  async function actorFromSession(token: string, meta: RequestMeta): Promise<Actor> {
    const [row] = await sessionByTokenHash.run(db, { tokenHash: hashToken(token) }, deps.reader);
    if (!row || row.revoked_at !== null || row.status !== 'active') {
      throw new AppError('unauthenticated', 'auth.unauthenticated', 'unknown or revoked session', {
        detail: 'Sign in to continue.',
      });
    }
    const now = clock.now();
    const idleEnds = Date.parse(row.last_seen_at) + deps.sessionIdleMs;
    const absolute = now.getTime() >= Date.parse(row.expires_at);
    if (absolute || now.getTime() >= idleEnds) {
      const revoked = await db
        .updateTable('sessions')
        .set({ revoked_at: now.toISOString() })
        .where('id', '=', row.id)
        .where('revoked_at', 'is', null)
        .executeTakeFirst();
      if (Number(revoked.numUpdatedRows) > 0) {
        await deps.audit.record({
          type: 'auth.session.revoked',
          at: now.toISOString(),
          requestId: meta.requestId,
          ip: meta.ip,
          tenantId: row.tenant_id,
          userId: row.user_id,
          sessionId: row.id,
          reason: absolute ? 'absolute_timeout' : 'idle_timeout',
        });
      }
      throw new AppError('unauthenticated', 'auth.session_expired', 'session expired', {
        detail: 'Your session has expired. Sign in again.',
      });
    }
    if (now.getTime() - Date.parse(row.last_seen_at) >= TOUCH_INTERVAL_MS) {
      await db
        .updateTable('sessions')
        .set({ last_seen_at: now.toISOString() })
        .where('id', '=', row.id)
        .execute();
    }
    return {
      kind: 'user',
      tenantId: row.tenant_id,
      userId: row.user_id,
      role: row.role,
      sessionId: row.id,
      request: meta,
    };
  }

  /** Turns `Authorization: Bearer <key>` into an actor no stronger than the key's creator. */
  async function actorFromApiKey(key: string, meta: RequestMeta): Promise<Actor> {
    const invalid = () =>
      new AppError('unauthenticated', 'auth.api_key_invalid', 'invalid api key', {
        detail: 'The API key is not valid, has expired or was revoked.',
      });
    const match = API_KEY_PATTERN.exec(key);
    if (!match?.groups) throw invalid();
    const { prefix, secret } = match.groups as { prefix: string; secret: string };
    const [row] = await apiKeyByPrefix.run(db, { prefix }, deps.reader);
    const now = clock.now();
    if (
      !row ||
      !safeEqual(row.secret_hash, hashToken(secret)) ||
      row.revoked_at !== null ||
      row.user_status !== 'active' ||
      (row.expires_at !== null && now.getTime() >= Date.parse(row.expires_at))
    ) {
      throw invalid();
    }
    if (
      row.last_used_at === null ||
      now.getTime() - Date.parse(row.last_used_at) >= TOUCH_INTERVAL_MS
    ) {
      await db
        .updateTable('api_keys')
        .set({ last_used_at: now.toISOString() })
        .where('id', '=', row.id)
        .execute();
    }
    return {
      kind: 'api_key',
      tenantId: row.tenant_id,
      userId: row.user_id,
      role: weakerRole(row.role, row.user_role),
      apiKeyId: row.id,
      request: meta,
    };
  }

  async function logout(actor: Extract<Actor, { kind: 'user' }>): Promise<void> {
    const now = clock.now().toISOString();
    await db
      .updateTable('sessions')
      .set({ revoked_at: now })
      .where('id', '=', actor.sessionId)
      .where('revoked_at', 'is', null)
      .execute();
    await deps.audit.record({
      type: 'auth.logout',
      at: now,
      requestId: actor.request.requestId,
      ip: actor.request.ip,
      tenantId: actor.tenantId,
      userId: actor.userId,
      sessionId: actor.sessionId,
    });
  }

  async function me(actor: Actor) {
    if (actor.kind === 'system') throw new TypeError('system actors have no account');
    const user = await db
      .selectFrom('users')
      .innerJoin('tenants', 'tenants.id', 'users.tenant_id')
      .select(['users.id', 'users.email', 'users.name', 'users.role', 'tenants.slug as tenant'])
      .where('users.id', '=', actor.userId)
      .where('users.tenant_id', '=', actor.tenantId)
      .executeTakeFirstOrThrow();
    return { ...user, effectiveRole: actor.role, via: actor.kind };
  }

  return { login, logout, actorFromSession, actorFromApiKey, me };
}

export type AuthService = ReturnType<typeof createAuthService>;
