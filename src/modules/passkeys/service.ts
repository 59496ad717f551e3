import type { RegistrationResponseJSON } from '@simplewebauthn/server';
import type { Kysely } from 'kysely';
import type { Clock } from '../../clock.ts';
import { requireFreshAuth, type Actor } from '../../core/policy/index.ts';
import type { Database } from '../../db/schema.ts';
import { AppError, notFound } from '../../errors.ts';
import { newId } from '../../ids.ts';
import type { AuditSink } from '../auth/events.ts';
import { recordRevocations, revokeSessions, rotateSessionToken } from '../auth/sessions.ts';
import { isUniqueViolation } from '../records/repository.ts';
import { passkeyInvalid } from './errors.ts';
import {
  checkRegistration,
  challengeOf,
  registrationOptions,
  type RelyingParty,
} from './relying-party.ts';
import {
  consumeChallenge,
  issueChallenge,
  listPasskeys,
  userHandleOf,
  type PasskeyRow,
} from './repository.ts';

import type { UserCrypto } from '../users/crypto.ts';

export interface PasskeyDeps {
  db: Kysely<Database>;
  clock: Clock;
  audit: AuditSink;
  rp: RelyingParty;
  /** Opens the user's e-mail and name (the authenticator's label for the passkey). */
  users: UserCrypto;
}

type UserActor = Extract<Actor, { kind: 'user' }>;

/** What a user sees of a passkey: never the key, the counter or the user handle. */
export interface PasskeyView {
  id: string;
  name: string;
  createdAt: string;
  lastUsedAt: string | null;
  transports: string[];
  disabled: boolean;
  disabledReason: 'cloned' | null;
}

export function toView(row: PasskeyRow): PasskeyView {
  return {
    id: row.id,
    name: row.name,
    createdAt: row.created_at,
    lastUsedAt: row.last_used_at,
    transports: parseTransports(row.transports),
    disabled: row.disabled_at !== null,
    disabledReason: row.disabled_reason,
  };
}

export function parseTransports(json: string): string[] {
  const value: unknown = JSON.parse(json);
  return Array.isArray(value) ? value.filter((t): t is string => typeof t === 'string') : [];
}

function sessionUser(actor: Actor): UserActor {
  if (actor.kind !== 'user') {
    throw new AppError('forbidden', 'policy.forbidden', 'passkeys need a signed-in user', {
      detail: 'Passkeys are managed from a signed-in session, not an API key.',
    });
  }
  return actor;
}

