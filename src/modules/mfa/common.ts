import type { Kysely } from 'kysely';
import type { Clock } from '../../clock.ts';
import type { Actor, RequestMeta } from '../../core/policy/index.ts';
import type { Database } from '../../db/schema.ts';
import { AppError } from '../../errors.ts';
import type { AuditSink, MfaFailureReason } from '../auth/events.ts';
import type { LoginThrottle } from '../auth/throttle.ts';
import type { KeyService } from '../keys/service.ts';

import type { UserCrypto } from '../users/crypto.ts';
export interface MfaDeps {
  db: Kysely<Database>;
  clock: Clock;
  keys: Pick<KeyService, 'tenantDataKey' | 'keyFor'>;
  audit: AuditSink;
  throttle: LoginThrottle;
  /** Opens the user's e-mail (the authenticator app's label). */
  users: UserCrypto;
}

export type UserActor = Extract<Actor, { kind: 'user' }>;

/** Every refused second factor looks the same from outside: wrong, replayed or locked alike. */
export const invalidCode = (kind: 'unauthenticated' | 'invalid') =>
  new AppError(kind, 'auth.mfa_invalid_code', 'second factor refused', {
    detail: 'The code is not correct. Use the current code from your authenticator app.',
  });

export function sessionUser(actor: Actor): UserActor {
  if (actor.kind !== 'user') {
    throw new AppError('forbidden', 'policy.forbidden', 'mfa needs a signed-in user', {
      detail: 'Two-factor authentication is managed from a signed-in session, not an API key.',
    });
  }
  return actor;
}

export type MfaStage = 'login' | 'confirm' | 'remove';

/** The `auth.mfa.failed` event of a refused second factor. */
export function createFailureRecorder(deps: Pick<MfaDeps, 'audit' | 'clock'>) {
  return async (
    user: { tenantId: string; userId: string },
    meta: RequestMeta,
    stage: MfaStage,
    reason: MfaFailureReason,
  ) =>
    deps.audit.record({
      type: 'auth.mfa.failed',
      at: deps.clock.now().toISOString(),
      requestId: meta.requestId,
      ip: meta.ip,
      tenantId: user.tenantId,
      userId: user.userId,
      stage,
      reason,
    });
}

export type FailureRecorder = ReturnType<typeof createFailureRecorder>;
