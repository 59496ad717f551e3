import { sql, type Kysely, type Transaction } from 'kysely';
import type { Clock } from '../../clock.ts';
import type { Dialect } from '../../db/database.ts';
import type { Database } from '../../db/schema.ts';
import type { AuditRecorder } from '../audit/service.ts';
import type { LoginThrottle } from '../auth/throttle.ts';
import { toAlertView, type AlertRow } from './alerts.ts';
import { raiseAlert } from './alerts.ts';
import type { AlertNotifier } from './notifier.ts';
import type { UserCrypto } from '../users/crypto.ts';
import { notifyAlert } from './notify.ts';
import { applyResponses } from './responses.ts';
import { evaluate, isDetectionOutput, type DetectionEvent } from './rules.ts';
import { readSettings } from './settings.ts';
import { intervalJob } from '../../interval-job.ts';

export interface DetectionWorkerDeps {
  db: Kysely<Database>;
  dialect: Dialect;
  clock: Clock;
  audit: AuditRecorder;
  throttle: Pick<LoginThrottle, 'lock'>;
  notifier: AlertNotifier;
  /** Opens the e-mail of the owners and admins an alert is mailed to. */
  users: UserCrypto;
  /** Events evaluated per tenant and transaction (default 500). */
  batchSize?: number;
  /** Where failures of a run go (the server's logger). */
  onError?: (error: unknown) => void;
  /**
   * Checks that are not read from the event stream (`createKeyRotationCheck`), run by `runOnce`
   * at most every `periodicMs` (default one hour) of the injected clock.
   */
  periodic?: () => Promise<number>;
  periodicMs?: number;
}

interface AfterCommit {
  alerts: AlertRow[];
  locks: string[];
}

/**
 * Reads each tenant's audit events after its stored cursor, evaluates the rules, raises alerts and
 * applies their responses, and advances the cursor, all in one transaction per batch: a restart
 * neither loses nor repeats an event. The cursor row is locked (`FOR UPDATE` on PostgreSQL;
 * SQLite serialises writers), so two nodes never evaluate the same events; alerts are also
 * unique by a dedup key (rule + triggering event). Rule windows are re-read from the log by time,
 * so no state lives in memory.
 */
