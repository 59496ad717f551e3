import type { AlertSeverity } from '../../db/schema.ts';
import type { Db } from '../audit/repository.ts';
import { REPORT_EVENT_TYPES } from '../reports/data.ts';
import type { BusinessHours, DetectionSettings, ResponseAction, RuleId } from './settings.ts';

/** The columns of an audit event the rules look at (no canonical bytes, no hashes). */
export interface DetectionEvent {
  leafIndex: number;
  id: string;
  type: string;
  occurredAt: string;
  actorKind: string;
  actorId: string | null;
  ip: string | null;
  userAgent: string | null;
  targetType: string | null;
  targetId: string | null;
  outcome: string;
  reason: string | null;
}

/** What a rule found: one incident, raised as a new alert or merged into its open one. */
export interface Finding {
  rule: RuleId;
  severity: AlertSeverity;
  subjectUserId: string | null;
  subjectIp: string | null;
  /** Counts and thresholds only: never a personal value. */
  details: Record<string, string | number | boolean | null>;
  /** An unresolved alert of the same rule and subject seen within this long absorbs the finding. */
  mergeMs: number;
  actions: readonly ResponseAction[];
}

export const SEVERITY: Record<RuleId, AlertSeverity> = {
  brute_force: 'high',
  password_spraying: 'high',
  bulk_read: 'high',
  off_hours: 'low',
  new_device: 'medium',
  privilege_escalation: 'high',
  break_glass: 'critical',
  audit_verification_failed: 'critical',
  key_rotation_overdue: 'medium',
};

/** Event types each rule reads. Names not (yet) emitted by Custos are matched all the same. */
export const RULE_EVENT_TYPES = {
  signInFailed: ['auth.login.failed', 'auth.mfa.failed'],
  signInSucceeded: ['auth.login.succeeded'],
  /** Reads of personal records and exports: the security report's own lists. */
  bulkRead: [...REPORT_EVENT_TYPES.sensitiveRead, ...REPORT_EVENT_TYPES.export],
  /**
   * A user's role or an API key's role set, as the users and API-key services record it: the
   * event's `reason` is `role_<role>` (users/service.ts, api-keys/service.ts). Only names Custos
   * emits: a listed name nobody writes would look like coverage and catch nothing.
   */
  privilege: ['user.created', 'user.updated', 'api_key.created'],
  breakGlass: ['auth.break_glass.opened'],
} as const;

/** Events the worker never evaluates: its own output. */
export function isDetectionOutput(type: string): boolean {
  return type.startsWith('security.') || type.startsWith('detection.');
}

const MINUTE = 60_000;
const DAY = 24 * 60 * MINUTE;
const has = (list: readonly string[], type: string) => list.includes(type);

/** Events of the tenant up to and including `e`, within `windowMs` before it. */
function windowOf(db: Db, tenantId: string, e: DetectionEvent, windowMs: number) {
  const since = new Date(Date.parse(e.occurredAt) - windowMs).toISOString();
  return db
    .selectFrom('audit_events')
    .where('tenant_id', '=', tenantId)
    .where('leaf_index', '<=', e.leafIndex)
    .where('occurred_at', '>', since);
}

/** The local ISO weekday (1..7) and minute of the day of `at` in `timeZone`. */
export function localTime(at: Date, timeZone: string): { day: number; minute: number } {
  const parts = new Intl.DateTimeFormat('en-US', {
    timeZone,
    weekday: 'short',
    hour: '2-digit',
    minute: '2-digit',
    hourCycle: 'h23',
  }).formatToParts(at);
  const get = (type: string) => parts.find((p) => p.type === type)?.value ?? '';
  const day = ['Mon', 'Tue', 'Wed', 'Thu', 'Fri', 'Sat', 'Sun'].indexOf(get('weekday')) + 1;
  return { day, minute: Number(get('hour')) * 60 + Number(get('minute')) };
}

/** Is `at` within the tenant's business hours? An end before the start spans midnight. */
export function withinBusinessHours(at: Date, hours: BusinessHours): boolean {
  const { day, minute } = localTime(at, hours.timeZone);
  const toMinute = (hm: string) => Number(hm.slice(0, 2)) * 60 + Number(hm.slice(3, 5));
  const start = toMinute(hours.start);
  const end = toMinute(hours.end);
  if (start < end) return hours.days.includes(day) && minute >= start && minute < end;
  // Overnight shift: the part after midnight belongs to the previous day's shift.
  if (minute >= start) return hours.days.includes(day);
  const previous = day === 1 ? 7 : day - 1;
  return minute < end && hours.days.includes(previous);
}

