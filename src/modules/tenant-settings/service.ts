import { auditActor } from '../audit/event.ts';
import type { AuditRecorder } from '../audit/service.ts';
import type { Kysely } from 'kysely';
import type { Clock } from '../../clock.ts';
import { toNumber, type Database } from '../../db/schema.ts';
import { authorize, type Actor } from '../../core/policy/index.ts';

/** A null value means the server default, shown beside it. */
export interface TenantSettingsView {
  sessionIdleMinutes: number | null;
  sessionAbsoluteHours: number | null;
  defaults: { sessionIdleMinutes: number; sessionAbsoluteHours: number };
}

export interface TenantSettingsPatch {
  sessionIdleMinutes?: number | null;
  sessionAbsoluteHours?: number | null;
}

export function createTenantSettingsService(deps: {
  db: Kysely<Database>;
  clock: Clock;
  sessionIdleMs: number;
  sessionAbsoluteMs: number;
  /** Records settings.tenant_changed (names of the changed settings) in the transaction. */
  audit?: AuditRecorder;
}) {
  const { db, clock } = deps;
  const defaults = {
    sessionIdleMinutes: Math.round(deps.sessionIdleMs / 60_000),
    sessionAbsoluteHours: Math.round(deps.sessionAbsoluteMs / 3_600_000),
  };

  async function read(conn: Kysely<Database>, tenantId: string): Promise<TenantSettingsView> {
    const row = await conn
      .selectFrom('tenant_settings')
      .select(['session_idle_minutes', 'session_absolute_hours'])
      .where('tenant_id', '=', tenantId)
      .executeTakeFirst();
    return {
      sessionIdleMinutes: toNumber(row?.session_idle_minutes ?? null),
      sessionAbsoluteHours: toNumber(row?.session_absolute_hours ?? null),
      defaults,
    };
  }

  async function get(actor: Actor): Promise<TenantSettingsView> {
    authorize(actor, 'manage', 'tenant_settings');
    return read(db, actor.tenantId);
  }

  /** Shorter timeouts apply to existing sessions at their next request; longer ones to new ones. */
  async function update(actor: Actor, patch: TenantSettingsPatch): Promise<TenantSettingsView> {
    authorize(actor, 'manage', 'tenant_settings');
    const changes = {
      ...(patch.sessionIdleMinutes === undefined
        ? {}
        : { session_idle_minutes: patch.sessionIdleMinutes }),
      ...(patch.sessionAbsoluteHours === undefined
        ? {}
        : { session_absolute_hours: patch.sessionAbsoluteHours }),
      updated_at: clock.now().toISOString(),
    };
    return db.transaction().execute(async (trx) => {
      await trx
        .insertInto('tenant_settings')
        .values({
          tenant_id: actor.tenantId,
          session_idle_minutes: null,
          session_absolute_hours: null,
          ...changes,
        })
        .onConflict((oc) => oc.column('tenant_id').doUpdateSet(changes))
        .execute();
      await deps.audit?.append(trx, {
        tenantId: actor.tenantId,
        type: 'settings.tenant_changed',
        ...auditActor(actor),
        target: { type: 'tenant', id: actor.tenantId },
        fields: Object.keys(patch).filter(
          (k) => patch[k as keyof TenantSettingsPatch] !== undefined,
        ),
      });
      return read(trx, actor.tenantId);
    });
  }

  return { get, update };
}

export type TenantSettingsService = ReturnType<typeof createTenantSettingsService>;