export function createDetectionWorker(deps: DetectionWorkerDeps) {
  const { db, dialect, clock } = deps;
  const batchSize = deps.batchSize ?? 500;

  /** Tenants whose log grew past their cursor. */
  async function pendingTenants(): Promise<string[]> {
    const rows = await db
      .selectFrom('audit_tree')
      .leftJoin('detection_cursors', 'detection_cursors.tenant_id', 'audit_tree.tenant_id')
      .select(['audit_tree.tenant_id'])
      .where(sql<boolean>`audit_tree.tree_size - 1 > coalesce(detection_cursors.leaf_index, -1)`)
      .orderBy('audit_tree.tenant_id')
      .execute();
    return rows.map((r) => r.tenant_id);
  }

  async function lockCursor(trx: Transaction<Database>, tenantId: string): Promise<number> {
    await trx
      .insertInto('detection_cursors')
      .values({ tenant_id: tenantId, leaf_index: -1, updated_at: clock.now().toISOString() })
      .onConflict((oc) => oc.column('tenant_id').doNothing())
      .execute();
    const query = trx
      .selectFrom('detection_cursors')
      .select(['leaf_index'])
      .where('tenant_id', '=', tenantId);
    const row = await (
      dialect === 'postgres' ? query.forUpdate() : query
    ).executeTakeFirstOrThrow();
    return Number(row.leaf_index);
  }

  /** One batch of one tenant; returns how many events it evaluated (0: caught up). */
  async function batch(tenantId: string): Promise<{ events: number; after: AfterCommit }> {
    const after: AfterCommit = { alerts: [], locks: [] };
    const events = await db.transaction().execute(async (trx) => {
      const cursor = await lockCursor(trx, tenantId);
      const rows = await trx
        .selectFrom('audit_events')
        .select([
          'leaf_index',
          'id',
          'type',
          'occurred_at',
          'actor_kind',
          'actor_id',
          'ip',
          'user_agent',
          'target_type',
          'target_id',
          'outcome',
          'reason',
        ])
        .where('tenant_id', '=', tenantId)
        .where('leaf_index', '>', cursor)
        .orderBy('leaf_index')
        .limit(batchSize)
        .execute();
      if (rows.length === 0) return 0;
      const settings = await readSettings(trx, tenantId);
      for (const r of rows) {
        if (isDetectionOutput(r.type)) continue;
        const event: DetectionEvent = {
          leafIndex: Number(r.leaf_index),
          id: r.id,
          type: r.type,
          occurredAt: r.occurred_at,
          actorKind: r.actor_kind,
          actorId: r.actor_id,
          ip: r.ip,
          userAgent: r.user_agent,
          targetType: r.target_type,
          targetId: r.target_id,
          outcome: r.outcome,
          reason: r.reason,
        };
        for (const finding of await evaluate(trx, tenantId, settings, event)) {
          const now = clock.now();
          const raised = await raiseAlert(trx, deps.audit, tenantId, {
            ...finding,
            dedupKey: `${finding.rule}:${event.id}`,
            seenAt: event.occurredAt,
            now: now.toISOString(),
          });
          if (!raised?.created) continue;
          let alert = raised.alert;
          if (finding.subjectUserId !== null && finding.actions.length > 0) {
            const done = await applyResponses(
              trx,
              deps.audit,
              {
                tenantId,
                userId: finding.subjectUserId,
                alertId: alert.id,
                now,
                exportBlockMinutes: settings.exportBlockMinutes,
              },
              finding.actions,
            );
            if (done.lockAccount) after.locks.push(finding.subjectUserId);
            const details = JSON.stringify({ ...finding.details, actions: finding.actions });
            await trx.updateTable('alerts').set({ details }).where('id', '=', alert.id).execute();
            alert = { ...alert, details };
          }
          after.alerts.push(alert);
        }
      }
      const last = rows[rows.length - 1]!;
      await trx
        .updateTable('detection_cursors')
        .set({ leaf_index: Number(last.leaf_index), updated_at: clock.now().toISOString() })
        .where('tenant_id', '=', tenantId)
        .execute();
      return rows.length;
    });
    return { events, after };
  }

  /** Follow-ups of a committed batch; a failure is reported, the alert stays. */
  async function afterCommit(tenantId: string, after: AfterCommit): Promise<void> {
    for (const userId of after.locks) {
      try {
        await deps.throttle.lock(userId);
      } catch (error) {
        deps.onError?.(error);
      }
    }
    for (const alert of after.alerts) {
      await notifyAlert(db, deps.users, deps.notifier, tenantId, toAlertView(alert), deps.onError);
    }
  }

  const periodicMs = deps.periodicMs ?? 3_600_000;
  let periodicAt: number | undefined;

  /** Evaluates every tenant's new events until caught up (tests call it directly). */
  async function runOnce(): Promise<{ events: number; alerts: number }> {
    let events = 0;
    let alerts = 0;
    let failure: Error | undefined;
    const now = clock.now().getTime();
    if (deps.periodic && (periodicAt === undefined || now - periodicAt >= periodicMs)) {
      periodicAt = now;
      try {
        alerts += await deps.periodic();
      } catch (error) {
        failure = error instanceof Error ? error : new Error(String(error));
      }
    }
    for (const tenantId of await pendingTenants()) {
      try {
        for (;;) {
          const done = await batch(tenantId);
          events += done.events;
          alerts += done.after.alerts.length;
          await afterCommit(tenantId, done.after);
          if (done.events < batchSize) break;
        }
      } catch (error) {
        // One tenant's failure (its batch rolled back, its cursor unmoved) never holds up others.
        failure ??= error instanceof Error ? error : new Error(String(error));
      }
    }
    if (failure !== undefined) throw failure;
    return { events, alerts };
  }

  /** `start(intervalMs)` runs `runOnce` every interval (never two at once); `stop` waits for it. */
  const { start, stop } = intervalJob(runOnce, (error) => deps.onError?.(error));

  return { runOnce, start, stop };
}

export type DetectionWorker = ReturnType<typeof createDetectionWorker>;
