import { Type, type Static, type TProperties } from '@sinclair/typebox';
import type { Kysely, Transaction } from 'kysely';
import type { Clock } from '../../clock.ts';
import type { Database } from '../../db/schema.ts';
import { authorize, type Actor } from '../../core/policy/index.ts';
import { AppError } from '../../errors.ts';
import { Email } from '../../http/schemas.ts';
import { auditActor } from '../audit/event.ts';
import type { AuditRecorder } from '../audit/service.ts';

/** What a rule may do besides raising its alert. */
export const RESPONSE_ACTIONS = [
  'lock_account',
  'revoke_sessions',
  'revoke_api_keys',
  'require_step_up',
  'block_exports',
] as const;
export type ResponseAction = (typeof RESPONSE_ACTIONS)[number];

const Actions = Type.Array(Type.Union(RESPONSE_ACTIONS.map((a) => Type.Literal(a))), {
  maxItems: RESPONSE_ACTIONS.length,
  uniqueItems: true,
  description: 'Responses taken when the rule raises a new alert',
});
const Minutes = Type.Integer({ minimum: 1, maximum: 1440 });
const Enabled = Type.Boolean();
const HourMinute = Type.String({ pattern: '^([01][0-9]|2[0-3]):[0-5][0-9]$' });

/** Every rule's settings; a PATCH gives any subset, validated against these bounds. */
export const RuleSettingsSchema = {
  brute_force: Type.Object(
    {
      enabled: Enabled,
      failures: Type.Integer({ minimum: 2, maximum: 1000 }),
      windowMinutes: Minutes,
      actions: Actions,
    },
    { additionalProperties: false },
  ),
  password_spraying: Type.Object(
    {
      enabled: Enabled,
      distinctUsers: Type.Integer({ minimum: 2, maximum: 1000 }),
      failures: Type.Integer({ minimum: 2, maximum: 100_000 }),
      windowMinutes: Minutes,
      actions: Actions,
    },
    { additionalProperties: false },
  ),
  bulk_read: Type.Object(
    {
      enabled: Enabled,
      records: Type.Integer({ minimum: 2, maximum: 1_000_000 }),
      windowMinutes: Minutes,
      actions: Actions,
    },
    { additionalProperties: false },
  ),
  off_hours: Type.Object({ enabled: Enabled, actions: Actions }, { additionalProperties: false }),
  new_device: Type.Object(
    {
      enabled: Enabled,
      lookbackDays: Type.Integer({ minimum: 1, maximum: 730 }),
      actions: Actions,
    },
    { additionalProperties: false },
  ),
  privilege_escalation: Type.Object(
    { enabled: Enabled, actions: Actions },
    { additionalProperties: false },
  ),
  break_glass: Type.Object({ enabled: Enabled, actions: Actions }, { additionalProperties: false }),
  audit_verification_failed: Type.Object({ enabled: Enabled }, { additionalProperties: false }),
  key_rotation_overdue: Type.Object(
    {
      enabled: Enabled,
      /** The active data key of the tenant may be this old before the alert (default 365). */
      maxAgeDays: Type.Integer({ minimum: 1, maximum: 3650 }),
    },
    { additionalProperties: false },
  ),
};

export type RuleId = keyof typeof RuleSettingsSchema;
export const RULE_IDS = Object.keys(RuleSettingsSchema) as RuleId[];

export const BusinessHoursSchema = Type.Object(
  {
    timeZone: Type.String({ minLength: 1, maxLength: 64, pattern: '^[A-Za-z0-9_+/-]+$' }),
    start: HourMinute,
    end: HourMinute,
    /** ISO weekdays, 1 = Monday ... 7 = Sunday. */
    days: Type.Array(Type.Integer({ minimum: 1, maximum: 7 }), {
      minItems: 1,
      maxItems: 7,
      uniqueItems: true,
    }),
  },
  { additionalProperties: false },
);
export type BusinessHours = Static<typeof BusinessHoursSchema>;

/** Who is mailed a new alert: the tenant's active owners and admins, and/or listed addresses. */
export const AlertRecipientsSchema = Type.Object(
  {
    ownersAndAdmins: Type.Boolean(),
    emails: Type.Array(Email, { maxItems: 10, uniqueItems: true }),
  },
  { additionalProperties: false },
);
export type AlertRecipientSettings = Static<typeof AlertRecipientsSchema>;

