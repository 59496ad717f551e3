/**
 * Identity events, one variant per outcome, keyed by `type`. They carry ids, never a password nor
 * an attempted e-mail address: an unknown user's attempt is recorded with `userId: null`.
 */
export type LoginFailureReason =
  'unknown_user' | 'bad_password' | 'locked' | 'address_blocked' | 'disabled';

/**
 * Why a second factor was refused. Clients see one answer for all of them
 * (`auth.mfa_invalid_code`); only the audit log tells a replayed code from a wrong one.
 */
export type MfaFailureReason =
  | 'bad_code'
  | 'replayed'
  | 'bad_recovery_code'
  /** The passkey assertion was refused (`auth.passkey.failed` tells why). */
  | 'bad_passkey'
  | 'bad_password'
  | 'locked'
  | 'address_blocked'
  | 'disabled';

/** Why a step-up was refused; the client sees `auth.step_up_failed` for all of them. */
export type StepUpFailureReason =
  | 'bad_password'
  | 'bad_code'
  | 'bad_recovery_code'
  | 'replayed'
  /** The passkey assertion was refused (`auth.passkey.failed` tells why). */
  | 'bad_passkey'
  | 'locked'
  | 'address_blocked';

/**
 * Why a passkey ceremony was refused. Clients see one answer for all of them
 * (`auth.passkey_invalid`); the audit log tells them apart.
 */
export type PasskeyFailureReason =
  /** The challenge is unknown, expired, spent or was issued for something else. */
  | 'challenge_invalid'
  /** No credential with this id in the tenant (or it belongs to another user). */
  | 'unknown_credential'
  /** The credential was disabled (a clone was detected earlier). */
  | 'credential_disabled'
  /** Signature, origin, RP id, flags or encoding wrong. */
  | 'bad_response'
  /** The signature counter did not increase: a cloned authenticator. */
  | 'cloned'
  | 'locked'
  | 'address_blocked'
  | 'disabled';

export type SessionRevokedReason =
  | 'idle_timeout'
  | 'absolute_timeout'
  | 'user_disabled'
  | 'role_changed'
  | 'user_revoked'
  | 'others_revoked'
  | 'admin_revoked'
  | 'mfa_removed'
  | 'password_changed'
  | 'password_reset';

/** Why a password-reset or e-mail confirmation link was refused. */
export type LinkFailureReason =
  'unknown' | 'used' | 'expired' | 'mfa_required' | 'mfa_failed' | 'email_taken';

interface Base {
  /** ISO time from the injected clock. */
  at: string;
  requestId?: string | undefined;
  ip?: string | null | undefined;
  /** The client's User-Agent (at most 512 characters), where the event records it. */
  userAgent?: string | null | undefined;
}

