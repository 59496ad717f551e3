import type { Kysely } from 'kysely';
import type { Clock } from '../../clock.ts';
import type { AlertSeverity, AlertStatus, Database } from '../../db/schema.ts';
import { authorize, type Actor } from '../../core/policy/index.ts';
import { AppError, notFound } from '../../errors.ts';
import { auditActor } from '../audit/event.ts';
import type { AuditRecorder } from '../audit/service.ts';
import { decodeCursor, encodeCursor } from '../records/cursor.ts';
import { ALERT_COLUMNS, findAlert, raiseAlert, toAlertView, type AlertView } from './alerts.ts';
import type { AlertNotifier } from './notifier.ts';
import type { UserCrypto } from '../users/crypto.ts';
import { notifyAlert } from './notify.ts';
import { SEVERITY } from './rules.ts';
import { readSettings } from './settings.ts';

export interface AlertFilters {
  status?: AlertStatus | undefined;
  rule?: string | undefined;
  severity?: AlertSeverity | undefined;
  cursor?: string | undefined;
  limit: number;
}

/** Rules raised from outside the event stream, by the code that notices them. */
export type ExternalRule = 'audit_verification_failed' | 'key_rotation_overdue';

/**
 * The alerts API (owners and admins: list, acknowledge, resolve), the export guard the export
 * route calls, and the seam through which `custos audit verify` and the key service raise their
 * alerts (`raise`).
 */
export function createAlertService(deps: {
  db: Kysely<Database>;
  clock: Clock;
  audit: AuditRecorder;
  notifier: AlertNotifier;
  /** Opens the e-mail of the owners and admins an alert is mailed to. */
  users: UserCrypto;
  onError?: (error: unknown) => void;
}) {
  const { db, clock } = deps;

  async function list(actor: Actor, f: AlertFilters) {
    authorize(actor, 'manage', 'alert');
    let query = db
      .selectFrom('alerts')
      .select(ALERT_COLUMNS)
      .where('tenant_id', '=', actor.tenantId);
    if (f.status !== undefined) query = query.where('status', '=', f.status);
    if (f.rule !== undefined) query = query.where('rule', '=', f.rule);
    if (f.severity !== undefined) query = query.where('severity', '=', f.severity);
    if (f.cursor !== undefined) {
      const c = decodeCursor(f.cursor, 'createdAt', 'desc');
      const at = String(c.value);
      query = query.where((eb) =>
        eb.or([
          eb('created_at', '<', at),
          eb.and([eb('created_at', '=', at), eb('id', '<', c.id)]),
        ]),
      );
    }
    const rows = await query
      .orderBy('created_at', 'desc')
      .orderBy('id', 'desc')
      .limit(f.limit + 1)
      .execute();
    const page = rows.slice(0, f.limit);
    const last = page.at(-1);
    return {
      items: page.map(toAlertView),
      nextCursor:
        rows.length > f.limit && last
          ? encodeCursor({
              sort: 'createdAt',
              direction: 'desc',
              value: last.created_at,
              id: last.id,
            })
          : null,
    };
  }

  /** open -> acknowledged, open|acknowledged -> resolved; each change audited. */
  async function transition(actor: Actor, id: string, to: 'acknowledged' | 'resolved') {
    authorize(actor, 'manage', 'alert');
    if (actor.kind === 'system') throw new TypeError('alerts are handled by people');
    return db.transaction().execute(async (trx) => {
      const row = await findAlert(trx, actor.tenantId, id);
      if (!row) throw notFound('alert');
      const allowed = to === 'acknowledged' ? row.status === 'open' : row.status !== 'resolved';
      if (!allowed) {
        throw new AppError('conflict', 'alert.invalid_transition', `alert ${row.status}`, {
          detail: `The alert is ${row.status}; it cannot become ${to}.`,
        });
      }
      const now = clock.now().toISOString();
      const changes =
        to === 'acknowledged'
          ? { status: to, acknowledged_at: now, acknowledged_by: actor.userId }
          : { status: to, resolved_at: now, resolved_by: actor.userId };
      await trx
        .updateTable('alerts')
        .set(changes)
        .where('tenant_id', '=', actor.tenantId)
        .where('id', '=', id)
        .where('status', '=', row.status)
        .execute();
      await deps.audit.append(trx, {
        tenantId: actor.tenantId,
        type: to === 'acknowledged' ? 'security.alert.acknowledged' : 'security.alert.resolved',
        ...auditActor(actor),
        target: { type: 'alert', id },
        reason: row.rule,
      });
      return toAlertView({ ...row, ...changes });
    });
  }

  /**
   * Raises an alert of a rule that is not read from the event stream. `dedupKey` makes repeats
   * harmless (e.g. `tree:<size>` for a failed verification of a tree of that size); while an
   * alert of the rule is unresolved, further raises only count on it. Returns null when the
   * tenant turned the rule off or the raise was a repeat.
   */
  async function raise(input: {
    tenantId: string;
    rule: ExternalRule;
    dedupKey: string;
    details: Record<string, string | number | boolean | null>;
  }): Promise<AlertView | null> {
    const settings = await readSettings(db, input.tenantId);
    if (!settings.rules[input.rule].enabled) return null;
    const now = clock.now().toISOString();
    const raised = await db.transaction().execute((trx) =>
      raiseAlert(trx, deps.audit, input.tenantId, {
        rule: input.rule,
        severity: SEVERITY[input.rule],
        subjectUserId: null,
        subjectIp: null,
        details: input.details,
        mergeMs: Infinity,
        actions: [],
        dedupKey: `${input.rule}:${input.dedupKey}`,
        seenAt: now,
        now,
      }),
    );
    if (!raised) return null;
    const view = toAlertView(raised.alert);
    if (raised.created)
      await notifyAlert(db, deps.users, deps.notifier, input.tenantId, view, deps.onError);
    return view;
  }

  /** Refuses an export while a detection response blocks the user's exports. */
  async function assertExportAllowed(actor: Actor): Promise<void> {
    if (actor.kind === 'system') return;
    const row = await db
      .selectFrom('user_restrictions')
      .select(['exports_blocked_until'])
      .where('tenant_id', '=', actor.tenantId)
      .where('user_id', '=', actor.userId)
      .executeTakeFirst();
    const until = row?.exports_blocked_until ?? null;
    if (until !== null && Date.parse(until) > clock.now().getTime()) {
      throw new AppError('forbidden', 'export.blocked', 'exports blocked by a detection response', {
        detail: `Exports are suspended for this account until ${until} after a security alert. An administrator can review the alert.`,
      });
    }
  }

  return {
    list,
    acknowledge: (a: Actor, id: string) => transition(a, id, 'acknowledged'),
    resolve: (a: Actor, id: string) => transition(a, id, 'resolved'),
    raise,
    assertExportAllowed,
  };
}

export type AlertService = ReturnType<typeof createAlertService>;
