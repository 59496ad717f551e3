import { createHash, randomBytes } from 'node:crypto';
import type { Kysely } from 'kysely';
import type { Clock } from '../../clock.ts';
import type { Database, WebauthnChallengePurpose } from '../../db/schema.ts';
import { newId } from '../../ids.ts';

/** How long a ceremony may take, from its options to its response (also the browser timeout). */
export const CEREMONY_MS = 2 * 60_000;

/**
 * Does the user have a passkey that can sign in (not disabled)? For the lead's
 * `hasSecondFactor` (src/modules/mfa/factors.ts) and the password sign-in's second step.
 */
export async function userHasPasskey(
  db: Kysely<Database>,
  tenantId: string,
  userId: string,
): Promise<boolean> {
  const row = await db
    .selectFrom('user_passkeys')
    .select('id')
    .where('tenant_id', '=', tenantId)
    .where('user_id', '=', userId)
    .where('disabled_at', 'is', null)
    .executeTakeFirst();
  return row !== undefined;
}

const passkeyColumns = [
  'user_passkeys.id',
  'user_passkeys.tenant_id',
  'user_passkeys.user_id',
  'user_passkeys.credential_id',
  'user_passkeys.user_handle',
  'user_passkeys.public_key',
  'user_passkeys.counter',
  'user_passkeys.transports',
  'user_passkeys.name',
  'user_passkeys.created_at',
  'user_passkeys.last_used_at',
  'user_passkeys.disabled_at',
  'user_passkeys.disabled_reason',
] as const;

export function listPasskeys(db: Kysely<Database>, tenantId: string, userId: string) {
  return db
    .selectFrom('user_passkeys')
    .select(passkeyColumns)
    .where('tenant_id', '=', tenantId)
    .where('user_id', '=', userId)
    .orderBy('created_at')
    .orderBy('id')
    .execute();
}

export type PasskeyRow = Awaited<ReturnType<typeof listPasskeys>>[number];

/** A credential by its WebAuthn id, only within the tenant, with its user. */
export function findCredential(db: Kysely<Database>, tenantId: string, credentialId: string) {
  return db
    .selectFrom('user_passkeys')
    .innerJoin('users', 'users.id', 'user_passkeys.user_id')
    .select([
      ...passkeyColumns,
      'users.email',
      'users.name as user_name',
      'users.role',
      'users.status',
    ])
    .where('user_passkeys.tenant_id', '=', tenantId)
    .where('users.tenant_id', '=', tenantId)
    .where('user_passkeys.credential_id', '=', credentialId)
    .executeTakeFirst();
}

/**
 * The WebAuthn user handle of a user: 32 bytes derived from the tenant and user ids, stable
 * across ceremonies (options and response need the same one) and free of personal data.
 */
export function userHandleOf(tenantId: string, userId: string): string {
  return createHash('sha256')
    .update(`custos/webauthn-user-handle\u0000${tenantId}\u0000${userId}`, 'utf8')
    .digest('base64url');
}

/**
 * Records an accepted assertion's counter, only if it moved forward (or both sides are zero, for
 * authenticators without a counter): false when it did not, which is a clone or a race lost to
 * another use of the same authenticator, refused alike.
 */
export async function advanceCounter(
  db: Kysely<Database>,
  passkeyId: string,
  counter: number,
  now: string,
): Promise<boolean> {
  const updated = await db
    .updateTable('user_passkeys')
    .set({ counter, last_used_at: now })
    .where('id', '=', passkeyId)
    .where('disabled_at', 'is', null)
    .where((eb) => (counter === 0 ? eb('counter', '=', 0) : eb('counter', '<', counter)))
    .executeTakeFirst();
  return Number(updated.numUpdatedRows) === 1;
}

export async function disablePasskey(
  db: Kysely<Database>,
  passkeyId: string,
  now: string,
): Promise<void> {
  await db
    .updateTable('user_passkeys')
    .set({ disabled_at: now, disabled_reason: 'cloned' })
    .where('id', '=', passkeyId)
    .where('disabled_at', 'is', null)
    .execute();
}

const hashChallenge = (challenge: string) =>
  createHash('sha256').update(challenge, 'utf8').digest('hex');

export interface ChallengeBinding {
  purpose: WebauthnChallengePurpose;
  tenantId: string;
  userId?: string;
  sessionId?: string;
  mfaChallengeId?: string;
}

/**
 * A fresh 256-bit challenge, stored as its hash with what it is for. Expired challenges are
 * swept on the way, so unauthenticated option requests cannot grow the table without bound.
 */
export async function issueChallenge(
  db: Kysely<Database>,
  clock: Clock,
  binding: ChallengeBinding,
): Promise<string> {
  const now = clock.now();
  const challenge = randomBytes(32).toString('base64url');
  await db.deleteFrom('webauthn_challenges').where('expires_at', '<', now.toISOString()).execute();
  await db
    .insertInto('webauthn_challenges')
    .values({
      id: newId(),
      challenge_hash: hashChallenge(challenge),
      purpose: binding.purpose,
      tenant_id: binding.tenantId,
      user_id: binding.userId ?? null,
      session_id: binding.sessionId ?? null,
      mfa_challenge_id: binding.mfaChallengeId ?? null,
      created_at: now.toISOString(),
      expires_at: new Date(now.getTime() + CEREMONY_MS).toISOString(),
      used_at: null,
    })
    .execute();
  return challenge;
}

/**
 * Spends a challenge if it exists, is unexpired and unspent, and was issued for exactly this
 * binding. Spent on every attempt, right or wrong: a challenge answers one response only.
 */
export async function consumeChallenge(
  db: Kysely<Database>,
  clock: Clock,
  challenge: string | null,
  binding: ChallengeBinding,
): Promise<boolean> {
  if (challenge === null) return false;
  const now = clock.now().toISOString();
  const row = await db
    .selectFrom('webauthn_challenges')
    .select(['id', 'purpose', 'tenant_id', 'user_id', 'session_id', 'mfa_challenge_id'])
    .where('challenge_hash', '=', hashChallenge(challenge))
    .where('used_at', 'is', null)
    .where('expires_at', '>', now)
    .executeTakeFirst();
  if (!row) return false;
  const spent = await db
    .updateTable('webauthn_challenges')
    .set({ used_at: now })
    .where('id', '=', row.id)
    .where('used_at', 'is', null)
    .executeTakeFirst();
  if (Number(spent.numUpdatedRows) !== 1) return false;
  return (
    row.purpose === binding.purpose &&
    row.tenant_id === binding.tenantId &&
    row.user_id === (binding.userId ?? null) &&
    row.session_id === (binding.sessionId ?? null) &&
    row.mfa_challenge_id === (binding.mfaChallengeId ?? null)
  );
}
