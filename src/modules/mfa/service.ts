import type { Kysely } from 'kysely';
import { Secret } from 'otpauth';
import { toDataURL } from 'qrcode';
import type { Clock } from '../../clock.ts';
import {
  decryptFieldText,
  encryptField,
  parseEnvelope,
  type FieldAd,
} from '../../core/crypto/index.ts';
import type { Actor, RequestMeta } from '../../core/policy/index.ts';
import type { Database } from '../../db/schema.ts';
import { AppError } from '../../errors.ts';
import { newId } from '../../ids.ts';
import type { KeyService } from '../keys/service.ts';
import type { AuditSink, MfaFailureReason } from '../auth/events.ts';
import type { LoginThrottle } from '../auth/throttle.ts';
import { recordRevocations, revokeSessions } from '../auth/sessions.ts';
import { verifyPassword } from '../identity/passwords.ts';
import {
  checkTotp,
  hashRecoveryCode,
  newRecoveryCodes,
  newTotpSecret,
  totpUri,
  type TotpOutcome,
} from './totp.ts';

export interface MfaDeps {
  db: Kysely<Database>;
  clock: Clock;
  keys: Pick<KeyService, 'tenantDataKey' | 'keyFor'>;
  audit: AuditSink;
  throttle: LoginThrottle;
}

type UserActor = Extract<Actor, { kind: 'user' }>;

export type SecondFactor = { code: string } | { recoveryCode: string };

export type SecondFactorOutcome =
  | { ok: true; method: 'totp' }
  | { ok: true; method: 'recovery_code'; remaining: number }
  | { ok: false; reason: MfaFailureReason };

/** Every refused second factor looks the same from outside: wrong, replayed or locked alike. */
export const invalidCode = (kind: 'unauthenticated' | 'invalid') =>
  new AppError(kind, 'auth.mfa_invalid_code', 'second factor refused', {
    detail: 'The code is not correct. Use the current code from your authenticator app.',
  });

const secretAd = (tenantId: string, userId: string): FieldAd => ({
  tenantId,
  object: 'user',
  field: 'totpSecret',
  recordId: userId,
});

function sessionUser(actor: Actor): UserActor {
  if (actor.kind !== 'user') {
    throw new AppError('forbidden', 'policy.forbidden', 'mfa needs a signed-in user', {
      detail: 'Two-factor authentication is managed from a signed-in session, not an API key.',
    });
  }
  return actor;
}

