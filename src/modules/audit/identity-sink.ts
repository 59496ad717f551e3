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
        reason:
          event.passkey === 'passwordless'
            ? 'passkey'
            : event.passkey === 'second_factor'
              ? 'mfa.passkey'
              : event.mfa === true
                ? 'mfa'
                : null,
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
        reason: event.method ?? null,
        fields: ['password'],
      };
    case 'auth.password.change_failed':
      return {
        actor: { kind: 'user', id: event.userId },
        target: { type: 'user', id: event.userId },
        outcome: 'failure',
        reason: event.reason,
      };
    case 'auth.password_reset.requested':
      return {
        actor: { kind: 'anonymous', id: null },
        target: event.userId === null ? null : { type: 'user', id: event.userId },
        reason: event.userId === null ? 'unknown_user' : event.limited ? 'mail_limit' : null,
      };
    case 'auth.password_reset.failed':
    case 'auth.email.change_failed':
      return {
        actor: { kind: 'anonymous', id: null },
        target: event.userId === null ? null : { type: 'user', id: event.userId },
        outcome: 'failure',
        reason: event.reason,
      };
    case 'auth.password_reset.completed':
      return {
        actor: { kind: 'anonymous', id: null },
        target: { type: 'user', id: event.userId },
        fields: ['password'],
      };
    case 'auth.email.change_requested':
      return {
        actor: { kind: 'user', id: event.userId },
        target: { type: 'user', id: event.userId },
        fields: ['email'],
      };
    case 'auth.email.changed':
      return {
        actor: actorOf(event.by),
        target: { type: 'user', id: event.userId },
        fields: ['email'],
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
        reason: event.method === 'passkey' ? 'passkey' : null,
        fields: [event.method === 'passkey' ? 'passkeys' : 'totpSecret'],
      };
    case 'auth.mfa.removed':
      return {
        actor: actorOf(event.by),
        target: { type: 'user', id: event.userId },
        reason: event.proof,
        fields: [event.method === 'passkey' ? 'passkeys' : 'totpSecret'],
      };
    case 'auth.passkey.renamed':
      return {
        actor: { kind: 'user', id: event.userId },
        target: { type: 'passkey', id: event.passkeyId },
        fields: ['name'],
      };
    case 'auth.passkey.failed':
      return {
        actor:
          (event.stage === 'register' || event.stage === 'step_up') && event.userId !== null
            ? { kind: 'user', id: event.userId }
            : { kind: 'anonymous', id: null },
        target:
          event.passkeyId !== null
            ? { type: 'passkey', id: event.passkeyId }
            : event.userId === null
              ? null
              : { type: 'user', id: event.userId },
        outcome: 'failure',
        reason: `${event.stage}.${event.reason}`,
      };
    case 'auth.passkey.clone_detected':
      return {
        actor: { kind: 'system', id: 'passkey-counter' },
        target: { type: 'passkey', id: event.passkeyId },
        outcome: 'failure',
        reason: 'cloned',
        fields: ['disabledAt'],
      };
    case 'auth.mfa.failed':
      return {
        actor:
          event.stage === 'login' || event.stage === 'password_reset'
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
    case 'auth.mfa.recovery_codes_regenerated':
      return {
        actor: { kind: 'user', id: event.userId },
        target: { type: 'user', id: event.userId },
        reason: 'regenerated',
        fields: ['recoveryCodes'],
      };
  }
}

/** The tenant id of the decoy append below: a UUID no tenant can have (all-zero v7). */
export const DECOY_TENANT_ID = '00000000-0000-7000-8000-000000000000';

class RollBackDecoy extends Error {}

/**
 * The persistent `AuditSink` of the identity module: each identity event becomes a leaf of its
 * tenant's log, in a transaction of its own (the sink is called after the change). Attempts
 * against an unknown tenant have no tenant log: they do a real append's work anyway, under a
 * decoy tenant id in a transaction that is rolled back, so that an unknown tenant answers no
 * faster than a wrong password (nothing of it persists).
 */
export function createIdentityAuditSink(deps: {
  db: Kysely<Database>;
  log: AuditRecorder;
}): AuditSink {
  return {
    async record(event) {
      const mapped = map(event);
      if (event.tenantId === null) {
        await deps.db
          .transaction()
          .execute(async (trx) => {
            // The log's rows reference their tenant: a decoy one, gone with the rollback.
            await trx
              .insertInto('tenants')
              .values({ id: DECOY_TENANT_ID, slug: '-decoy-', name: '-', created_at: event.at })
              .execute();
            await deps.log.append(trx, {
              ...mapped,
              tenantId: DECOY_TENANT_ID,
              type: event.type,
              request: { ip: event.ip ?? null, requestId: event.requestId ?? null },
            });
            throw new RollBackDecoy('decoy append rolled back');
          })
          .catch((error: unknown) => {
            if (!(error instanceof RollBackDecoy)) throw error;
          });
        return;
      }
      const tenantId = event.tenantId;
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
