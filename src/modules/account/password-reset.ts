import type { AuthenticationResponseJSON } from '@simplewebauthn/server';
import type { Kysely } from 'kysely';
import type { Clock } from '../../clock.ts';
import type { RequestMeta } from '../../core/policy/index.ts';
import type { Database } from '../../db/schema.ts';
import { AppError } from '../../errors.ts';
import type { AuditSink, LinkFailureReason, MfaFailureReason } from '../auth/events.ts';
import { revokeSessions } from '../auth/sessions.ts';
import { lockoutEvent, type LoginThrottle } from '../auth/throttle.ts';
import { assertPasswordAcceptable } from '../identity/password-policy.ts';
import { hashPassword } from '../identity/passwords.ts';
import type { Mailer } from '../mail/mailer.ts';
import { passwordResetMail } from '../mail/templates.ts';
import { hasSecondFactor } from '../mfa/factors.ts';
import { invalidCode, type MfaService, type SecondFactor } from '../mfa/service.ts';
import { passkeyInvalid } from '../passkeys/errors.ts';
import type { PasskeySignIn, UserBinding } from '../passkeys/sign-in.ts';
import type { UserCrypto } from '../users/crypto.ts';
import {
  consumeLink,
  countLinksSince,
  findLink,
  issueLink,
  LINK_TTL_MS,
  linkError,
} from './links.ts';

export interface PasswordResetDeps {
  db: Kysely<Database>;
  clock: Clock;
  audit: AuditSink;
  throttle: LoginThrottle;
  mfa: Pick<MfaService, 'verifySecondFactor'>;
  passkeys: Pick<PasskeySignIn, 'userAssertionStart' | 'verifyUserAssertion'>;
  mailer: Mailer;
  publicUrl: string;
  /** Finds the user by the e-mail's blind index; opens e-mail and name. */
  users: UserCrypto;
}

export interface ResetConfirmation {
  token: string;
  newPassword: string;
  code?: string | undefined;
  recoveryCode?: string | undefined;
  /** An assertion answering `passkeyOptions` for this link. */
  passkey?: AuthenticationResponseJSON | undefined;
}

/** A reset's passkey challenge is for the link's user. */
const resetBinding = (link: { tenantId: string; userId: string }): UserBinding => ({
  purpose: 'password_reset',
  tenantId: link.tenantId,
  userId: link.userId,
});

/**
 * At most this many reset mails per account per window: a mailbox cannot be flooded through the
 * form, and the address budget of the throttle cannot be dodged by spreading over many clients.
 */
export const RESET_MAILS_PER_WINDOW = 3;
export const RESET_MAIL_WINDOW_MS = 60 * 60_000;

/** A user id no row has: an unknown user's request runs the same statements against it. */
const NOBODY = '00000000-0000-7000-8000-000000000000';