export function createMfaService(deps: MfaDeps) {
  const { db, clock, keys, audit } = deps;

  async function seal(tenantId: string, userId: string, secret: string): Promise<string> {
    const key = await keys.tenantDataKey(tenantId);
    return encryptField(key.key, key, secretAd(tenantId, userId), secret);
  }

  async function unseal(tenantId: string, userId: string, stored: string): Promise<Secret> {
    const { keyId, keyVersion } = parseEnvelope(stored);
    const key = await keys.keyFor(tenantId, { keyId, keyVersion });
    const base32 = decryptFieldText({ key, keyId, keyVersion }, secretAd(tenantId, userId), stored);
    return Secret.fromBase32(base32);
  }

  const enrolment = (tenantId: string, userId: string) =>
    db
      .selectFrom('user_totp')
      .select(['secret', 'status', 'last_step'])
      .where('user_id', '=', userId)
      .where('tenant_id', '=', tenantId)
      .executeTakeFirst();

  const failed = async (
    user: { tenantId: string; userId: string },
    meta: RequestMeta,
    stage: 'login' | 'confirm' | 'remove',
    reason: MfaFailureReason,
  ) =>
    audit.record({
      type: 'auth.mfa.failed',
      at: clock.now().toISOString(),
      requestId: meta.requestId,
      ip: meta.ip,
      tenantId: user.tenantId,
      userId: user.userId,
      stage,
      reason,
    });

  /**
   * Checks a TOTP code and, if right, records its step as used in the same statement that
   * checks it is newer than the last one: of two requests with one code, only one wins.
   */
  async function useCode(tenantId: string, userId: string, code: string): Promise<TotpOutcome> {
    const row = await enrolment(tenantId, userId);
    if (row?.status !== 'active') return { ok: false, reason: 'bad_code' };
    const secret = await unseal(tenantId, userId, row.secret);
    const outcome = checkTotp({ secret, code, at: clock.now(), lastStep: row.last_step });
    if (!outcome.ok) return outcome;
    const updated = await db
      .updateTable('user_totp')
      .set({ last_step: outcome.step })
      .where('user_id', '=', userId)
      .where('status', '=', 'active')
      .where((eb) => eb.or([eb('last_step', 'is', null), eb('last_step', '<', outcome.step)]))
      .executeTakeFirst();
    return Number(updated.numUpdatedRows) === 1 ? outcome : { ok: false, reason: 'replayed' };
  }

  /** Starts (or restarts) an enrolment: the secret is shown now and never again. */
  async function enrolTotp(who: Actor) {
    const actor = sessionUser(who);
    const user = await db
      .selectFrom('users')
      .select(['email'])
      .where('id', '=', actor.userId)
      .where('tenant_id', '=', actor.tenantId)
      .executeTakeFirstOrThrow();
    const existing = await enrolment(actor.tenantId, actor.userId);
    if (existing?.status === 'active') {
      throw new AppError('conflict', 'auth.mfa_already_enabled', 'totp already enabled', {
        detail: 'Two-factor authentication is already on. Remove it first to enrol a new device.',
      });
    }
    const secret = newTotpSecret();
    const sealed = await seal(actor.tenantId, actor.userId, secret);
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
  async function confirmTotp(who: Actor, code: string) {
    const actor = sessionUser(who);
    const row = await enrolment(actor.tenantId, actor.userId);
    if (row?.status !== 'pending') {
      throw new AppError('conflict', 'auth.mfa_not_enrolled', 'no pending totp enrolment', {
        detail: 'Start an enrolment first.',
      });
    }
    const secret = await unseal(actor.tenantId, actor.userId, row.secret);
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
      if (Number(updated.numUpdatedRows) !== 1) return false;
      await trx.deleteFrom('user_recovery_codes').where('user_id', '=', actor.userId).execute();
      await trx
        .insertInto('user_recovery_codes')
        .values(
          recoveryCodes.map((c) => ({
            id: newId(),
            tenant_id: actor.tenantId,
            user_id: actor.userId,
            code_hash: hashRecoveryCode(actor.userId, c),
            created_at: now,
            used_at: null,
          })),
        )
        .execute();
      return true;
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
    return { recoveryCodes };
  }

  /**
   * Removes TOTP after a current code or the password. Failures count in the sign-in throttle,
   * so a stolen session cannot be used to guess the password here.
   */
  async function removeTotp(who: Actor, proof: { code: string } | { password: string }) {
    const actor = sessionUser(who);
    const meta = actor.request;
    const row = await enrolment(actor.tenantId, actor.userId);
    if (!row) {
      throw new AppError('conflict', 'auth.mfa_not_enrolled', 'no totp enrolment', {
        detail: 'Two-factor authentication is not on.',
      });
    }
    const claimed = await deps.throttle.claim(meta.ip, actor.userId);
    let reason: MfaFailureReason | null = null;
    if (claimed.addressBlocked) reason = 'address_blocked';
    else if (claimed.account?.admitted === false) reason = 'locked';
    else if ('code' in proof) {
      const outcome =
        row.status === 'active'
          ? await useCode(actor.tenantId, actor.userId, proof.code)
          : checkTotp({
              secret: await unseal(actor.tenantId, actor.userId, row.secret),
              code: proof.code,
              at: clock.now(),
            });
      if (!outcome.ok) reason = outcome.reason;
    } else {
      const user = await db
        .selectFrom('users')
        .select(['password_hash'])
        .where('id', '=', actor.userId)
        .executeTakeFirstOrThrow();
      const ok =
        user.password_hash !== null && (await verifyPassword(user.password_hash, proof.password));
      if (!ok) reason = 'bad_password';
    }
    if (reason !== null) {
      await failed(actor, meta, 'remove', reason);
      throw invalidCode('invalid');
    }
    await deps.throttle.succeeded(claimed, actor.userId);
    // Without its second factor the account trusts only the session that removed it.
    const at = clock.now().toISOString();
    const revoked = await db.transaction().execute(async (trx) => {
      await trx.deleteFrom('user_totp').where('user_id', '=', actor.userId).execute();
      await trx.deleteFrom('user_recovery_codes').where('user_id', '=', actor.userId).execute();
      const target = { tenantId: actor.tenantId, userId: actor.userId, except: actor.sessionId };
      return revokeSessions(trx, target, at);
    });
    await audit.record({
      type: 'auth.mfa.removed',
      at: clock.now().toISOString(),
      requestId: meta.requestId,
      ip: meta.ip,
      tenantId: actor.tenantId,
      userId: actor.userId,
      method: 'totp',
      by: actor.userId,
      proof: 'code' in proof ? 'code' : 'password',
    });
    const ended = { userId: actor.userId, sessionIds: revoked, reason: 'mfa_removed' } as const;
    await recordRevocations(audit, actor, ended, at);
  }

  /**
   * The second step of a sign-in: a TOTP code (once per step) or an unused recovery code (spent
   * here). The caller throttles and records the outcome.
   */
  async function verifySecondFactor(
    user: { tenantId: string; userId: string },
    factor: SecondFactor,
  ): Promise<SecondFactorOutcome> {
    if ('code' in factor) {
      const outcome = await useCode(user.tenantId, user.userId, factor.code);
      return outcome.ok ? { ok: true, method: 'totp' } : outcome;
    }
    const spent = await db
      .updateTable('user_recovery_codes')
      .set({ used_at: clock.now().toISOString() })
      .where('user_id', '=', user.userId)
      .where('tenant_id', '=', user.tenantId)
      .where('code_hash', '=', hashRecoveryCode(user.userId, factor.recoveryCode))
      .where('used_at', 'is', null)
      .executeTakeFirst();
    if (Number(spent.numUpdatedRows) !== 1) return { ok: false, reason: 'bad_recovery_code' };
    const left = await db
      .selectFrom('user_recovery_codes')
      .select((eb) => eb.fn.countAll<number | string>().as('n'))
      .where('user_id', '=', user.userId)
      .where('used_at', 'is', null)
      .executeTakeFirstOrThrow();
    return { ok: true, method: 'recovery_code', remaining: Number(left.n) };
  }

  return { enrolTotp, confirmTotp, removeTotp, verifySecondFactor, recordFailure: failed };
}

export type MfaService = ReturnType<typeof createMfaService>;
