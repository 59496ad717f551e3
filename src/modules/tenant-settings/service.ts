import type { Kysely } from 'kysely';
import type { Clock } from '../../clock.ts';
import { toNumber, type Database, type MfaRequiredMode } from '../../db/schema.ts';
import {
  authorize,
  mfaRequirementOf,
  requireFreshAuth,
  type Actor,
  type Role,
} from '../../core/policy/index.ts';
import { AppError } from '../../errors.ts';
import { auditActor } from '../audit/event.ts';
import type { AuditRecorder } from '../audit/service.ts';

/** A null value means the server default, shown beside it. */
export interface TenantSettingsView {
  sessionIdleMinutes: number | null;
  sessionAbsoluteHours: number | null;
  /** Who must have a second factor: nobody, everyone, or the roles in `mfaRequiredRoles`. */
  mfaRequired: MfaRequiredMode;
  mfaRequiredRoles: Role[];
  defaults: { sessionIdleMinutes: number; sessionAbsoluteHours: number };
}

export interface TenantSettingsPatch {
  sessionIdleMinutes?: number | null;
  sessionAbsoluteHours?: number | null;
  mfaRequired?: MfaRequiredMode;
  mfaRequiredRoles?: Role[];
}

type SettingName = Exclude<keyof TenantSettingsView, 'defaults'>;

export function createTenantSettingsService(deps: {
  db: Kysely<Database>;
  clock: Clock;
  /** Settings changes are recorded in the tenant's audit log, in the change's transaction. */
  audit: AuditRecorder;
  sessionIdleMs: number;
  sessionAbsoluteMs: number;
}) {
  const { db, clock } = deps;
  const defaults = {
    sessionIdleMinutes: Math.round(deps.sessionIdleMs / 60_000),
    sessionAbsoluteHours: Math.round(deps.sessionAbsoluteMs / 3_600_000),
  };

  async function read(conn: Kysely<Database>, tenantId: string): Promise<TenantSettingsView> {
    const row = await conn
      .selectFrom('tenant_settings')
      .select([
        'session_idle_minutes',
        'session_absolute_hours',
        'mfa_required',
        'mfa_required_roles',
      ])
      .where('tenant_id', '=', tenantId)
      .executeTakeFirst();
    const mfa = mfaRequirementOf(row?.mfa_required ?? null, row?.mfa_required_roles ?? null);
    return {
      sessionIdleMinutes: toNumber(row?.session_idle_minutes ?? null),
      sessionAbsoluteHours: toNumber(row?.session_absolute_hours ?? null),
      mfaRequired: mfa.mode,
      mfaRequiredRoles: mfa.mode === 'roles' ? [...mfa.roles] : [],
      defaults,
    };
  }

  async function get(actor: Actor): Promise<TenantSettingsView> {
    authorize(actor, 'manage', 'tenant_settings');
    return read(db, actor.tenantId);
  }

  /**
   * Shorter timeouts apply to existing sessions at their next request; longer ones to new ones.
   * A second-factor requirement applies at once: the next request of a user it covers who has no
   * second factor is held to enrolment; changing it needs a fresh authentication (step-up).
   */
  async function update(actor: Actor, patch: TenantSettingsPatch): Promise<TenantSettingsView> {
    authorize(actor, 'manage', 'tenant_settings');
    if (patch.mfaRequired !== undefined || patch.mfaRequiredRoles !== undefined) {
      requireFreshAuth(actor, clock);
    }
    return db.transaction().execute(async (trx) => {
      const before = await read(trx, actor.tenantId);
      const mfaRequired = patch.mfaRequired ?? before.mfaRequired;
      // Roles are kept only under `roles`; switching to `off` or `all` clears them.
      const roles =
        mfaRequired === 'roles'
          ? [...new Set(patch.mfaRequiredRoles ?? before.mfaRequiredRoles)]
          : [];
      if (mfaRequired === 'roles' && roles.length === 0) {
        throw new AppError('invalid', 'request.invalid', 'mfa roles missing', {
          detail: 'With mfaRequired "roles", list at least one role in mfaRequiredRoles.',
          errors: [{ field: 'body/mfaRequiredRoles', reason: 'must list at least one role' }],
        });
      }
      if (mfaRequired !== 'roles' && (patch.mfaRequiredRoles?.length ?? 0) > 0) {
        throw new AppError('invalid', 'request.invalid', 'mfa roles without roles mode', {
          detail: 'mfaRequiredRoles applies only with mfaRequired "roles".',
          errors: [{ field: 'body/mfaRequiredRoles', reason: 'needs mfaRequired "roles"' }],
        });
      }
      const after = {
        sessionIdleMinutes:
          patch.sessionIdleMinutes === undefined
            ? before.sessionIdleMinutes
            : patch.sessionIdleMinutes,
        sessionAbsoluteHours:
          patch.sessionAbsoluteHours === undefined
            ? before.sessionAbsoluteHours
            : patch.sessionAbsoluteHours,
        mfaRequired,
        mfaRequiredRoles: roles,
      };
      const changed = (Object.keys(after) as SettingName[]).filter(
        (name) => JSON.stringify(after[name]) !== JSON.stringify(before[name]),
      );
      if (changed.length === 0) return before;
      const row = {
        session_idle_minutes: after.sessionIdleMinutes,
        session_absolute_hours: after.sessionAbsoluteHours,
        mfa_required: after.mfaRequired,
        mfa_required_roles: after.mfaRequiredRoles.join(','),
        updated_at: clock.now().toISOString(),
      };
      await trx
        .insertInto('tenant_settings')
        .values({ tenant_id: actor.tenantId, ...row })
        .onConflict((oc) => oc.column('tenant_id').doUpdateSet(row))
        .execute();
      // The names of the settings that changed, never their values (as for records).
      await deps.audit.append(trx, {
        tenantId: actor.tenantId,
        type: 'tenant.settings.updated',
        ...auditActor(actor),
        target: { type: 'tenant', id: actor.tenantId },
        fields: changed,
      });
      return read(trx, actor.tenantId);
    });
  }

  return { get, update };
}

export type TenantSettingsService = ReturnType<typeof createTenantSettingsService>;
