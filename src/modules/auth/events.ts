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
  | 'bad_password'
  | 'locked'
  | 'address_blocked'
  | 'disabled';

/** Why a step-up was refused; the client sees `auth.step_up_failed` for all of them. */
export type StepUpFailureReason =
  'bad_password' | 'bad_code' | 'replayed' | 'locked' | 'address_blocked';

export type SessionRevokedReason =
  | 'idle_timeout'
  | 'absolute_timeout'
  | 'user_disabled'
  | 'role_changed'
  | 'user_revoked'
  | 'others_revoked'
  | 'admin_revoked'
  | 'mfa_removed';

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
  | (Base & { type: 'auth.password.changed'; tenantId: string; userId: string; by: string })
  | (Base & { type: 'auth.password.rehashed'; tenantId: string; userId: string })
  | (Base & { type: 'auth.mfa.enrolled'; tenantId: string; userId: string; method: 'totp' })
  | (Base & {
      type: 'auth.mfa.removed';
      tenantId: string;
      userId: string;
      method: 'totp';
      by: string;
      /** What the user proved to remove it. */
      proof: 'code' | 'password';
    })
  | (Base & {
      type: 'auth.mfa.failed';
      tenantId: string;
      userId: string;
      reason: MfaFailureReason;
      stage: 'login' | 'confirm' | 'remove';
    })
  | (Base & {
      type: 'auth.step_up.succeeded';
      tenantId: string;
      userId: string;
      sessionId: string;
      method: 'password' | 'totp';
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
