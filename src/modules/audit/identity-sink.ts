import type { Kysely } from 'kysely';
import type { Database } from '../../db/schema.ts';
import type { AuditSink, IdentityEvent } from '../auth/events.ts';
import type { AuditEventInput } from './event.ts';
import type { AuditRecorder } from './service.ts';

type Mapped = Omit<AuditEventInput, 'tenantId' | 'type' | 'request'>;

function actorOf(by: string): AuditEventInput['actor'] {
  return by.startsWith('system:')
    ? { kind: 'system', id: by.slice('system:'.length) }
    : { kind: 'user', id: by };
}

function map(event: IdentityEvent): Mapped {
  switch (event.type) {
    case 'auth.login.succeeded':
      return {
        actor: { kind: 'user', id: event.userId },
        target: { type: 'session', id: event.sessionId },
        reason: event.mfa === true ? 'mfa' : null,
      };
    case 'auth.login.failed':
      return {
        actor: { kind: 'anonymous', id: null },
        target: event.userId === null ? null : { type: 'user', id: event.userId },
        outcome: 'failure',
        reason: event.reason,
      };
    case 'auth.account.locked':
      return {
        actor: { kind: 'system', id: 'sign-in-throttle' },
        target: { type: 'user', id: event.userId },
        reason: event.until === null ? 'until_unlocked' : 'temporary',
      };
    case 'auth.account.unlocked':
      return { actor: actorOf(event.by), target: { type: 'user', id: event.userId } };
    case 'auth.logout':
      return {
        actor: { kind: 'user', id: event.userId },
        target: { type: 'session', id: event.sessionId },
      };
    case 'auth.session.revoked':
      return {
        actor:
          event.by === undefined ? { kind: 'system', id: 'session-expiry' } : actorOf(event.by),
        target: { type: 'session', id: event.sessionId },
        reason: event.reason,
      };
    case 'auth.password.changed':
      return {
        actor: actorOf(event.by),
        target: { type: 'user', id: event.userId },
        fields: ['password'],
      };
    case 'auth.password.rehashed':
      return {
        actor: { kind: 'system', id: 'password-rehash' },
        target: { type: 'user', id: event.userId },
        fields: ['password'],
      };
    case 'auth.mfa.enrolled':
      return {
        actor: { kind: 'user', id: event.userId },
        target: { type: 'user', id: event.userId },
        fields: ['totpSecret'],
      };
    case 'auth.mfa.removed':
      return {
        actor: actorOf(event.by),
        target: { type: 'user', id: event.userId },
        reason: event.proof,
        fields: ['totpSecret'],
      };
    case 'auth.mfa.failed':
      return {
        actor:
          event.stage === 'login'
            ? { kind: 'anonymous', id: null }
            : { kind: 'user', id: event.userId },
        target: { type: 'user', id: event.userId },
        outcome: 'failure',
        reason: `${event.stage}.${event.reason}`,
      };
    case 'auth.step_up.succeeded':
      return {
        actor: { kind: 'user', id: event.userId },
        target: { type: 'session', id: event.sessionId },
        reason: event.method,
      };
    case 'auth.step_up.failed':
      return {
        actor: { kind: 'user', id: event.userId },
        target: { type: 'session', id: event.sessionId },
        outcome: 'failure',
        reason: event.reason,
      };
    case 'auth.mfa.recovery_code_used':
      return {
        actor: { kind: 'user', id: event.userId },
        target: { type: 'user', id: event.userId },
        fields: ['recoveryCodes'],
      };
  }
}

/**
 * The persistent `AuditSink` of the identity module: each identity event becomes a leaf of its
 * tenant's log, in a transaction of its own (the sink is called after the change). Attempts
 * against an unknown tenant have no tenant log and are dropped here.
 */
export function createIdentityAuditSink(deps: {
  db: Kysely<Database>;
  log: AuditRecorder;
}): AuditSink {
  return {
    async record(event) {
      if (event.tenantId === null) return;
      const tenantId = event.tenantId;
      const mapped = map(event);
      await deps.db.transaction().execute((trx) =>
        deps.log.append(trx, {
          ...mapped,
          tenantId,
          type: event.type,
          request: {
            ip: event.ip ?? null,
            userAgent: event.userAgent ?? null,
            requestId: event.requestId ?? null,
          },
        }),
      );
    },
  };
}