async function bruteForce(
  db: Db,
  tenantId: string,
  s: DetectionSettings['rules']['brute_force'],
  e: DetectionEvent,
): Promise<Finding | undefined> {
  if (!has(RULE_EVENT_TYPES.signInFailed, e.type) || e.targetType !== 'user' || !e.targetId) {
    return undefined;
  }
  const row = await windowOf(db, tenantId, e, s.windowMinutes * MINUTE)
    .select((eb) => eb.fn.countAll<number | string>().as('n'))
    .where('type', 'in', [...RULE_EVENT_TYPES.signInFailed])
    .where('target_type', '=', 'user')
    .where('target_id', '=', e.targetId)
    .where('outcome', '=', 'failure')
    .executeTakeFirstOrThrow();
  const failures = Number(row.n);
  if (failures < s.failures) return undefined;
  return {
    rule: 'brute_force',
    severity: SEVERITY.brute_force,
    subjectUserId: e.targetId,
    subjectIp: null,
    details: { failures, threshold: s.failures, windowMinutes: s.windowMinutes },
    mergeMs: s.windowMinutes * MINUTE,
    actions: s.actions,
  };
}

async function spraying(
  db: Db,
  tenantId: string,
  s: DetectionSettings['rules']['password_spraying'],
  e: DetectionEvent,
): Promise<Finding | undefined> {
  if (!has(RULE_EVENT_TYPES.signInFailed, e.type) || e.ip === null) return undefined;
  const row = await windowOf(db, tenantId, e, s.windowMinutes * MINUTE)
    .select((eb) => [
      eb.fn.countAll<number | string>().as('n'),
      eb.fn.count<number | string>('target_id').distinct().as('users'),
    ])
    .where('type', 'in', [...RULE_EVENT_TYPES.signInFailed])
    .where('ip', '=', e.ip)
    .where('outcome', '=', 'failure')
    .executeTakeFirstOrThrow();
  const failures = Number(row.n);
  const users = Number(row.users);
  if (users < s.distinctUsers && failures < s.failures) return undefined;
  return {
    rule: 'password_spraying',
    severity: SEVERITY.password_spraying,
    subjectUserId: null,
    subjectIp: e.ip,
    details: {
      failures,
      distinctUsers: users,
      failureThreshold: s.failures,
      distinctUserThreshold: s.distinctUsers,
      windowMinutes: s.windowMinutes,
    },
    mergeMs: s.windowMinutes * MINUTE,
    actions: s.actions,
  };
}

async function bulkRead(
  db: Db,
  tenantId: string,
  s: DetectionSettings['rules']['bulk_read'],
  e: DetectionEvent,
): Promise<Finding | undefined> {
  if (!has(RULE_EVENT_TYPES.bulkRead, e.type) || e.actorId === null) return undefined;
  if (e.actorKind !== 'user' && e.actorKind !== 'api_key') return undefined;
  const row = await windowOf(db, tenantId, e, s.windowMinutes * MINUTE)
    .select((eb) => eb.fn.countAll<number | string>().as('n'))
    .where('type', 'in', [...RULE_EVENT_TYPES.bulkRead])
    .where('actor_kind', '=', e.actorKind)
    .where('actor_id', '=', e.actorId)
    .executeTakeFirstOrThrow();
  const records = Number(row.n);
  if (records < s.records) return undefined;
  const userId = e.actorKind === 'api_key' ? await apiKeyOwner(db, tenantId, e.actorId) : e.actorId;
  return {
    rule: 'bulk_read',
    severity: SEVERITY.bulk_read,
    subjectUserId: userId,
    subjectIp: null,
    details: {
      records,
      threshold: s.records,
      windowMinutes: s.windowMinutes,
      actorKind: e.actorKind,
      apiKeyId: e.actorKind === 'api_key' ? e.actorId : null,
    },
    mergeMs: s.windowMinutes * MINUTE,
    actions: s.actions,
  };
}

function offHours(settings: DetectionSettings, e: DetectionEvent): Finding | undefined {
  const s = settings.rules.off_hours;
  const hours = settings.businessHours;
  if (hours === null || !has(RULE_EVENT_TYPES.signInSucceeded, e.type) || !e.actorId) {
    return undefined;
  }
  const at = new Date(e.occurredAt);
  if (withinBusinessHours(at, hours)) return undefined;
  const local = localTime(at, hours.timeZone);
  return {
    rule: 'off_hours',
    severity: SEVERITY.off_hours,
    subjectUserId: e.actorId,
    subjectIp: null,
    details: { localWeekday: local.day, localMinute: local.minute, timeZone: hours.timeZone },
    // One alert per user and night, not one per sign-in.
    mergeMs: 12 * 60 * MINUTE,
    actions: s.actions,
  };
}

