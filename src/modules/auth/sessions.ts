import type { Kysely } from 'kysely';
import type { Clock } from '../../clock.ts';
import type { Database } from '../../db/schema.ts';
import { authorize, mayGrantRole, requireFreshAuth, type Actor } from '../../core/policy/index.ts';
import { AppError, notFound } from '../../errors.ts';
import { hashToken, newToken } from '../identity/tokens.ts';
import type { AuditSink, SessionRevokedReason } from './events.ts';

/** What a user sees of a session: never the token hash. */
export interface SessionView {
  id: string;
  createdAt: string;
  lastSeenAt: string;
  expiresAt: string;
  ip: string | null;
  userAgent: string | null;
  current: boolean;
}

type UserActor = Extract<Actor, { kind: 'user' }>;

/**
 * Revokes a user's active sessions (one, or all but one) and returns their ids. Takes a
 * transaction when the revocation is part of a larger change.
 */
export async function revokeSessions(
  conn: Kysely<Database>,
  target: { tenantId: string; userId: string; only?: string; except?: string },
  now: string,
): Promise<string[]> {
  let query = conn
    .updateTable('sessions')
    .set({ revoked_at: now })
    .where('tenant_id', '=', target.tenantId)
    .where('user_id', '=', target.userId)
    .where('revoked_at', 'is', null);
  if (target.only !== undefined) query = query.where('id', '=', target.only);
  if (target.except !== undefined) query = query.where('id', '!=', target.except);
  const rows = await query.returning('id').execute();
  return rows.map((r) => r.id);
}

/**
 * Gives an open session a new token (the old one stops working at once) after a privilege change,
 * such as completing a required second-factor enrolment. Returns the token and the session end.
 */
export async function rotateSessionToken(
  conn: Kysely<Database>,
  sessionId: string,
): Promise<{ token: string; expiresAt: string }> {
  const token = newToken();
  const row = await conn
    .updateTable('sessions')
    .set({ token_hash: hashToken(token) })
    .where('id', '=', sessionId)
    .where('revoked_at', 'is', null)
    .returning('expires_at')
    .executeTakeFirst();
  if (!row) {
    throw new AppError('unauthenticated', 'auth.unauthenticated', 'session gone', {
      detail: 'Sign in to continue.',
    });
  }
  return { token, expiresAt: row.expires_at };
}

/** One `auth.session.revoked` event per session; call once the revocation is committed. */
export async function recordRevocations(
  audit: AuditSink,
  actor: Exclude<Actor, { kind: 'system' }>,
  revoked: { userId: string; sessionIds: readonly string[]; reason: SessionRevokedReason },
  at: string,
): Promise<void> {
  for (const sessionId of revoked.sessionIds) {
    await audit.record({
      type: 'auth.session.revoked',
      at,
      requestId: actor.request.requestId,
      ip: actor.request.ip,
      tenantId: actor.tenantId,
      userId: revoked.userId,
      sessionId,
      reason: revoked.reason,
      by: actor.userId,
    });
  }
}

function sessionUser(actor: Actor): UserActor {
  if (actor.kind !== 'user') {
    throw new AppError('forbidden', 'policy.forbidden', 'sessions need a signed-in user', {
      detail: 'Sessions are managed from a signed-in session, not an API key.',
    });
  }
  return actor;
}

export function createSessionService(deps: {
  db: Kysely<Database>;
  clock: Clock;
  audit: AuditSink;
  /** The server default, as in `actorFromSession`. */
  sessionIdleMs: number;
}) {
  const { db, clock } = deps;

  /** The caller's own sessions that still work (same limits as `actorFromSession`), newest first. */
  async function list(who: Actor): Promise<SessionView[]> {
    const actor = sessionUser(who);
    const now = clock.now().getTime();
    const settings = await db
      .selectFrom('tenant_settings')
      .select(['session_idle_minutes', 'session_absolute_hours'])
      .where('tenant_id', '=', actor.tenantId)
      .executeTakeFirst();
    const idleMs =
      settings?.session_idle_minutes == null
        ? deps.sessionIdleMs
        : Number(settings.session_idle_minutes) * 60_000;
    const absoluteMs =
      settings?.session_absolute_hours == null
        ? Infinity
        : Number(settings.session_absolute_hours) * 3_600_000;
    const rows = await db
      .selectFrom('sessions')
      .select(['id', 'created_at', 'last_seen_at', 'expires_at', 'ip', 'user_agent'])
      .where('tenant_id', '=', actor.tenantId)
      .where('user_id', '=', actor.userId)
      .where('revoked_at', 'is', null)
      .orderBy('created_at', 'desc')
      .orderBy('id', 'desc')
      .execute();
    return rows.flatMap((row) => {
      const current = row.id === actor.sessionId;
      const ends = Math.min(Date.parse(row.expires_at), Date.parse(row.created_at) + absoluteMs);
      const idle = now >= Date.parse(row.last_seen_at) + idleMs;
      // Expired but not yet revoked (that happens at its next request): no longer active.
      if (!current && (idle || now >= ends)) return [];
      return [
        {
          id: row.id,
          createdAt: row.created_at,
          lastSeenAt: row.last_seen_at,
          expiresAt: new Date(ends).toISOString(),
          ip: row.ip,
          userAgent: row.user_agent,
          current,
        },
      ];
    });
  }

  /** Revokes one of the caller's own sessions; anyone else's id is unknown (404). */
  async function revoke(who: Actor, sessionId: string): Promise<void> {
    const actor = sessionUser(who);
    const at = clock.now().toISOString();
    const ids = await revokeSessions(
      db,
      { tenantId: actor.tenantId, userId: actor.userId, only: sessionId },
      at,
    );
    if (ids.length === 0) throw notFound('session');
    await recordRevocations(
      deps.audit,
      actor,
      { userId: actor.userId, sessionIds: ids, reason: 'user_revoked' },
      at,
    );
  }

  /** Revokes every session of the caller but the one making the request. */
  async function revokeOthers(who: Actor): Promise<number> {
    const actor = sessionUser(who);
    const at = clock.now().toISOString();
    const ids = await revokeSessions(
      db,
      { tenantId: actor.tenantId, userId: actor.userId, except: actor.sessionId },
      at,
    );
    await recordRevocations(
      deps.audit,
      actor,
      { userId: actor.userId, sessionIds: ids, reason: 'others_revoked' },
      at,
    );
    return ids.length;
  }

  /** An administrator ends all of a user's sessions; never for an account above their rank. */
  async function revokeForUser(actor: Actor, userId: string): Promise<number> {
    authorize(actor, 'manage', 'user');
    if (actor.kind === 'system') throw new TypeError('system jobs revoke sessions directly');
    requireFreshAuth(actor, clock);
    const user = await db
      .selectFrom('users')
      .select(['id', 'role'])
      .where('tenant_id', '=', actor.tenantId)
      .where('id', '=', userId)
      .executeTakeFirst();
    if (!user) throw notFound('user');
    if (!mayGrantRole(actor, user.role)) {
      throw new AppError('forbidden', 'user.role_not_allowed', `cannot manage ${user.role}`, {
        detail: `You cannot end the sessions of a user whose role ("${user.role}") is above your own.`,
      });
    }
    const at = clock.now().toISOString();
    const ids = await revokeSessions(db, { tenantId: actor.tenantId, userId }, at);
    await recordRevocations(
      deps.audit,
      actor,
      { userId, sessionIds: ids, reason: 'admin_revoked' },
      at,
    );
    return ids.length;
  }

  return { list, revoke, revokeOthers, revokeForUser };
}

export type SessionService = ReturnType<typeof createSessionService>;
