import type { AuthenticationResponseJSON } from '@simplewebauthn/server';
import { randomBytes } from 'node:crypto';
import type { Kysely } from 'kysely';
import type { Clock } from '../../clock.ts';
import type { RequestMeta } from '../../core/policy/index.ts';
import type { Database } from '../../db/schema.ts';
import { AppError } from '../../errors.ts';
import type { AuditSink, PasskeyFailureReason } from '../auth/events.ts';
import type { UserCrypto } from '../users/crypto.ts';
import { pendingMfaChallenge } from '../auth/login-mfa.ts';
import { startSession, type LoginResult } from '../auth/start-session.ts';
import { lockoutEvent, type LoginThrottle } from '../auth/throttle.ts';
import { passkeyInvalid } from './errors.ts';
import {
  authenticationOptions,
  challengeOf,
  checkAssertion,
  type RelyingParty,
} from './relying-party.ts';
import {
  advanceCounter,
  consumeChallenge,
  disablePasskey,
  findCredential,
  listPasskeys,
  issueChallenge,
  type ChallengeBinding,
} from './repository.ts';
import { parseTransports } from './service.ts';

export interface PasskeySignInDeps {
  db: Kysely<Database>;
  clock: Clock;
  audit: AuditSink;
  throttle: LoginThrottle;
  rp: RelyingParty;
  sessionAbsoluteMs: number;
  /** Opens the signed-in user's e-mail and name (for the session's answer). */
  users: UserCrypto;
}

type Stage = 'passwordless' | 'second_factor' | 'password_reset' | 'step_up';

/** A challenge for one known user's passkeys. */
export type UserBinding = ChallengeBinding & {
  purpose: 'second_factor' | 'password_reset' | 'step_up';
  userId: string;
};

const stageOf = (purpose: UserBinding['purpose']): Stage => purpose;
type Credential = NonNullable<Awaited<ReturnType<typeof findCredential>>>;

/**
 * Sign-in with a passkey: alone (discoverable credential, user verification required) or as the
 * second step after a right password (bound to the `mfaToken`). Both refuse every failure with
 * the same answer and record the reason; a signature counter that does not move forward
 * disables the credential (a cloned authenticator).
 */
