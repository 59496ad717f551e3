import type { Actor } from '../../core/policy/index.ts';
import type { Selectable } from 'kysely';
import type { AuditEventTable } from '../../db/schema.ts';

/** Who did it: a user, an API key, the system (CLI, jobs), or nobody signed in (failed login). */
export type AuditActorKind = 'user' | 'api_key' | 'system' | 'anonymous';

/** What a caller records; the service adds id, time, leaf index and hashes. */
export interface AuditEventInput {
  readonly tenantId: string;
  /** Dotted name, e.g. `record.updated`, `auth.login_failed`. */
  readonly type: string;
  readonly actor: { readonly kind: AuditActorKind; readonly id: string | null };
  readonly request?: {
    readonly ip?: string | null;
    readonly userAgent?: string | null;
    readonly requestId?: string | null;
  };
  readonly target?: { readonly type: string; readonly id: string } | null;
  readonly outcome?: 'success' | 'failure';
  /** A code, never free text with personal data. */
  readonly reason?: string | null;
  /** Names of the fields the event concerns, never their values. */
  readonly fields?: readonly string[];
  /** The break-glass grant open for the actor when the event happened (`auditActor` sets it). */
  readonly breakGlassId?: string | null;
}

/**
 * The leaf content: exactly what is canonicalised (RFC 8785) and hashed. It binds the tenant and
 * the leaf index, so an event moved to another position or tenant no longer matches its bytes.
 */
export interface AuditEventBody {
  v: 1;
  tenantId: string;
  leafIndex: number;
  id: string;
  type: string;
  occurredAt: string;
  actor: { kind: string; id: string | null };
  ip: string | null;
  userAgent: string | null;
  requestId: string | null;
  target: { type: string; id: string } | null;
  outcome: string;
  reason: string | null;
  fields: string[];
  /**
   * Present only for events recorded under break-glass: absent (not null) otherwise, so the bytes
   * of every other event are what they were before the field existed.
   */
  breakGlassId?: string;
}

const TYPE = /^[a-z][a-z0-9_]*(\.[a-z][a-z0-9_]*)+$/;
const FIELD = /^[A-Za-z][A-Za-z0-9_.]{0,99}$/;

/** Builds the leaf body; throws TypeError for a malformed event (a programming mistake). */
export function eventBody(
  input: AuditEventInput,
  at: { leafIndex: number; id: string; occurredAt: string },
): AuditEventBody {
  if (!TYPE.test(input.type)) throw new TypeError(`audit event type ${input.type} is malformed`);
  const fields = [...new Set(input.fields ?? [])].sort();
  for (const f of fields) {
    if (!FIELD.test(f)) throw new TypeError('audit field names must be identifiers');
  }
  return {
    v: 1,
    tenantId: input.tenantId,
    leafIndex: at.leafIndex,
    id: at.id,
    type: input.type,
    occurredAt: at.occurredAt,
    actor: { kind: input.actor.kind, id: input.actor.id },
    ip: input.request?.ip ?? null,
    userAgent: input.request?.userAgent ?? null,
    requestId: input.request?.requestId ?? null,
    target: input.target ? { type: input.target.type, id: input.target.id } : null,
    outcome: input.outcome ?? 'success',
    reason: input.reason ?? null,
    fields,
    ...(input.breakGlassId ? { breakGlassId: input.breakGlassId } : {}),
  };
}

export type AuditEventRow = Selectable<AuditEventTable>;

/** The body the row's columns describe: it must equal the stored canonical bytes. */
export function bodyFromRow(row: AuditEventRow): AuditEventBody | { malformed: string } {
  let fields: unknown;
  try {
    fields = JSON.parse(row.fields);
  } catch {
    return { malformed: 'fields' };
  }
  if (!Array.isArray(fields) || !fields.every((f) => typeof f === 'string')) {
    return { malformed: 'fields' };
  }
  return {
    v: 1,
    tenantId: row.tenant_id,
    leafIndex: Number(row.leaf_index),
    id: row.id,
    type: row.type,
    occurredAt: row.occurred_at,
    actor: { kind: row.actor_kind, id: row.actor_id },
    ip: row.ip,
    userAgent: row.user_agent,
    requestId: row.request_id,
    target:
      row.target_type === null && row.target_id === null
        ? null
        : { type: row.target_type ?? '', id: row.target_id ?? '' },
    outcome: row.outcome,
    reason: row.reason,
    fields,
    ...(row.break_glass_id === null ? {} : { breakGlassId: row.break_glass_id }),
  };
}

// --- Data transfer events (contacts import and export) ---

/**
 * Bulk movements of contact data: `contacts.exported` (reason = format, `+jwe` when sealed) and
 * `contacts.imported` (target `contact_import`, reason = mode, source and row counts; see
 * `importReason` in contacts/import.ts). The OCSF mapping covers each (tested exhaustively).
 */
export type DataTransferEventType = 'contacts.exported' | 'contacts.imported';

/**
 * The audit actor of a service call, with its request metadata and, under break-glass, the
 * grant: every event recorded for such an actor is marked with it.
 */
export function auditActor(
  actor: Actor,
): Pick<AuditEventInput, 'actor' | 'request' | 'breakGlassId'> {
  const id =
    actor.kind === 'user' ? actor.userId : actor.kind === 'api_key' ? actor.apiKeyId : actor.job;
  return {
    actor: { kind: actor.kind, id },
    request: {
      ip: actor.request.ip,
      userAgent: actor.request.userAgent,
      requestId: actor.request.requestId,
    },
    ...(actor.kind === 'user' && actor.breakGlass ? { breakGlassId: actor.breakGlass.id } : {}),
  };
}

/**
 * The columns an append writes: the key, the canonical bytes and the leaf hash. Every other
 * column is generated by the database from the canonical bytes (migration 0021).
 */
export const WRITTEN_COLUMNS = ['tenant_id', 'leaf_index', 'canonical', 'leaf_hash'] as const;

/** The columns of an event row (named: the table holds IP addresses and user agents). */
export const EVENT_COLUMNS = [
  'tenant_id',
  'leaf_index',
  'id',
  'type',
  'occurred_at',
  'actor_kind',
  'actor_id',
  'ip',
  'user_agent',
  'request_id',
  'target_type',
  'target_id',
  'outcome',
  'reason',
  'fields',
  'canonical',
  'leaf_hash',
  'break_glass_id',
] as const;
