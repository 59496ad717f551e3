import type { Kysely } from 'kysely';
import type { Clock } from '../../clock.ts';
import type { Database } from '../../db/schema.ts';
import { authorize, type Actor } from '../../core/policy/index.ts';
import { AppError } from '../../errors.ts';
import { auditActor } from './event.ts';
import type { AuditRecorder } from './service.ts';

/** Always recorded, whatever the tenant's policy. */
export const MANDATORY_CATEGORIES = [
  'authentication',
  'administration',
  'record_changes',
  'sensitive_reads',
] as const;

/** What a tenant may add to the mandatory categories. */
export interface OptionalCategories {
  /** `record.read` (field names) on every read of a record holding personal data. */
  recordReads: boolean;
  /** `api.call` (method, route pattern, status) for every API request. */
  apiCalls: boolean;
}

/** What the request path asks of the audit policy (the service below, or a test's own). */
export interface CategoriesSource {
  categories(tenantId: string): Promise<OptionalCategories>;
  /** The answer without waiting when it is at hand (cached), else undefined. */
  cachedCategories?(tenantId: string): OptionalCategories | undefined;
}

/** The tenant's optional categories: at once when cached, else from `categories`. */
export function categoriesOf(
  source: CategoriesSource,
  tenantId: string,
): OptionalCategories | Promise<OptionalCategories> {
  return source.cachedCategories?.(tenantId) ?? source.categories(tenantId);
}

export interface AuditSettingsView {
  /** Null: the server default, shown in `defaults`. */
  retentionDays: number | null;
  effectiveRetentionDays: number;
  legalHold: { enabled: boolean; reason: string | null; since: string | null };
  categories: OptionalCategories;
  mandatory: readonly string[];
  defaults: { retentionDays: number };
}

export interface AuditSettingsPatch {
  retentionDays?: number | null;
  recordReads?: boolean;
  apiCalls?: boolean;
}