export function createPasskeySignIn(deps: PasskeySignInDeps) {
  const { db, clock, audit, throttle, rp } = deps;

  const failed = (
    meta: RequestMeta,
    stage: Stage,
    who: { tenantId: string | null; userId: string | null; passkeyId: string | null },
    reason: PasskeyFailureReason,
  ) =>
    audit.record({
      type: 'auth.passkey.failed',
      at: clock.now().toISOString(),
      requestId: meta.requestId,
      ip: meta.ip,
      ...who,
      stage,
      reason,
    });

  /**
   * Verifies an assertion from a known credential against a spent challenge, then moves its
   * counter forward. Returns the failure reason, or null when the assertion is accepted.
   */
  async function accept(
    meta: RequestMeta,
    credential: Credential,
    response: AuthenticationResponseJSON,
    challenge: string,
    userVerification: 'required' | 'preferred',
  ): Promise<PasskeyFailureReason | null> {
    if (credential.disabled_at !== null) return 'credential_disabled';
    const checked = await checkAssertion(
      rp,
      response,
      challenge,
      {
        credentialId: credential.credential_id,
        publicKey: credential.public_key,
        userHandle: credential.user_handle,
      },
      userVerification,
    );
    if (!checked) return 'bad_response';
    const stored = Number(credential.counter);
    const now = clock.now().toISOString();
    const stale = (checked.counter > 0 || stored > 0) && checked.counter <= stored;
    if (!stale && (await advanceCounter(db, credential.id, checked.counter, now))) return null;
    // The right key signed with a counter at or below the last one seen: two authenticators
    // share this key. Which is the original cannot be told, so the credential stops working.
    await disablePasskey(db, credential.id, now);
    await audit.record({
      type: 'auth.passkey.clone_detected',
      at: now,
      requestId: meta.requestId,
      ip: meta.ip,
      tenantId: credential.tenant_id,
      userId: credential.user_id,
      passkeyId: credential.id,
      storedCounter: stored,
      presentedCounter: checked.counter,
    });
    return 'cloned';
  }

  /** Options for a passwordless sign-in in a tenant: any discoverable passkey of its users. */
  async function passwordlessStart(input: { tenant: string }) {
    const tenant = await tenantBySlug(input.tenant);
    // An unknown tenant gets options all the same (nothing stored): its existence is not told.
    const challenge = tenant
      ? await issueChallenge(db, clock, { purpose: 'passwordless', tenantId: tenant.id })
      : randomBytes(32).toString('base64url');
    return authenticationOptions(rp, { challenge, allow: [], userVerification: 'required' });
  }

  async function passwordlessFinish(
    input: { tenant: string; credential: AuthenticationResponseJSON },
    meta: RequestMeta,
  ): Promise<LoginResult> {
    const tenant = await tenantBySlug(input.tenant);
    const credential = tenant
      ? await findCredential(db, tenant.id, input.credential.id)
      : undefined;
    const challenge = challengeOf(input.credential);
    // Counted as a failure before anything is checked, as passwords are (see throttle.ts).
    const claimed = await throttle.claim(meta.ip, credential?.user_id);
    const who = {
      tenantId: tenant?.id ?? null,
      userId: credential?.user_id ?? null,
      passkeyId: credential?.id ?? null,
    };
    const fail = async (reason: PasskeyFailureReason) => {
      await failed(meta, 'passwordless', who, reason);
      const locked =
        credential &&
        lockoutEvent(
          claimed,
          { tenantId: credential.tenant_id, userId: credential.user_id },
          meta,
          clock.now().toISOString(),
        );
      if (locked) await audit.record(locked);
      return passkeyInvalid('unauthenticated');
    };
    const bound =
      tenant !== undefined &&
      (await consumeChallenge(db, clock, challenge, {
        purpose: 'passwordless',
        tenantId: tenant.id,
      }));
    if (claimed.addressBlocked) throw await fail('address_blocked');
    if (!bound || challenge === null) throw await fail('challenge_invalid');
    if (!credential) throw await fail('unknown_credential');
    if (claimed.account?.admitted === false) throw await fail('locked');
    if (credential.status !== 'active') throw await fail('disabled');
    const refused = await accept(meta, credential, input.credential, challenge, 'required');
    if (refused) throw await fail(refused);

    await throttle.succeeded(claimed, credential.user_id);
    const user = {
      tenant_id: credential.tenant_id,
      role: credential.role,
      ...(await deps.users.openOne(credential.tenant_id, {
        id: credential.user_id,
        email: credential.email,
        name: credential.user_name,
      })),
    };
    // A user-verifying passkey is two factors in one (possession, and PIN or biometrics).
    return startSession(deps, user, meta, { mfa: true, passkey: 'passwordless' });
  }

  /**
   * Options for the second step of a password sign-in: the user's usable passkeys, with a
   * challenge bound to the `mfaToken`'s challenge.
   */
  async function secondFactorStart(input: { mfaToken: string }) {
    const pending = await pendingMfaChallenge(db, clock, input.mfaToken);
    const challenge = { id: pending.challenge_id, tenantId: pending.tenant_id, userId: pending.id };
    return userAssertionStart(secondFactorBinding(challenge));
  }

  /**
   * Options for an assertion by one of a known user's usable passkeys, with a challenge bound to
   * `binding` (a sign-in's second step, a password reset, a step-up of one session).
   */
  async function userAssertionStart(binding: UserBinding) {
    const passkeys = (await listPasskeys(db, binding.tenantId, binding.userId)).filter(
      (p) => p.disabled_at === null,
    );
    if (passkeys.length === 0) {
      throw new AppError('conflict', 'auth.passkey_not_registered', 'no usable passkey', {
        detail: 'This account has no passkey: use a code from your authenticator app instead.',
      });
    }
    const issued = await issueChallenge(db, clock, binding);
    return authenticationOptions(rp, {
      challenge: issued,
      allow: passkeys.map((p) => ({
        credentialId: p.credential_id,
        transports: parseTransports(p.transports),
      })),
      userVerification: 'preferred',
    });
  }

  /**
   * Checks the passkey answering a second-step challenge; the caller (login-mfa.ts) has found
   * the `mfaToken`, throttles, spends it and starts the session.
   */
  function verifySecondFactor(
    challenge: { id: string; tenantId: string; userId: string },
    response: AuthenticationResponseJSON,
    meta: RequestMeta,
  ): Promise<{ ok: true } | { ok: false }> {
    return verifyUserAssertion(secondFactorBinding(challenge), response, meta);
  }

  /**
   * Checks an assertion answering a challenge issued by `userAssertionStart` for exactly this
   * binding, by one of the binding's user's own usable passkeys, and records a refusal as
   * `auth.passkey.failed` (stage: the binding's purpose). The caller throttles.
   */
  async function verifyUserAssertion(
    binding: UserBinding,
    response: AuthenticationResponseJSON,
    meta: RequestMeta,
  ): Promise<{ ok: true } | { ok: false }> {
    const credential = await findCredential(db, binding.tenantId, response.id);
    const own = credential?.user_id === binding.userId ? credential : undefined;
    const issued = challengeOf(response);
    const bound = await consumeChallenge(db, clock, issued, binding);
    const refused: PasskeyFailureReason | null =
      !bound || issued === null
        ? 'challenge_invalid'
        : !own
          ? 'unknown_credential'
          : await accept(meta, own, response, issued, 'preferred');
    if (refused === null) return { ok: true };
    await failed(
      meta,
      stageOf(binding.purpose),
      { tenantId: binding.tenantId, userId: binding.userId, passkeyId: own?.id ?? null },
      refused,
    );
    return { ok: false };
  }

  const secondFactorBinding = (c: {
    id: string;
    tenantId: string;
    userId: string;
  }): UserBinding => ({
    purpose: 'second_factor',
    tenantId: c.tenantId,
    userId: c.userId,
    mfaChallengeId: c.id,
  });

  const tenantBySlug = (slug: string) =>
    db
      .selectFrom('tenants')
      .select('id')
      .where('slug', '=', slug.trim().toLowerCase())
      .executeTakeFirst();

  return {
    passwordlessStart,
    passwordlessFinish,
    secondFactorStart,
    verifySecondFactor,
    userAssertionStart,
    verifyUserAssertion,
  };
}

export type PasskeySignIn = ReturnType<typeof createPasskeySignIn>;