async function newDevice(
  db: Db,
  tenantId: string,
  s: DetectionSettings['rules']['new_device'],
  e: DetectionEvent,
): Promise<Finding | undefined> {
  if (!has(RULE_EVENT_TYPES.signInSucceeded, e.type) || !e.actorId) return undefined;
  const earlier = windowOf(db, tenantId, e, s.lookbackDays * DAY)
    .where('type', 'in', [...RULE_EVENT_TYPES.signInSucceeded])
    .where('actor_id', '=', e.actorId)
    .where('leaf_index', '<', e.leafIndex);
  const any = await earlier.select(['leaf_index']).limit(1).executeTakeFirst();
  // A user's first sign-in in the period has nothing to compare with.
  if (!any) return undefined;
  const same = await earlier
    .select(['leaf_index'])
    .where('ip', e.ip === null ? 'is' : '=', e.ip)
    .where('user_agent', e.userAgent === null ? 'is' : '=', e.userAgent)
    .limit(1)
    .executeTakeFirst();
  if (same) return undefined;
  const knownAddress = await earlier
    .select(['leaf_index'])
    .where('ip', e.ip === null ? 'is' : '=', e.ip)
    .limit(1)
    .executeTakeFirst();
  return {
    rule: 'new_device',
    severity: SEVERITY.new_device,
    subjectUserId: e.actorId,
    subjectIp: e.ip,
    details: {
      newAddress: !knownAddress,
      newUserAgent: Boolean(knownAddress),
      lookbackDays: s.lookbackDays,
    },
    mergeMs: 0,
    actions: s.actions,
  };
}

/** The user behind an API key of the tenant (null when the key is unknown). */
async function apiKeyOwner(db: Db, tenantId: string, keyId: string): Promise<string | null> {
  const key = await db
    .selectFrom('api_keys')
    .select(['user_id'])
    .where('tenant_id', '=', tenantId)
    .where('id', '=', keyId)
    .executeTakeFirst();
  return key?.user_id ?? null;
}

async function privilegeEscalation(
  db: Db,
  tenantId: string,
  s: DetectionSettings['rules']['privilege_escalation'],
  e: DetectionEvent,
): Promise<Finding | undefined> {
  if (!has(RULE_EVENT_TYPES.privilege, e.type) || e.reason === null) return undefined;
  const role = e.reason.startsWith('role_') ? e.reason.slice('role_'.length) : null;
  if (role !== 'admin' && role !== 'owner') return undefined;
  const userId =
    e.targetType === 'api_key' && e.targetId
      ? await apiKeyOwner(db, tenantId, e.targetId)
      : e.targetType === 'user'
        ? e.targetId
        : null;
  return {
    rule: 'privilege_escalation',
    severity: SEVERITY.privilege_escalation,
    subjectUserId: userId,
    subjectIp: null,
    details: {
      eventType: e.type,
      role,
      targetType: e.targetType,
      apiKeyId: e.targetType === 'api_key' ? e.targetId : null,
      byUserId: e.actorKind === 'user' ? e.actorId : null,
    },
    mergeMs: 0,
    actions: s.actions,
  };
}

function breakGlass(
  s: DetectionSettings['rules']['break_glass'],
  e: DetectionEvent,
): Finding | undefined {
  if (!has(RULE_EVENT_TYPES.breakGlass, e.type)) return undefined;
  return {
    rule: 'break_glass',
    severity: SEVERITY.break_glass,
    subjectUserId: e.actorKind === 'user' ? e.actorId : null,
    subjectIp: null,
    details: { eventType: e.type, targetType: e.targetType, reason: e.reason },
    mergeMs: 0,
    actions: s.actions,
  };
}

/** Every enabled rule's finding for one event; windows are re-read from the log by time. */
export async function evaluate(
  db: Db,
  tenantId: string,
  settings: DetectionSettings,
  e: DetectionEvent,
): Promise<Finding[]> {
  const r = settings.rules;
  const found = [
    r.brute_force.enabled ? await bruteForce(db, tenantId, r.brute_force, e) : undefined,
    r.password_spraying.enabled ? await spraying(db, tenantId, r.password_spraying, e) : undefined,
    r.bulk_read.enabled ? await bulkRead(db, tenantId, r.bulk_read, e) : undefined,
    r.off_hours.enabled ? offHours(settings, e) : undefined,
    r.new_device.enabled ? await newDevice(db, tenantId, r.new_device, e) : undefined,
    r.privilege_escalation.enabled
      ? await privilegeEscalation(db, tenantId, r.privilege_escalation, e)
      : undefined,
    r.break_glass.enabled ? breakGlass(r.break_glass, e) : undefined,
  ];
  return found.filter((f): f is Finding => f !== undefined);
}