export const SettingsSchema = Type.Object(
  {
    rules: Type.Object(RuleSettingsSchema, { additionalProperties: false }),
    /** Null: the tenant has no business hours (the off-hours rule then never fires). */
    businessHours: Type.Union([BusinessHoursSchema, Type.Null()]),
    exportBlockMinutes: Type.Integer({ minimum: 1, maximum: 10_080 }),
    alertRecipients: AlertRecipientsSchema,
  },
  { additionalProperties: false },
);
export type DetectionSettings = Static<typeof SettingsSchema>;

export const SettingsPatchSchema = Type.Object(
  {
    rules: Type.Optional(
      Type.Object(
        Object.fromEntries(
          RULE_IDS.map((id) => [id, Type.Optional(Type.Partial(RuleSettingsSchema[id]))]),
        ) as TProperties,
        { additionalProperties: false, minProperties: 1 },
      ),
    ),
    businessHours: Type.Optional(Type.Union([BusinessHoursSchema, Type.Null()])),
    exportBlockMinutes: Type.Optional(Type.Integer({ minimum: 1, maximum: 10_080 })),
    alertRecipients: Type.Optional(Type.Partial(AlertRecipientsSchema)),
  },
  { additionalProperties: false, minProperties: 1 },
);
export interface DetectionSettingsPatch {
  rules?: { [K in RuleId]?: Partial<DetectionSettings['rules'][K]> };
  businessHours?: BusinessHours | null;
  exportBlockMinutes?: number;
  alertRecipients?: Partial<AlertRecipientSettings>;
}

/** Sane defaults: every rule on but off-hours (it needs the tenant's hours), no automatic action. */
export const DEFAULT_SETTINGS: DetectionSettings = {
  rules: {
    brute_force: { enabled: true, failures: 10, windowMinutes: 15, actions: [] },
    password_spraying: {
      enabled: true,
      distinctUsers: 5,
      failures: 30,
      windowMinutes: 15,
      actions: [],
    },
    bulk_read: { enabled: true, records: 500, windowMinutes: 10, actions: [] },
    off_hours: { enabled: false, actions: [] },
    new_device: { enabled: true, lookbackDays: 90, actions: [] },
    privilege_escalation: { enabled: true, actions: [] },
    break_glass: { enabled: true, actions: [] },
    audit_verification_failed: { enabled: true },
    key_rotation_overdue: { enabled: true, maxAgeDays: 365 },
  },
  businessHours: null,
  exportBlockMinutes: 60,
  alertRecipients: { ownersAndAdmins: true, emails: [] },
};

function merge(stored: DetectionSettingsPatch): DetectionSettings {
  const rules = { ...DEFAULT_SETTINGS.rules } as Record<RuleId, object>;
  for (const id of RULE_IDS) {
    rules[id] = { ...DEFAULT_SETTINGS.rules[id], ...(stored.rules?.[id] ?? {}) };
  }
  return {
    rules: rules as DetectionSettings['rules'],
    businessHours:
      stored.businessHours === undefined ? DEFAULT_SETTINGS.businessHours : stored.businessHours,
    exportBlockMinutes: stored.exportBlockMinutes ?? DEFAULT_SETTINGS.exportBlockMinutes,
    alertRecipients: { ...DEFAULT_SETTINGS.alertRecipients, ...stored.alertRecipients },
  };
}

/** The tenant's settings, the defaults where it changed nothing. */
export async function readSettings(
  db: Kysely<Database> | Transaction<Database>,
  tenantId: string,
): Promise<DetectionSettings> {
  const row = await db
    .selectFrom('detection_settings')
    .select(['settings'])
    .where('tenant_id', '=', tenantId)
    .executeTakeFirst();
  return merge(row ? (JSON.parse(row.settings) as DetectionSettingsPatch) : {});
}

function invalid(field: string, reason: string): AppError {
  return new AppError('invalid', 'request.invalid', `detection settings: ${field} ${reason}`, {
    detail: `${field} ${reason}`,
    errors: [{ field, reason }],
  });
}

