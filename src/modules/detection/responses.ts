import type { Transaction } from 'kysely';
import type { Database } from '../../db/schema.ts';
import type { AuditRecorder } from '../audit/service.ts';
import { revokeSessions } from '../auth/sessions.ts';
import type { ResponseAction } from './settings.ts';

const BY_DETECTION = { kind: 'system', id: 'detection' } as const;

export interface ResponseContext {
  tenantId: string;
  userId: string;
  alertId: string;
  now: Date;
  exportBlockMinutes: number;
}

/**
 * Applies the database part of the responses in the alert's transaction, each recorded in the
 * audit log with the alert as its reason, and returns what must follow the commit (the account
 * lock lives in the sign-in throttle store, which may be Redis). Responses need a subject user:
 * an alert about an address alone (password spraying) acts on nobody.
 */
export async function applyResponses(
  trx: Transaction<Database>,
  audit: AuditRecorder,
  ctx: ResponseContext,
  actions: readonly ResponseAction[],
): Promise<{ lockAccount: boolean }> {
  const now = ctx.now.toISOString();
  const reason = `alert:${ctx.alertId}`;
  let lockAccount = false;
  for (const action of actions) {
    switch (action) {
      case 'lock_account':
        lockAccount = true;
        await audit.append(trx, {
          tenantId: ctx.tenantId,
          type: 'auth.account.locked',
          actor: BY_DETECTION,
          target: { type: 'user', id: ctx.userId },
          reason: 'until_unlocked',
        });
        break;
      case 'revoke_sessions': {
        const ids = await revokeSessions(trx, { tenantId: ctx.tenantId, userId: ctx.userId }, now);
        for (const id of ids) {
          await audit.append(trx, {
            tenantId: ctx.tenantId,
            type: 'auth.session.revoked',
            actor: BY_DETECTION,
            target: { type: 'session', id },
            reason: 'detection_response',
          });
        }
        break;
      }
      case 'revoke_api_keys': {
        const keys = await trx
          .updateTable('api_keys')
          .set({ revoked_at: now })
          .where('tenant_id', '=', ctx.tenantId)
          .where('user_id', '=', ctx.userId)
          .where('revoked_at', 'is', null)
          .returning('id')
          .execute();
        for (const key of keys) {
          await audit.append(trx, {
            tenantId: ctx.tenantId,
            type: 'api_key.revoked',
            actor: BY_DETECTION,
            target: { type: 'api_key', id: key.id },
            reason: 'detection_response',
          });
        }
        break;
      }
      case 'require_step_up': {
        // step-up.ts asks again when `authenticated_at` is not recent: clear it.
        await trx
          .updateTable('sessions')
          .set({ authenticated_at: null })
          .where('tenant_id', '=', ctx.tenantId)
          .where('user_id', '=', ctx.userId)
          .where('revoked_at', 'is', null)
          .execute();
        await audit.append(trx, {
          tenantId: ctx.tenantId,
          type: 'security.response.step_up_required',
          actor: BY_DETECTION,
          target: { type: 'user', id: ctx.userId },
          reason,
        });
        break;
      }
      case 'block_exports': {
        const until = new Date(ctx.now.getTime() + ctx.exportBlockMinutes * 60_000).toISOString();
        await trx
          .insertInto('user_restrictions')
          .values({
            user_id: ctx.userId,
            tenant_id: ctx.tenantId,
            exports_blocked_until: until,
            updated_at: now,
          })
          .onConflict((oc) =>
            oc.column('user_id').doUpdateSet({ exports_blocked_until: until, updated_at: now }),
          )
          .execute();
        await audit.append(trx, {
          tenantId: ctx.tenantId,
          type: 'security.response.exports_blocked',
          actor: BY_DETECTION,
          target: { type: 'user', id: ctx.userId },
          reason,
        });
        break;
      }
    }
  }
  return { lockAccount };
}
