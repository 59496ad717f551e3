import type { Kysely } from 'kysely';
import type { AuthLinkPurpose, Database } from '../../db/schema.ts';
import { AppError } from '../../errors.ts';
import { newId } from '../../ids.ts';
import type { LinkFailureReason } from '../auth/events.ts';
import { hashToken, newToken } from '../identity/tokens.ts';

/** How long a mailed link works. */
export const LINK_TTL_MS = 30 * 60_000;

/**
 * Issues a single-use link (a 256-bit token, stored as its SHA-256) and revokes the user's older
 * links of the same purpose, so only the newest mail works. Pass a transaction.
 */
export async function issueLink(
  trx: Kysely<Database>,
  link: {
    id?: string;
    tenantId: string;
    userId: string;
    purpose: AuthLinkPurpose;
    /** The address to confirm, already sealed (`UserCrypto.sealPendingEmail` under `id`). */
    newEmail?: string;
  },
  now: Date,
): Promise<{ token: string; expiresAt: string }> {
  await revokeLinks(trx, link.userId, link.purpose, now.toISOString());
  const token = newToken();
  const expiresAt = new Date(now.getTime() + LINK_TTL_MS).toISOString();
  await trx
    .insertInto('auth_links')
    .values({
      id: link.id ?? newId(),
      tenant_id: link.tenantId,
      user_id: link.userId,
      purpose: link.purpose,
      token_hash: hashToken(token),
      new_email: link.newEmail ?? null,
      created_at: now.toISOString(),
      expires_at: expiresAt,
      used_at: null,
      revoked_at: null,
    })
    .execute();
  return { token, expiresAt };
}

/** How many links of one purpose a user was sent since `since` (used, revoked or not). */
export async function countLinksSince(
  conn: Kysely<Database>,
  userId: string,
  purpose: AuthLinkPurpose,
  since: Date,
): Promise<number> {
  const row = await conn
    .selectFrom('auth_links')
    .select((eb) => eb.fn.countAll<number | string>().as('n'))
    .where('user_id', '=', userId)
    .where('purpose', '=', purpose)
    .where('created_at', '>', since.toISOString())
    .executeTakeFirstOrThrow();
  return Number(row.n);
}

/** Makes a user's open links of one purpose unusable (superseded, or moot after a change). */
export async function revokeLinks(
  conn: Kysely<Database>,
  userId: string,
  purpose: AuthLinkPurpose,
  now: string,
): Promise<void> {
  await conn
    .updateTable('auth_links')
    .set({ revoked_at: now })
    .where('user_id', '=', userId)
    .where('purpose', '=', purpose)
    .where('used_at', 'is', null)
    .where('revoked_at', 'is', null)
    .execute();
}

export interface OpenLink {
  id: string;
  tenantId: string;
  userId: string;
  /** As stored: sealed (see `issueLink`). */
  newEmail: string | null;
}

export type LinkLookup =
  | { ok: true; link: OpenLink }
  | {
      ok: false;
      reason: Extract<LinkFailureReason, 'unknown' | 'used' | 'expired'>;
      link?: OpenLink;
    };

/** The link a token names, if it may still be used (not used, revoked nor expired). */
export async function findLink(
  db: Kysely<Database>,
  token: string,
  purpose: AuthLinkPurpose,
  now: Date,
): Promise<LinkLookup> {
  const row = await db
    .selectFrom('auth_links')
    .select(['id', 'tenant_id', 'user_id', 'new_email', 'expires_at', 'used_at', 'revoked_at'])
    .where('token_hash', '=', hashToken(token))
    .where('purpose', '=', purpose)
    .executeTakeFirst();
  if (!row) return { ok: false, reason: 'unknown' };
  const link = {
    id: row.id,
    tenantId: row.tenant_id,
    userId: row.user_id,
    newEmail: row.new_email,
  };
  if (row.used_at !== null) return { ok: false, reason: 'used', link };
  // A superseded link is as good as unknown: a newer mail replaced it.
  if (row.revoked_at !== null) return { ok: false, reason: 'unknown', link };
  if (now.getTime() >= Date.parse(row.expires_at)) return { ok: false, reason: 'expired', link };
  return { ok: true, link };
}

/** Marks the link used; false when another request used or revoked it first. */
export async function consumeLink(
  trx: Kysely<Database>,
  id: string,
  now: string,
): Promise<boolean> {
  const result = await trx
    .updateTable('auth_links')
    .set({ used_at: now })
    .where('id', '=', id)
    .where('used_at', 'is', null)
    .where('revoked_at', 'is', null)
    .executeTakeFirst();
  return Number(result.numUpdatedRows) === 1;
}

/** The client's answer to a refused link: one stable code per reason. */
export function linkError(
  purpose: AuthLinkPurpose,
  reason: 'unknown' | 'used' | 'expired',
): AppError {
  const reset = purpose === 'password_reset';
  const what = reset ? 'password reset link' : 'confirmation link';
  const again = reset ? 'Ask for a new one.' : 'Ask for the change again.';
  switch (reason) {
    case 'used':
      return new AppError(
        'invalid',
        reset ? 'auth.reset_token_used' : 'auth.email_token_used',
        `${purpose} link used`,
        { detail: `This ${what} was already used. ${again}` },
      );
    case 'expired':
      return new AppError(
        'invalid',
        reset ? 'auth.reset_token_expired' : 'auth.email_token_expired',
        `${purpose} link expired`,
        { detail: `This ${what} has expired (links work for 30 minutes). ${again}` },
      );
    case 'unknown':
      return new AppError(
        'invalid',
        reset ? 'auth.reset_token_invalid' : 'auth.email_token_invalid',
        `${purpose} link unknown or superseded`,
        { detail: `This ${what} is not valid, or a newer one replaced it. ${again}` },
      );
  }
}