export function createPasswordReset(deps: PasswordResetDeps) {
  const { db, clock, audit, throttle } = deps;

  /**
   * `POST /auth/password-reset`: the same answer, and the same statements before it, whether or
   * not an active user has this e-mail; the mail leaves after the commit, in the background.
   * Every request counts against the client address's daily budget of the sign-in throttle, and
   * an account gets at most `RESET_MAILS_PER_WINDOW` mails an hour; beyond, nothing is sent and
   * the answer (and the work before it) is the same as for an unknown e-mail, so it tells nothing.
   */
  async function request(input: { tenant: string; email: string }, meta: RequestMeta) {
    const claimed = await throttle.claim(meta.ip, undefined);
    if (claimed.addressBlocked) {
      throw new AppError('rate_limited', 'auth.reset_rate_limited', 'address over its budget', {
        detail:
          'Too many attempts from this network today. Try again tomorrow or ask your administrator.',
      });
    }
    // As sign-in does: the tenant, then its active users under the e-mail's blind index (a
    // decoy index against no tenant when it does not exist), candidates confirmed after opening.
    const row = await db
      .selectFrom('tenants')
      .select(['id as tenant_id', 'name as tenant_name'])
      .where('slug', '=', input.tenant.trim().toLowerCase())
      .executeTakeFirst();
    const user =
      (await deps.users.findByEmail(row?.tenant_id ?? null, input.email, (emailBidx) =>
        db
          .selectFrom('users')
          .select(['id', 'email', 'name'])
          .where('tenant_id', '=', row?.tenant_id ?? '')
          .where('email_bidx', '=', emailBidx)
          .where('status', '=', 'active')
          .execute(),
      )) ?? null;
    const now = clock.now();
    const { issued, limited } = await db.transaction().execute(async (trx) => {
      const tenantId = row?.tenant_id ?? NOBODY;
      const since = new Date(now.getTime() - RESET_MAIL_WINDOW_MS);
      const recent = await countLinksSince(trx, user?.id ?? NOBODY, 'password_reset', since);
      // Past its hourly mails the account is treated as nobody: the same statements, the same
      // answer, no mail, and the last link sent keeps working.
      const over = recent >= RESET_MAILS_PER_WINDOW;
      const userId = user && !over ? user.id : NOBODY;
      const made = await issueLink(trx, { tenantId, userId, purpose: 'password_reset' }, now);
      if (userId !== NOBODY) return { issued: made, limited: false };
      // No such user: the same statements and a committed write, then nothing left behind.
      await trx.deleteFrom('auth_links').where('user_id', '=', NOBODY).execute();
      return { issued: undefined, limited: user !== null };
    });
    await audit.record({
      type: 'auth.password_reset.requested',
      at: now.toISOString(),
      requestId: meta.requestId,
      ip: meta.ip,
      tenantId: row?.tenant_id ?? null,
      userId: user?.id ?? null,
      ...(limited ? { limited: true as const } : {}),
    });
    if (issued && user && row) {
      const link = `${deps.publicUrl}/reset-password?token=${issued.token}`;
      deps.mailer.send('password_reset', {
        to: user.email,
        ...passwordResetMail({
          tenantName: row.tenant_name,
          link,
          minutes: LINK_TTL_MS / 60_000,
          publicUrl: deps.publicUrl,
        }),
      });
    }
  }

  /**
   * `POST /auth/password-reset/confirm`: a valid link, a password the policy accepts and, when
   * the account has a second factor, a current code, a recovery code or a passkey assertion (a
   * mailbox alone never bypasses MFA). Sets the password, ends every session, signs nobody in.
   */
  async function confirm(input: ResetConfirmation, meta: RequestMeta): Promise<void> {
    const base = { requestId: meta.requestId, ip: meta.ip };
    const refuse = async (
      reason: LinkFailureReason,
      who: { tenantId: string; userId: string } | undefined,
    ) =>
      audit.record({
        type: 'auth.password_reset.failed',
        at: clock.now().toISOString(),
        ...base,
        tenantId: who?.tenantId ?? null,
        userId: who?.userId ?? null,
        reason,
      });
    const found = await findLink(db, input.token, 'password_reset', clock.now());
    if (!found.ok) {
      await refuse(found.reason, found.link);
      throw linkError('password_reset', found.reason);
    }
    const link = found.link;
    const stored = await db
      .selectFrom('users')
      .innerJoin('tenants', 'tenants.id', 'users.tenant_id')
      .select([
        'users.id',
        'users.email',
        'users.name',
        'users.status',
        'tenants.slug',
        'tenants.name as tenant_name',
      ])
      .where('users.id', '=', link.userId)
      .where('users.tenant_id', '=', link.tenantId)
      .executeTakeFirst();
    const user = stored && (await deps.users.openOne(link.tenantId, stored));
    if (user?.status !== 'active') {
      await refuse('unknown', link);
      throw linkError('password_reset', 'unknown');
    }
    // Before the second factor is spent: a refused password leaves the link and the code usable.
    await assertPasswordAcceptable(
      input.newPassword,
      { email: user.email, name: user.name, tenantSlug: user.slug, tenantName: user.tenant_name },
      { field: 'body/newPassword' },
    );
    let claimed: Awaited<ReturnType<LoginThrottle['claim']>> | undefined;
    // Any second factor (TOTP or a passkey, see factors.ts): a mailbox alone never bypasses it.
    if (await hasSecondFactor(db, link)) {
      const factor: SecondFactor | { passkey: AuthenticationResponseJSON } | undefined =
        input.code !== undefined
          ? { code: input.code }
          : input.recoveryCode !== undefined
            ? { recoveryCode: input.recoveryCode }
            : input.passkey !== undefined
              ? { passkey: input.passkey }
              : undefined;
      if (!factor) {
        await refuse('mfa_required', link);
        throw new AppError('invalid', 'auth.reset_mfa_required', 'second factor owed', {
          detail:
            'Two-factor authentication is on for this account: send the current code ("code"), a recovery code ("recoveryCode") or a passkey assertion ("passkey", options from /auth/password-reset/passkey-options) with the new password.',
        });
      }
      // Code guesses through this door count like those at sign-in.
      claimed = await throttle.claim(meta.ip, link.userId);
      let reason: MfaFailureReason | null = null;
      let remaining: number | undefined;
      if (claimed.addressBlocked) reason = 'address_blocked';
      else if (claimed.account?.admitted === false) reason = 'locked';
      else if ('passkey' in factor) {
        const checked = await deps.passkeys.verifyUserAssertion(
          resetBinding(link),
          factor.passkey,
          meta,
        );
        if (!checked.ok) reason = 'bad_passkey';
      } else {
        const outcome = await deps.mfa.verifySecondFactor(link, factor);
        if (!outcome.ok) reason = outcome.reason;
        else if (outcome.method === 'recovery_code') remaining = outcome.remaining;
      }
      const at = clock.now().toISOString();
      if (reason !== null) {
        await audit.record({
          type: 'auth.mfa.failed',
          at,
          ...base,
          tenantId: link.tenantId,
          userId: link.userId,
          stage: 'password_reset',
          reason,
        });
        const locked = lockoutEvent(claimed, link, meta, at);
        if (locked) await audit.record(locked);
        await refuse('mfa_failed', link);
        throw 'passkey' in factor ? passkeyInvalid('invalid') : invalidCode('invalid');
      }
      if (remaining !== undefined) {
        await audit.record({
          type: 'auth.mfa.recovery_code_used',
          at,
          ...base,
          tenantId: link.tenantId,
          userId: link.userId,
          remaining,
        });
      }
    }
    const passwordHash = await hashPassword(input.newPassword);
    const at = clock.now().toISOString();
    const revoked = await db.transaction().execute(async (trx) => {
      if (!(await consumeLink(trx, link.id, at))) return null;
      await trx
        .updateTable('users')
        .set({ password_hash: passwordHash, updated_at: at })
        .where('id', '=', link.userId)
        .where('tenant_id', '=', link.tenantId)
        .execute();
      return revokeSessions(trx, { tenantId: link.tenantId, userId: link.userId }, at);
    });
    if (revoked === null) {
      // Another request used it between the lookup and now.
      await refuse('used', link);
      throw linkError('password_reset', 'used');
    }
    if (claimed) await throttle.succeeded(claimed, link.userId);
    const who = { ...base, tenantId: link.tenantId, userId: link.userId };
    await audit.record({ type: 'auth.password_reset.completed', at, ...who });
    await audit.record({
      type: 'auth.password.changed',
      at,
      ...who,
      by: link.userId,
      method: 'reset',
    });
    for (const sessionId of revoked) {
      await audit.record({
        type: 'auth.session.revoked',
        at,
        ...who,
        sessionId,
        reason: 'password_reset',
        by: link.userId,
      });
    }
  }

  /**
   * `POST /auth/password-reset/passkey-options`: for an account whose second factor is a passkey,
   * options to sign with it, with a challenge bound to the link's user. Needs a usable link.
   */
  async function passkeyOptions(input: { token: string }, meta: RequestMeta) {
    const found = await findLink(db, input.token, 'password_reset', clock.now());
    if (!found.ok) {
      await audit.record({
        type: 'auth.password_reset.failed',
        at: clock.now().toISOString(),
        requestId: meta.requestId,
        ip: meta.ip,
        tenantId: found.link?.tenantId ?? null,
        userId: found.link?.userId ?? null,
        reason: found.reason,
      });
      throw linkError('password_reset', found.reason);
    }
    return deps.passkeys.userAssertionStart(resetBinding(found.link));
  }

  return { request, confirm, passkeyOptions };
}