/** A case or matter reference (it enters the audit log: no names, no free text). */
export const HOLD_REASON = /^[A-Za-z0-9][A-Za-z0-9 ._:/#-]{0,99}$/;
export const RETENTION_DAYS = { minimum: 30, maximum: 36_500 } as const;

function invalid(field: string, reason: string): AppError {
  return new AppError('invalid', 'request.invalid', `invalid audit setting ${field}`, {
    detail: `${field} ${reason}`,
    errors: [{ field: `body/${field}`, reason }],
  });
}

function checkReason(reason: string) {
  if (!HOLD_REASON.test(reason)) {
    throw invalid('reason', 'must be a case reference: letters, digits, space . _ : / # -');
  }
}

const OFF: OptionalCategories = Object.freeze({ recordReads: false, apiCalls: false });

/**
 * Per-tenant audit policy: retention (default `CUSTOS_AUDIT_RETENTION_DAYS`), legal hold, and
 * the optional event categories. Every change is itself an audit event in its transaction.
 *
 * `categories()` is on the request path of every API call: it answers from a per-process cache
 * (`cacheMs`, default 10 s; changes made through this process apply at once, through another
 * node within `cacheMs`), so a tenant with the categories off costs no database work per request.
 */
export function createAuditSettings(deps: {
  db: Kysely<Database>;
  clock: Clock;
  audit: AuditRecorder;
  defaultRetentionDays: number;
  cacheMs?: number;
}) {
  const { db, clock, audit } = deps;
  const cacheMs = deps.cacheMs ?? 10_000;
  const cache = new Map<string, { value: OptionalCategories; until: number }>();

  async function read(conn: Kysely<Database>, tenantId: string): Promise<AuditSettingsView> {
    const row = await conn
      .selectFrom('audit_settings')
      .select([
        'retention_days',
        'legal_hold',
        'legal_hold_reason',
        'legal_hold_since',
        'record_reads',
        'api_calls',
      ])
      .where('tenant_id', '=', tenantId)
      .executeTakeFirst();
    const retentionDays = row?.retention_days == null ? null : Number(row.retention_days);
    return {
      retentionDays,
      effectiveRetentionDays: retentionDays ?? deps.defaultRetentionDays,
      legalHold: {
        enabled: Number(row?.legal_hold ?? 0) === 1,
        reason: row?.legal_hold_reason ?? null,
        since: row?.legal_hold_since ?? null,
      },
      categories: {
        recordReads: Number(row?.record_reads ?? 0) === 1,
        apiCalls: Number(row?.api_calls ?? 0) === 1,
      },
      mandatory: MANDATORY_CATEGORIES,
      defaults: { retentionDays: deps.defaultRetentionDays },
    };
  }

  async function upsert(
    trx: Kysely<Database>,
    tenantId: string,
    changes: Partial<{
      retention_days: number | null;
      legal_hold: number;
      legal_hold_reason: string | null;
      legal_hold_since: string | null;
      record_reads: number;
      api_calls: number;
    }>,
  ) {
    const set = { ...changes, updated_at: clock.now().toISOString() };
    await trx
      .insertInto('audit_settings')
      .values({ tenant_id: tenantId, ...set })
      .onConflict((oc) => oc.column('tenant_id').doUpdateSet(set))
      .execute();
  }

  async function get(actor: Actor): Promise<AuditSettingsView> {
    authorize(actor, 'manage', 'audit_settings');
    return read(db, actor.tenantId);
  }

  async function update(actor: Actor, patch: AuditSettingsPatch): Promise<AuditSettingsView> {
    authorize(actor, 'manage', 'audit_settings');
    const days = patch.retentionDays;
    if (
      days != null &&
      (!Number.isInteger(days) || days < RETENTION_DAYS.minimum || days > RETENTION_DAYS.maximum)
    ) {
      throw invalid('retentionDays', 'must be an integer from 30 to 36500');
    }
    const view = await db.transaction().execute(async (trx) => {
      const before = await read(trx, actor.tenantId);
      const changed: string[] = [];
      const changes: Parameters<typeof upsert>[2] = {};
      if (patch.retentionDays !== undefined && patch.retentionDays !== before.retentionDays) {
        changes.retention_days = patch.retentionDays;
        changed.push('retentionDays');
      }
      if (patch.recordReads !== undefined && patch.recordReads !== before.categories.recordReads) {
        changes.record_reads = patch.recordReads ? 1 : 0;
        changed.push('recordReads');
      }
      if (patch.apiCalls !== undefined && patch.apiCalls !== before.categories.apiCalls) {
        changes.api_calls = patch.apiCalls ? 1 : 0;
        changed.push('apiCalls');
      }
      if (changed.length === 0) return before;
      await upsert(trx, actor.tenantId, changes);
      await audit.append(trx, {
        tenantId: actor.tenantId,
        type: 'settings.audit_changed',
        ...auditActor(actor),
        target: { type: 'tenant', id: actor.tenantId },
        fields: changed,
      });
      return read(trx, actor.tenantId);
    });
    cache.delete(actor.tenantId);
    return view;
  }

  /** Stops retention pruning of the tenant's audit events until released. */
  async function placeHold(actor: Actor, reason: string): Promise<AuditSettingsView> {
    authorize(actor, 'manage', 'audit_settings');
    checkReason(reason);
    return db.transaction().execute(async (trx) => {
      const before = await read(trx, actor.tenantId);
      if (before.legalHold.enabled) {
        throw new AppError('conflict', 'audit.legal_hold_active', 'legal hold already on', {
          detail: 'A legal hold is already in place; release it before placing another.',
        });
      }
      await upsert(trx, actor.tenantId, {
        legal_hold: 1,
        legal_hold_reason: reason,
        legal_hold_since: clock.now().toISOString(),
      });
      await audit.append(trx, {
        tenantId: actor.tenantId,
        type: 'audit.legal_hold_placed',
        ...auditActor(actor),
        target: { type: 'tenant', id: actor.tenantId },
        reason,
      });
      return read(trx, actor.tenantId);
    });
  }

  async function releaseHold(actor: Actor, reason: string): Promise<AuditSettingsView> {
    authorize(actor, 'manage', 'audit_settings');
    checkReason(reason);
    return db.transaction().execute(async (trx) => {
      const before = await read(trx, actor.tenantId);
      if (!before.legalHold.enabled) {
        throw new AppError('conflict', 'audit.legal_hold_inactive', 'no legal hold', {
          detail: 'No legal hold is in place.',
        });
      }
      await upsert(trx, actor.tenantId, {
        legal_hold: 0,
        legal_hold_reason: null,
        legal_hold_since: null,
      });
      await audit.append(trx, {
        tenantId: actor.tenantId,
        type: 'audit.legal_hold_released',
        ...auditActor(actor),
        target: { type: 'tenant', id: actor.tenantId },
        reason,
      });
      return read(trx, actor.tenantId);
    });
  }

  /**
   * The cached answer of `categories` while it is fresh, else undefined: the request path asks
   * this first and awaits `categories` only on a miss (no promise per request on a hit).
   */
  function cachedCategories(tenantId: string): OptionalCategories | undefined {
    const hit = cache.get(tenantId);
    return hit !== undefined && hit.until > Date.now() ? hit.value : undefined;
  }

  /** The optional categories on for `tenantId` (cached; see above). */
  async function categories(tenantId: string): Promise<OptionalCategories> {
    const now = Date.now();
    const hit = cache.get(tenantId);
    if (hit !== undefined && hit.until > now) return hit.value;
    const row = await db
      .selectFrom('audit_settings')
      .select(['record_reads', 'api_calls'])
      .where('tenant_id', '=', tenantId)
      .executeTakeFirst();
    const value = row
      ? { recordReads: Number(row.record_reads) === 1, apiCalls: Number(row.api_calls) === 1 }
      : OFF;
    if (cache.size > 10_000) cache.clear();
    cache.set(tenantId, { value, until: now + cacheMs });
    return value;
  }

  return {
    get,
    update,
    placeHold,
    releaseHold,
    categories,
    cachedCategories,
    /** Retention and hold of one tenant (for the prune job; no authorization). */
    retentionOf: (tenantId: string) => read(db, tenantId),
  };
}

export type AuditSettingsService = ReturnType<typeof createAuditSettings>;
