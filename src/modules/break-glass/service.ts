import type { Kysely, Selectable } from 'kysely';
import type { Clock } from '../../clock.ts';
import type { BreakGlassGrantTable, Database } from '../../db/schema.ts';
import {
  BREAK_GLASS_MAX_MINUTES,
  mayBreakGlass,
  requireFreshAuth,
  type Actor,
} from '../../core/policy/index.ts';
import { AppError, notFound } from '../../errors.ts';
import { newId } from '../../ids.ts';
import { auditActor } from '../audit/event.ts';
import type { AuditRecorder } from '../audit/service.ts';
import { isUniqueViolation } from '../records/repository.ts';

/** A written reason must say something: at least this many characters (trimmed). */
export const BREAK_GLASS_REASON_MIN = 20;
export const BREAK_GLASS_REASON_MAX = 1000;

export type GrantStatus = 'open' | 'expired' | 'ended';

export interface GrantView {
  id: string;
  userId: string;
  reason: string;
  openedAt: string;
  expiresAt: string;
  endedAt: string | null;
  endedBy: string | null;
  /** `expired`: ran out by itself; `ended`: ended early. */
  status: GrantStatus;
}

const COLUMNS = [
  'id',
  'tenant_id',
  'user_id',
  'reason',
  'opened_at',
  'expires_at',
  'ended_at',
  'ended_by',
] as const;
type GrantRow = Pick<Selectable<BreakGlassGrantTable>, (typeof COLUMNS)[number]>;

function statusOf(row: GrantRow, now: Date): GrantStatus {
  // Closed by a later opening when it had run out: ended by nobody, at its expiry.
  if (row.ended_at !== null) return row.ended_by === null ? 'expired' : 'ended';
  return now.getTime() < Date.parse(row.expires_at) ? 'open' : 'expired';
}

function toView(row: GrantRow, now: Date): GrantView {
  return {
    id: row.id,
    userId: row.user_id,
    reason: row.reason,
    openedAt: row.opened_at,
    expiresAt: row.expires_at,
    endedAt: row.ended_at,
    endedBy: row.ended_by,
    status: statusOf(row, now),
  };
}

function requireCapability(actor: Actor): asserts actor is Extract<Actor, { kind: 'user' }> {
  const decision = mayBreakGlass(actor);
  if (!decision.allowed) {
    throw new AppError('forbidden', 'policy.forbidden', `break-glass refused (${decision.rule})`, {
      detail: 'Your role does not allow emergency access (break-glass).',
    });
  }
}

/**
 * Break-glass: emergency access a user with the capability opens for at most an hour, with a
 * written reason. While open, authentication puts the grant on the user's actor: field reads are
 * elevated to full (see `fieldAccess`), record reads are always audited, and every audit event
 * carries the grant's id. Opening is audited as `auth.break_glass.opened`, which the detection
 * rule `break_glass` raises as a critical alert; ending early as `auth.break_glass.ended`. A grant
 * ends by itself at its expiry: nothing runs then, the next request simply no longer carries it.
 */