/** Checks TypeBox cannot express: a real IANA time zone, a non-empty day. */
function assertCoherent(settings: DetectionSettings): void {
  const hours = settings.businessHours;
  if (hours === null) return;
  try {
    new Intl.DateTimeFormat('en-US', { timeZone: hours.timeZone });
  } catch {
    throw invalid('body/businessHours/timeZone', 'is not a known IANA time zone');
  }
  if (hours.start === hours.end) {
    throw invalid('body/businessHours/end', 'must differ from start');
  }
}

/** Names of the settings a patch changes, for the audit event (names only). */
function changedFields(before: DetectionSettings, after: DetectionSettings): string[] {
  const out: string[] = [];
  for (const id of RULE_IDS) {
    const a = before.rules[id] as Record<string, unknown>;
    const b = after.rules[id] as Record<string, unknown>;
    for (const key of Object.keys(b)) {
      if (JSON.stringify(a[key]) !== JSON.stringify(b[key])) out.push(`rules.${id}.${key}`);
    }
  }
  if (JSON.stringify(before.businessHours) !== JSON.stringify(after.businessHours)) {
    out.push('businessHours');
  }
  if (before.exportBlockMinutes !== after.exportBlockMinutes) out.push('exportBlockMinutes');
  for (const key of ['ownersAndAdmins', 'emails'] as const) {
    if (JSON.stringify(before.alertRecipients[key]) !== JSON.stringify(after.alertRecipients[key]))
      out.push(`alertRecipients.${key}`);
  }
  return out;
}

/** `GET/PATCH /api/v1/detection/settings`: owners and admins; every change audited. */
export function createDetectionSettingsService(deps: {
  db: Kysely<Database>;
  clock: Clock;
  audit: AuditRecorder;
}) {
  const { db, clock } = deps;

  async function get(actor: Actor): Promise<DetectionSettings> {
    authorize(actor, 'manage', 'tenant_settings');
    return readSettings(db, actor.tenantId);
  }

  async function update(actor: Actor, patch: DetectionSettingsPatch): Promise<DetectionSettings> {
    authorize(actor, 'manage', 'tenant_settings');
    return db.transaction().execute(async (trx) => {
      const row = await trx
        .selectFrom('detection_settings')
        .select(['settings'])
        .where('tenant_id', '=', actor.tenantId)
        .executeTakeFirst();
      const stored = row ? (JSON.parse(row.settings) as DetectionSettingsPatch) : {};
      const before = merge(stored);
      const next: DetectionSettingsPatch = {
        rules: { ...stored.rules },
        ...(stored.businessHours === undefined ? {} : { businessHours: stored.businessHours }),
        ...(stored.exportBlockMinutes === undefined
          ? {}
          : { exportBlockMinutes: stored.exportBlockMinutes }),
        ...(stored.alertRecipients === undefined
          ? {}
          : { alertRecipients: stored.alertRecipients }),
      };
      for (const id of RULE_IDS) {
        const change = patch.rules?.[id];
        if (change)
          (next.rules as Record<string, object>)[id] = { ...stored.rules?.[id], ...change };
      }
      if (patch.businessHours !== undefined) next.businessHours = patch.businessHours;
      if (patch.exportBlockMinutes !== undefined)
        next.exportBlockMinutes = patch.exportBlockMinutes;
      if (patch.alertRecipients !== undefined)
        next.alertRecipients = { ...stored.alertRecipients, ...patch.alertRecipients };
      const after = merge(next);
      assertCoherent(after);
      const fields = changedFields(before, after);
      if (fields.length === 0) return after;
      const now = clock.now().toISOString();
      const json = JSON.stringify(next);
      await trx
        .insertInto('detection_settings')
        .values({ tenant_id: actor.tenantId, settings: json, updated_at: now })
        .onConflict((oc) => oc.column('tenant_id').doUpdateSet({ settings: json, updated_at: now }))
        .execute();
      await deps.audit.append(trx, {
        tenantId: actor.tenantId,
        type: 'detection.settings.changed',
        ...auditActor(actor),
        target: { type: 'tenant', id: actor.tenantId },
        fields,
      });
      return after;
    });
  }

  return { get, update };
}

export type DetectionSettingsService = ReturnType<typeof createDetectionSettingsService>;