/** Registering, listing, renaming and removing one's own passkeys. */
export function createPasskeyService(deps: PasskeyDeps) {
  const { db, clock, audit, rp } = deps;

  const fresh = (who: Actor): UserActor => {
    const actor = sessionUser(who);
    requireFreshAuth(actor, clock);
    return actor;
  };

  async function ownPasskey(actor: UserActor, id: string): Promise<PasskeyRow> {
    const rows = await listPasskeys(db, actor.tenantId, actor.userId);
    const row = rows.find((r) => r.id === id);
    if (!row) throw notFound('passkey');
    return row;
  }

  /** `navigator.credentials.create()` options; the challenge is bound to this session. */
  async function registrationStart(who: Actor) {
    const actor = fresh(who);
    const user = await deps.users.openOne(
      actor.tenantId,
      await db
        .selectFrom('users')
        .select(['id', 'email', 'name'])
        .where('id', '=', actor.userId)
        .where('tenant_id', '=', actor.tenantId)
        .executeTakeFirstOrThrow(),
    );
    const existing = await listPasskeys(db, actor.tenantId, actor.userId);
    const challenge = await issueChallenge(db, clock, {
      purpose: 'register',
      tenantId: actor.tenantId,
      userId: actor.userId,
      sessionId: actor.sessionId,
    });
    return registrationOptions(rp, {
      challenge,
      userHandle: userHandleOf(actor.tenantId, actor.userId),
      userName: user.email,
      displayName: user.name,
      exclude: existing.map((p) => ({
        credentialId: p.credential_id,
        transports: parseTransports(p.transports),
      })),
    });
  }

  /**
   * Stores a verified new passkey. When the session was held to enrolment by the tenant's MFA
   * rule, it now has full access: under a new token, returned as `session` (a privilege change
   * never keeps the old token, as after a TOTP enrolment).
   */
  async function registrationFinish(
    who: Actor,
    input: { credential: RegistrationResponseJSON; name?: string | undefined },
  ): Promise<{ passkey: PasskeyView; session?: { token: string; expiresAt: string } }> {
    const actor = fresh(who);
    const meta = actor.request;
    const fail = async (reason: 'challenge_invalid' | 'bad_response') => {
      await audit.record({
        type: 'auth.passkey.failed',
        at: clock.now().toISOString(),
        requestId: meta.requestId,
        ip: meta.ip,
        tenantId: actor.tenantId,
        userId: actor.userId,
        passkeyId: null,
        stage: 'register',
        reason,
      });
      return passkeyInvalid('invalid');
    };
    const challenge = challengeOf(input.credential);
    const bound = await consumeChallenge(db, clock, challenge, {
      purpose: 'register',
      tenantId: actor.tenantId,
      userId: actor.userId,
      sessionId: actor.sessionId,
    });
    if (!bound || challenge === null) throw await fail('challenge_invalid');
    const credential = await checkRegistration(rp, input.credential, challenge);
    if (!credential) throw await fail('bad_response');

    const now = clock.now().toISOString();
    const existing = await listPasskeys(db, actor.tenantId, actor.userId);
    const id = newId();
    let session: { token: string; expiresAt: string } | undefined;
    try {
      session = await db.transaction().execute(async (trx) => {
        await trx
          .insertInto('user_passkeys')
          .values({
            id,
            tenant_id: actor.tenantId,
            user_id: actor.userId,
            credential_id: credential.credentialId,
            user_handle: userHandleOf(actor.tenantId, actor.userId),
            public_key: credential.publicKey,
            counter: credential.counter,
            transports: JSON.stringify(credential.transports),
            name: input.name?.trim() || `Passkey ${existing.length + 1}`,
            aaguid: credential.aaguid,
            created_at: now,
            last_used_at: null,
            disabled_at: null,
            disabled_reason: null,
          })
          .execute();
        if (actor.mfaEnrolmentRequired !== true) return undefined;
        return rotateSessionToken(trx, actor.sessionId);
      });
    } catch (error) {
      if (!isUniqueViolation(error)) throw error;
      throw new AppError('conflict', 'auth.passkey_exists', 'credential id taken', {
        detail: 'This passkey is already registered.',
        cause: error,
      });
    }
    await audit.record({
      type: 'auth.mfa.enrolled',
      at: now,
      requestId: meta.requestId,
      ip: meta.ip,
      tenantId: actor.tenantId,
      userId: actor.userId,
      method: 'passkey',
      passkeyId: id,
    });
    const passkey = toView(await ownPasskey(actor, id));
    return session ? { passkey, session } : { passkey };
  }

  async function list(who: Actor): Promise<PasskeyView[]> {
    const actor = sessionUser(who);
    return (await listPasskeys(db, actor.tenantId, actor.userId)).map(toView);
  }

  async function rename(who: Actor, id: string, name: string): Promise<PasskeyView> {
    const actor = sessionUser(who);
    await ownPasskey(actor, id);
    await db
      .updateTable('user_passkeys')
      .set({ name: name.trim() })
      .where('id', '=', id)
      .where('tenant_id', '=', actor.tenantId)
      .where('user_id', '=', actor.userId)
      .execute();
    await audit.record({
      type: 'auth.passkey.renamed',
      at: clock.now().toISOString(),
      requestId: actor.request.requestId,
      ip: actor.request.ip,
      tenantId: actor.tenantId,
      userId: actor.userId,
      passkeyId: id,
    });
    return toView(await ownPasskey(actor, id));
  }

  /**
   * Removes a passkey (needs a fresh sign-in or step-up). Like every change to the account's
   * second factors (TOTP removal too), the account then trusts only the session that made it:
   * every other session ends.
   */
  async function remove(who: Actor, id: string): Promise<void> {
    const actor = fresh(who);
    await ownPasskey(actor, id);
    const at = clock.now().toISOString();
    const revoked = await db.transaction().execute(async (trx) => {
      await trx
        .deleteFrom('user_passkeys')
        .where('id', '=', id)
        .where('tenant_id', '=', actor.tenantId)
        .where('user_id', '=', actor.userId)
        .execute();
      const target = { tenantId: actor.tenantId, userId: actor.userId, except: actor.sessionId };
      return revokeSessions(trx, target, at);
    });
    await audit.record({
      type: 'auth.mfa.removed',
      at,
      requestId: actor.request.requestId,
      ip: actor.request.ip,
      tenantId: actor.tenantId,
      userId: actor.userId,
      method: 'passkey',
      passkeyId: id,
      by: actor.userId,
      proof: 'step_up',
    });
    const ended = { userId: actor.userId, sessionIds: revoked, reason: 'mfa_removed' } as const;
    await recordRevocations(audit, actor, ended, at);
  }

  return { registrationStart, registrationFinish, list, rename, remove };
}

export type PasskeyService = ReturnType<typeof createPasskeyService>;