export type IdentityEvent =
  | (Base & {
      type: 'auth.login.succeeded';
      tenantId: string;
      userId: string;
      sessionId: string;
      /** True when a second factor completed the sign-in. */
      mfa?: boolean;
      /** A passkey signed in alone (`passwordless`) or as the second factor. */
      passkey?: 'passwordless' | 'second_factor';
    })
  | (Base & {
      type: 'auth.login.failed';
      reason: LoginFailureReason;
      /** Null when the tenant is unknown. */
      tenantId: string | null;
      /** Null when the user is unknown. */
      userId: string | null;
    })
  | (Base & {
      type: 'auth.account.locked';
      tenantId: string;
      userId: string;
      failures: number;
      /** Null: locked until an administrator unlocks the account. */
      until: string | null;
    })
  | (Base & { type: 'auth.account.unlocked'; tenantId: string; userId: string; by: string })
  | (Base & { type: 'auth.logout'; tenantId: string; userId: string; sessionId: string })
  | (Base & {
      type: 'auth.session.revoked';
      tenantId: string;
      userId: string;
      sessionId: string;
      reason: SessionRevokedReason;
      /** Who ended it (a user id); absent when the server did (timeouts). */
      by?: string;
    })
  | (Base & {
      type: 'auth.password.changed';
      tenantId: string;
      userId: string;
      by: string;
      /** `reset`: through a mailed link; `change`: signed in, with the current password. */
      method?: 'change' | 'reset';
    })
  | (Base & {
      type: 'auth.password.change_failed';
      tenantId: string;
      userId: string;
      sessionId: string;
      reason: 'bad_password' | 'locked' | 'address_blocked';
    })
  | (Base & {
      type: 'auth.password_reset.requested';
      /** Null when the tenant is unknown (nothing is recorded then). */
      tenantId: string | null;
      /** Null when no active user has this e-mail: nothing was sent. */
      userId: string | null;
      /** The account had its hourly reset mails already: nothing was sent. */
      limited?: true;
    })
  | (Base & {
      type: 'auth.password_reset.failed';
      /** Null when the token is unknown. */
      tenantId: string | null;
      userId: string | null;
      reason: LinkFailureReason;
    })
  | (Base & { type: 'auth.password_reset.completed'; tenantId: string; userId: string })
  | (Base & { type: 'auth.email.change_requested'; tenantId: string; userId: string })
  | (Base & {
      type: 'auth.email.change_failed';
      tenantId: string | null;
      userId: string | null;
      reason: LinkFailureReason;
    })
  | (Base & { type: 'auth.email.changed'; tenantId: string; userId: string; by: string })
  | (Base & { type: 'auth.password.rehashed'; tenantId: string; userId: string })
  | (Base & {
      type: 'auth.mfa.enrolled';
      tenantId: string;
      userId: string;
      method: 'totp' | 'passkey';
      /** The passkey's id (method `passkey`). */
      passkeyId?: string;
    })
  | (Base & {
      type: 'auth.mfa.removed';
      tenantId: string;
      userId: string;
      method: 'totp' | 'passkey';
      passkeyId?: string;
      by: string;
      /** What the user proved to remove it (a passkey: a fresh sign-in or step-up). */
      proof: 'code' | 'password' | 'step_up';
    })
  | (Base & { type: 'auth.passkey.renamed'; tenantId: string; userId: string; passkeyId: string })
  | (Base & {
      type: 'auth.passkey.failed';
      /** Null when the tenant is unknown. */
      tenantId: string | null;
      /** Null when no user could be told (unknown credential). */
      userId: string | null;
      passkeyId: string | null;
      stage: 'register' | 'passwordless' | 'second_factor' | 'password_reset' | 'step_up';
      reason: PasskeyFailureReason;
    })
  | (Base & {
      type: 'auth.passkey.clone_detected';
      tenantId: string;
      userId: string;
      passkeyId: string;
      /** The counter stored from the last accepted use, and the one presented now. */
      storedCounter: number;
      presentedCounter: number;
    })
  | (Base & {
      type: 'auth.mfa.failed';
      tenantId: string;
      userId: string;
      reason: MfaFailureReason;
      stage: 'login' | 'confirm' | 'remove' | 'password_reset';
    })
  | (Base & {
      type: 'auth.step_up.succeeded';
      tenantId: string;
      userId: string;
      sessionId: string;
      method: 'password' | 'totp' | 'recovery_code' | 'passkey';
    })
  | (Base & {
      type: 'auth.step_up.failed';
      tenantId: string;
      userId: string;
      sessionId: string;
      reason: StepUpFailureReason;
    })
  | (Base & {
      type: 'auth.mfa.recovery_code_used';
      tenantId: string;
      userId: string;
      /** Unused codes left. */
      remaining: number;
    })
  | (Base & {
      type: 'auth.mfa.recovery_codes_regenerated';
      tenantId: string;
      userId: string;
      sessionId: string;
      /** How many new codes; every earlier one stopped working. */
      count: number;
    });

export type IdentityEventType = IdentityEvent['type'];

/** Where identity events go; the audit module provides the persistent one. */
export interface AuditSink {
  record(event: IdentityEvent): Promise<void> | void;
}

export const noopAuditSink: AuditSink = { record: () => undefined };

/** Keeps every event in memory (tests). */
export function createCollectingSink(): AuditSink & { events: IdentityEvent[] } {
  const events: IdentityEvent[] = [];
  return { events, record: (event) => void events.push(event) };
}
