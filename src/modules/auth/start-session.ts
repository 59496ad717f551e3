import type { Kysely } from 'kysely';
import type { Clock } from '../../clock.ts';
import type { Database, UserRow } from '../../db/schema.ts';
import { newId } from '../../ids.ts';
import {
  mfaRequirementOf,
  mustHaveSecondFactor,
  type RequestMeta,
} from '../../core/policy/index.ts';
import { asFlag, secondFactorExists } from '../mfa/factors.ts';
import { sql } from 'kysely';
import { hashToken, newToken } from '../identity/tokens.ts';
import type { AuditSink } from './events.ts';

export interface LoginResult {
  token: string;
  sessionId: string;
  expiresAt: string;
  user: Pick<UserRow, 'id' | 'tenant_id' | 'email' | 'name' | 'role'>;
  /** The tenant requires a second factor of this user, who has none: enrol before anything else. */
  mfaEnrolmentRequired: boolean;
}

/** A new session (fresh token, stored hashed) and its `auth.login.succeeded` event. */
export async function startSession(
  deps: { db: Kysely<Database>; clock: Clock; audit: AuditSink; sessionAbsoluteMs: number },
  user: LoginResult['user'],
  meta: RequestMeta,
  options: { mfa: boolean; passkey?: 'passwordless' | 'second_factor' },
): Promise<LoginResult> {
  const now = deps.clock.now();
  const token = newToken();
  const sessionId = newId();
  const settings = await deps.db
    .selectFrom('tenant_settings')
    .select([
      'session_absolute_hours',
      'mfa_required',
      'mfa_required_roles',
      secondFactorExists(sql.val(user.id)).as('has_second_factor'),
    ])
    .where('tenant_id', '=', user.tenant_id)
    .executeTakeFirst();
  const requirement = mfaRequirementOf(
    settings?.mfa_required ?? null,
    settings?.mfa_required_roles ?? null,
  );
  const mfaEnrolmentRequired =
    mustHaveSecondFactor(requirement, user.role) && !asFlag(settings?.has_second_factor);
  const absoluteMs =
    settings?.session_absolute_hours == null
      ? deps.sessionAbsoluteMs
      : Number(settings.session_absolute_hours) * 3_600_000;
  const expiresAt = new Date(now.getTime() + absoluteMs).toISOString();
  await deps.db
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
      authenticated_at: now.toISOString(),
    })
    .execute();
  await deps.audit.record({
    type: 'auth.login.succeeded',
    at: now.toISOString(),
    requestId: meta.requestId,
    ip: meta.ip,
    // The new-device rule of src/modules/detection compares it with the user's earlier sign-ins.
    userAgent: meta.userAgent?.slice(0, 512) ?? null,
    tenantId: user.tenant_id,
    userId: user.id,
    sessionId,
    ...(options.mfa ? { mfa: true } : {}),
    ...(options.passkey ? { passkey: options.passkey } : {}),
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
    mfaEnrolmentRequired,
  };
}
