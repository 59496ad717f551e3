import type { Kysely } from 'kysely';
import type { Clock } from '../../clock.ts';
import { requireFreshAuth, type Actor, type RequestMeta } from '../../core/policy/index.ts';
import type { Database } from '../../db/schema.ts';
import { AppError } from '../../errors.ts';
import type { AuditSink } from '../auth/events.ts';
import { newId } from '../../ids.ts';
import type { UserCrypto } from '../users/crypto.ts';
import type { Mailer } from '../mail/mailer.ts';
import { emailChangeNotice, emailConfirmationMail } from '../mail/templates.ts';
import { isUniqueViolation } from '../records/repository.ts';
import { consumeLink, findLink, issueLink, LINK_TTL_MS, linkError, revokeLinks } from './links.ts';
import { signedInUser } from './password-change.ts';

export interface EmailChangeDeps {
  db: Kysely<Database>;
  clock: Clock;
  audit: AuditSink;
  mailer: Mailer;
  publicUrl: string;
  /** E-mail and name at rest; the address to confirm is sealed in its link too. */
  users: UserCrypto;
}

const emailTaken = (cause?: unknown) =>
  new AppError('conflict', 'user.email_taken', 'email taken', {
    detail: 'A user with this e-mail already exists in the tenant.',
    cause,
  });

/**
 * Changing the sign-in e-mail: asked from a freshly authenticated session, confirmed by a link
 * mailed to the new address (proof it belongs to the user), with a notice to the old one. Whether
 * the address is taken is only told at confirmation, to someone who holds that mailbox, so the
 * request cannot be used to find out who has an account.
 */
export function createEmailChange(deps: EmailChangeDeps) {
  const { db, clock, audit, mailer, publicUrl, users } = deps;

  async function request(who: Actor, input: { email: string }): Promise<{ expiresAt: string }> {
    const actor = signedInUser(who, 'e-mail address');
    requireFreshAuth(actor, clock);
    const user = await users.openOne(
      actor.tenantId,
      await db
        .selectFrom('users')
        .innerJoin('tenants', 'tenants.id', 'users.tenant_id')
        .select(['users.id', 'users.email', 'users.name', 'tenants.name as tenant_name'])
        .where('users.id', '=', actor.userId)
        .where('users.tenant_id', '=', actor.tenantId)
        .executeTakeFirstOrThrow(),
    );
    const newEmail = input.email.trim();
    const now = clock.now();
    const linkId = newId();
    const sealed = await users.sealPendingEmail(actor.tenantId, linkId, newEmail);
    const issued = await db.transaction().execute((trx) =>
      issueLink(
        trx,
        {
          id: linkId,
          tenantId: actor.tenantId,
          userId: actor.userId,
          purpose: 'email_change',
          newEmail: sealed,
        },
        now,
      ),
    );
    await audit.record({
      type: 'auth.email.change_requested',
      at: now.toISOString(),
      requestId: actor.request.requestId,
      ip: actor.request.ip,
      tenantId: actor.tenantId,
      userId: actor.userId,
    });
    const minutes = LINK_TTL_MS / 60_000;
    const link = `${publicUrl}/confirm-email?token=${issued.token}`;
    mailer.send('email_confirmation', {
      to: newEmail,
      ...emailConfirmationMail({ tenantName: user.tenant_name, link, minutes, publicUrl }),
    });
    mailer.send('email_change_notice', {
      to: user.email,
      ...emailChangeNotice({ tenantName: user.tenant_name, at: now.toISOString(), publicUrl }),
    });
    return { expiresAt: issued.expiresAt };
  }

  /** `POST /auth/email/confirm`: applies the change; the link alone proves the new mailbox. */
  async function confirm(input: { token: string }, meta: RequestMeta): Promise<void> {
    const base = { requestId: meta.requestId, ip: meta.ip };
    const refuse = (
      reason: 'unknown' | 'used' | 'expired' | 'email_taken',
      who: { tenantId: string; userId: string } | undefined,
    ) =>
      audit.record({
        type: 'auth.email.change_failed',
        at: clock.now().toISOString(),
        ...base,
        tenantId: who?.tenantId ?? null,
        userId: who?.userId ?? null,
        reason,
      });
    const found = await findLink(db, input.token, 'email_change', clock.now());
    if (!found.ok) {
      await refuse(found.reason, found.link);
      throw linkError('email_change', found.reason);
    }
    const link = found.link;
    if (link.newEmail === null) throw new TypeError('e-mail change link without an address');
    let newEmail: string;
    try {
      newEmail = await users.openPendingEmail(link.tenantId, link.id, link.newEmail);
    } catch (error) {
      // Sealed under a key version retired since (the re-encryption job does not move links,
      // which live 30 minutes): as good as expired.
      if (!(error instanceof AppError) || !error.code.startsWith('resource.')) throw error;
      await refuse('expired', link);
      throw linkError('email_change', 'expired');
    }
    const at = clock.now().toISOString();
    let applied: boolean;
    try {
      applied = await db.transaction().execute(async (trx) => {
        if (!(await consumeLink(trx, link.id, at))) return false;
        const current = await trx
          .selectFrom('users')
          .select(['id', 'email', 'name', 'version'])
          .where('id', '=', link.userId)
          .where('tenant_id', '=', link.tenantId)
          .where('status', '=', 'active')
          .executeTakeFirst();
        if (current === undefined) throw linkError('email_change', 'unknown');
        // E-mail and name are one sealed group: both are sealed again, with the new indexes.
        const { name } = await users.openOne(link.tenantId, current);
        const sealed = await users.seal(link.tenantId, link.userId, { email: newEmail, name });
        const updated = await trx
          .updateTable('users')
          .set({ ...sealed, updated_at: at, version: Number(current.version) + 1 })
          .where('id', '=', link.userId)
          .where('tenant_id', '=', link.tenantId)
          .where('status', '=', 'active')
          .where('version', '=', current.version)
          .executeTakeFirst();
        if (Number(updated.numUpdatedRows) !== 1) {
          throw linkError('email_change', 'unknown');
        }
        // Reset links went to the old address: they no longer name the account's mailbox.
        await revokeLinks(trx, link.userId, 'password_reset', at);
        return true;
      });
    } catch (error) {
      if (isUniqueViolation(error)) {
        await refuse('email_taken', link);
        throw emailTaken(error);
      }
      if (error instanceof AppError) await refuse('unknown', link);
      throw error;
    }
    if (!applied) {
      await refuse('used', link);
      throw linkError('email_change', 'used');
    }
    await audit.record({
      type: 'auth.email.changed',
      at,
      ...base,
      tenantId: link.tenantId,
      userId: link.userId,
      by: link.userId,
    });
  }

  return { request, confirm };
}
