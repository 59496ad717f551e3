import { toDataURL } from 'qrcode';
import type { Actor } from '../../core/policy/index.ts';
import { AppError } from '../../errors.ts';
import { rotateSessionToken } from '../auth/sessions.ts';
import { invalidCode, sessionUser, type FailureRecorder, type MfaDeps } from './common.ts';
import { replaceRecoveryCodes } from './recovery-codes.ts';
import type { TotpSecretStore } from './secret-store.ts';
import { checkTotp, newRecoveryCodes, newTotpSecret, totpUri } from './totp.ts';

export interface ConfirmResult {
  recoveryCodes: string[];
  /**
   * Set when the session was held to enrolment (the tenant requires a second factor): it now
   * has full access, under a new token (a privilege change never keeps the old token).
   */
  session?: { token: string; expiresAt: string };
}

export function createTotpEnrolment(
  deps: Pick<MfaDeps, 'db' | 'clock' | 'audit' | 'users'>,
  store: TotpSecretStore,
  failed: FailureRecorder,
) {
  const { db, clock, audit } = deps;

  /** Starts (or restarts) an enrolment: the secret is shown now and never again. */
  async function enrolTotp(who: Actor) {
    const actor = sessionUser(who);
    const user = await deps.users.openOne(
      actor.tenantId,
      await db
        .selectFrom('users')
        .select(['id', 'email', 'name'])
        .where('id', '=', actor.userId)
        .where('tenant_id', '=', actor.tenantId)
        .executeTakeFirstOrThrow(),
    );
    const existing = await store.enrolment(actor.tenantId, actor.userId);
    if (existing?.status === 'active') {
      throw new AppError('conflict', 'auth.mfa_already_enabled', 'totp already enabled', {
        detail: 'Two-factor authentication is already on. Remove it first to enrol a new device.',
      });
    }
    const secret = newTotpSecret();
    const sealed = await store.seal(actor.tenantId, actor.userId, secret);
    const now = clock.now().toISOString();
    await db.transaction().execute(async (trx) => {
      await trx.deleteFrom('user_totp').where('user_id', '=', actor.userId).execute();
      await trx
        .insertInto('user_totp')
        .values({
          user_id: actor.userId,
          tenant_id: actor.tenantId,
          secret: sealed,
          status: 'pending',
          last_step: null,
          created_at: now,
          confirmed_at: null,
        })
        .execute();
    });
    const uri = totpUri(secret, user.email);
    return { secret, uri, qrCode: await toDataURL(uri, { errorCorrectionLevel: 'M' }) };
  }

  /** Activates a pending enrolment with a first code; returns the recovery codes, shown once. */
  async function confirmTotp(who: Actor, code: string): Promise<ConfirmResult> {
    const actor = sessionUser(who);
    const row = await store.enrolment(actor.tenantId, actor.userId);
    if (row?.status !== 'pending') {
      throw new AppError('conflict', 'auth.mfa_not_enrolled', 'no pending totp enrolment', {
        detail: 'Start an enrolment first.',
      });
    }
    const secret = await store.unseal(actor.tenantId, actor.userId, row.secret);
    const outcome = checkTotp({ secret, code, at: clock.now(), lastStep: null });
    if (!outcome.ok) {
      await failed(actor, actor.request, 'confirm', outcome.reason);
      throw invalidCode('invalid');
    }
    const recoveryCodes = newRecoveryCodes();
    const now = clock.now().toISOString();
    const activated = await db.transaction().execute(async (trx) => {
      const updated = await trx
        .updateTable('user_totp')
        .set({ status: 'active', last_step: outcome.step, confirmed_at: now })
        .where('user_id', '=', actor.userId)
        .where('status', '=', 'pending')
        .where('secret', '=', row.secret)
        .executeTakeFirst();
      if (Number(updated.numUpdatedRows) !== 1) return null;
      const user = { tenantId: actor.tenantId, userId: actor.userId };
      await replaceRecoveryCodes(trx, user, recoveryCodes, now);
      if (actor.mfaEnrolmentRequired !== true) return {};
      return { session: await rotateSessionToken(trx, actor.sessionId) };
    });
    if (!activated) {
      throw new AppError('conflict', 'auth.mfa_not_enrolled', 'enrolment changed meanwhile', {
        detail: 'The enrolment was restarted or confirmed elsewhere. Start again.',
      });
    }
    await audit.record({
      type: 'auth.mfa.enrolled',
      at: now,
      requestId: actor.request.requestId,
      ip: actor.request.ip,
      tenantId: actor.tenantId,
      userId: actor.userId,
      method: 'totp',
    });
    return { recoveryCodes, ...activated };
  }

  return { enrolTotp, confirmTotp };
}