export function createBreakGlassService(deps: {
  db: Kysely<Database>;
  clock: Clock;
  audit: AuditRecorder;
}) {
  const { db, clock } = deps;

  async function open(actor: Actor, input: { reason: string; minutes: number }) {
    requireCapability(actor);
    // Elevation: the person at the keyboard proves who they are again.
    requireFreshAuth(actor, clock);
    const reason = input.reason.trim();
    const bad: { field: string; reason: string }[] = [];
    if (reason.length < BREAK_GLASS_REASON_MIN) {
      bad.push({
        field: 'body/reason',
        reason: `must have at least ${BREAK_GLASS_REASON_MIN} characters`,
      });
    }
    if (
      !Number.isInteger(input.minutes) ||
      input.minutes < 1 ||
      input.minutes > BREAK_GLASS_MAX_MINUTES
    ) {
      bad.push({
        field: 'body/minutes',
        reason: `must be a whole number from 1 to ${BREAK_GLASS_MAX_MINUTES}`,
      });
    }
    if (bad.length > 0) {
      throw new AppError('invalid', 'request.invalid', 'invalid break-glass request', {
        detail: bad.map((b) => `${b.field} ${b.reason}`).join('; '),
        errors: bad,
      });
    }
    const now = clock.now();
    const row: GrantRow = {
      id: newId(),
      tenant_id: actor.tenantId,
      user_id: actor.userId,
      reason,
      opened_at: now.toISOString(),
      expires_at: new Date(now.getTime() + input.minutes * 60_000).toISOString(),
      ended_at: null,
      ended_by: null,
    };
    const alreadyOpen = () =>
      new AppError('conflict', 'break_glass.already_open', 'grant already open', {
        detail: 'You already have open emergency access; end it before opening another.',
      });
    try {
      await db.transaction().execute(async (trx) => {
        // The user's grants that ran out are closed at their expiry, so that the unique index
        // on open grants (one per user) holds even against two concurrent openings.
        await trx
          .updateTable('break_glass_grants')
          .set((eb) => ({ ended_at: eb.ref('expires_at') }))
          .where('tenant_id', '=', actor.tenantId)
          .where('user_id', '=', actor.userId)
          .where('ended_at', 'is', null)
          .where('expires_at', '<=', row.opened_at)
          .execute();
        const current = await trx
          .selectFrom('break_glass_grants')
          .select(['id'])
          .where('tenant_id', '=', actor.tenantId)
          .where('user_id', '=', actor.userId)
          .where('ended_at', 'is', null)
          .where('expires_at', '>', row.opened_at)
          .executeTakeFirst();
        if (current) throw alreadyOpen();
        await trx.insertInto('break_glass_grants').values(row).execute();
        await deps.audit.append(trx, {
          tenantId: actor.tenantId,
          type: 'auth.break_glass.opened',
          ...auditActor(actor),
          target: { type: 'break_glass', id: row.id },
          reason,
          breakGlassId: row.id,
        });
      });
    } catch (error) {
      if (isUniqueViolation(error)) throw alreadyOpen();
      throw error;
    }
    return toView(row, now);
  }

  async function list(actor: Actor, limit = 50): Promise<GrantView[]> {
    requireCapability(actor);
    const rows = await db
      .selectFrom('break_glass_grants')
      .select(COLUMNS)
      .where('tenant_id', '=', actor.tenantId)
      .orderBy('opened_at', 'desc')
      .orderBy('id', 'desc')
      .limit(limit)
      .execute();
    const now = clock.now();
    return rows.map((r) => toView(r, now));
  }

  /** Ends an open grant early (its holder, or anyone else with the capability). */
  async function end(actor: Actor, id: string): Promise<GrantView> {
    requireCapability(actor);
    return db.transaction().execute(async (trx) => {
      const row = await trx
        .selectFrom('break_glass_grants')
        .select(COLUMNS)
        .where('tenant_id', '=', actor.tenantId)
        .where('id', '=', id)
        .executeTakeFirst();
      if (!row) throw notFound('break-glass grant');
      const now = clock.now();
      const status = statusOf(row, now);
      if (status !== 'open') {
        throw new AppError('conflict', 'break_glass.not_open', `grant ${status}`, {
          detail: `This emergency access has already ${status === 'ended' ? 'been ended' : 'expired'}.`,
        });
      }
      const ended = { ended_at: now.toISOString(), ended_by: actor.userId };
      await trx
        .updateTable('break_glass_grants')
        .set(ended)
        .where('tenant_id', '=', actor.tenantId)
        .where('id', '=', id)
        .where('ended_at', 'is', null)
        .execute();
      await deps.audit.append(trx, {
        tenantId: actor.tenantId,
        type: 'auth.break_glass.ended',
        ...auditActor(actor),
        target: { type: 'break_glass', id },
        reason: row.user_id === actor.userId ? 'ended_by_holder' : 'ended_by_other',
      });
      return toView({ ...row, ...ended }, now);
    });
  }

  return { open, list, end };
}

export type BreakGlassService = ReturnType<typeof createBreakGlassService>;
