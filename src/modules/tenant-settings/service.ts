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
import { isPhoneRegion } from '../../core/crypto/index.ts';
import { AppError } from '../../errors.ts';
import { auditActor } from '../audit/event.ts';
import type { AuditRecorder } from '../audit/service.ts';
import { lockPhoneRegion } from './phone-region.ts';

/** A null value means the server default, shown beside it. */
export interface TenantSettingsView {
  sessionIdleMinutes: number | null;
  sessionAbsoluteHours: number | null;
  /** Who must have a second factor: nobody, everyone, or the roles in `mfaRequiredRoles`. */
  mfaRequired: MfaRequiredMode;
  mfaRequiredRoles: Role[];
  /** ISO 3166-1 alpha-2 region national phone numbers are read in; null: international only. */
  phoneRegion: string | null;
  defaults: { sessionIdleMinutes: number; sessionAbsoluteHours: number };
}

export interface TenantSettingsPatch {
  sessionIdleMinutes?: number | null;
  sessionAbsoluteHours?: number | null;
  mfaRequired?: MfaRequiredMode;
  mfaRequiredRoles?: Role[];
  phoneRegion?: string | null;
}

type SettingName = Exclude<keyof TenantSettingsView, 'defaults'>;

export function createTenantSettingsService(deps: {
  db: Kysely<Database>;
  clock: Clock;
  /** Settings changes are recorded in the tenant's audit log, in the change's transaction. */
  audit: AuditRecorder;
  sessionIdleMs: number;
  sessionAbsoluteMs: number;
  /**
   * Rebuilds the phone indexes of the tenant's records in `trx` after the phone region changed
   * in it (contacts: records/reindex.ts); returns how many changed.
   */
  reindexPhones: (trx: Kysely<Database>, tenantId: string) => Promise<{ reindexed: number }>;
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
        'phone_region',
      ])
      .where('tenant_id', '=', tenantId)
      .executeTakeFirst();
    const mfa = mfaRequirementOf(row?.mfa_required ?? null, row?.mfa_required_roles ?? null);
    return {
      sessionIdleMinutes: toNumber(row?.session_idle_minutes ?? null),
      sessionAbsoluteHours: toNumber(row?.session_absolute_hours ?? null),
      mfaRequired: mfa.mode,
      mfaRequiredRoles: mfa.mode === 'roles' ? [...mfa.roles] : [],
      phoneRegion: row?.phone_region ?? null,
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
   * A new phone region re-indexes the tenant's phone numbers in the same transaction, so that
   * filters find every contact by its number read in the new region from the commit on.
   */
  async function update(actor: Actor, patch: TenantSettingsPatch): Promise<TenantSettingsView> {
    authorize(actor, 'manage', 'tenant_settings');
    if (patch.mfaRequired !== undefined || patch.mfaRequiredRoles !== undefined) {
      requireFreshAuth(actor, clock);
    }
    const phoneRegion = patch.phoneRegion;
    if (phoneRegion !== undefined && phoneRegion !== null && !isPhoneRegion(phoneRegion)) {
      throw new AppError('invalid', 'request.invalid', 'unknown phone region', {
        detail:
          'phoneRegion must be an ISO 3166-1 alpha-2 code with phone numbering rules, such as US or DE.',
        errors: [{ field: 'body/phoneRegion', reason: 'is not a supported region code' }],
      });
    }
    return db.transaction().execute(async (trx) => {
      // First, before anything else in the transaction: writes of phone indexes in progress
      // finish, later ones wait for this change (see phone-region.ts).
      if (phoneRegion !== undefined) await lockPhoneRegion(trx, actor.tenantId);
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
        phoneRegion: phoneRegion === undefined ? before.phoneRegion : phoneRegion,
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
        phone_region: after.phoneRegion,
        updated_at: clock.now().toISOString(),
      };
      await trx
        .insertInto('tenant_settings')
        .values({ tenant_id: actor.tenantId, ...row })
        .onConflict((oc) => oc.column('tenant_id').doUpdateSet(row))
        .execute();
      if (changed.includes('phoneRegion')) await deps.reindexPhones(trx, actor.tenantId);
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
