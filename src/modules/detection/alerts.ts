import type { Selectable, Transaction } from 'kysely';
import type { AlertSeverity, AlertStatus, AlertTable, Database } from '../../db/schema.ts';
import { newId } from '../../ids.ts';
import type { Db } from '../audit/repository.ts';
import type { AuditRecorder } from '../audit/service.ts';
import type { Finding } from './rules.ts';

export interface AlertView {
  id: string;
  rule: string;
  severity: AlertSeverity;
  status: AlertStatus;
  subjectUserId: string | null;
  subjectIp: string | null;
  firstSeenAt: string;
  lastSeenAt: string;
  count: number;
  details: Record<string, unknown>;
  createdAt: string;
  acknowledgedAt: string | null;
  acknowledgedBy: string | null;
  resolvedAt: string | null;
  resolvedBy: string | null;
}

export const ALERT_COLUMNS = [
  'id',
  'tenant_id',
  'rule',
  'severity',
  'status',
  'subject_user_id',
  'subject_ip',
  'first_seen_at',
  'last_seen_at',
  'count',
  'dedup_key',
  'details',
  'created_at',
  'acknowledged_at',
  'acknowledged_by',
  'resolved_at',
  'resolved_by',
] as const;

export type AlertRow = Pick<Selectable<AlertTable>, (typeof ALERT_COLUMNS)[number]>;

export function toAlertView(row: AlertRow): AlertView {
  return {
    id: row.id,
    rule: row.rule,
    severity: row.severity,
    status: row.status,
    subjectUserId: row.subject_user_id,
    subjectIp: row.subject_ip,
    firstSeenAt: row.first_seen_at,
    lastSeenAt: row.last_seen_at,
    count: Number(row.count),
    details: JSON.parse(row.details) as Record<string, unknown>,
    createdAt: row.created_at,
    acknowledgedAt: row.acknowledged_at,
    acknowledgedBy: row.acknowledged_by,
    resolvedAt: row.resolved_at,
    resolvedBy: row.resolved_by,
  };
}

export interface Raised {
  alert: AlertRow;
  /** False: the finding was merged into an unresolved alert of the same incident. */
  created: boolean;
}

/**
 * Raises `finding` in `trx`: merged into the unresolved alert of the same rule and subject last
 * seen within `finding.mergeMs` (count and last seen move on), else a new alert with its audit
 * event `security.alert.raised` (reason = the rule id, target = the alert). `dedupKey` is unique
 * per tenant: raising the same finding twice (a replay) creates nothing.
 */
export async function raiseAlert(
  trx: Transaction<Database>,
  audit: AuditRecorder,
  tenantId: string,
  finding: Finding & { dedupKey: string; seenAt: string; now: string },
): Promise<Raised | undefined> {
  let open = trx
    .selectFrom('alerts')
    .select(ALERT_COLUMNS)
    .where('tenant_id', '=', tenantId)
    .where('rule', '=', finding.rule)
    .where('status', '!=', 'resolved')
    .where('subject_user_id', finding.subjectUserId === null ? 'is' : '=', finding.subjectUserId)
    .where('subject_ip', finding.subjectIp === null ? 'is' : '=', finding.subjectIp);
  if (Number.isFinite(finding.mergeMs)) {
    if (finding.mergeMs <= 0) open = open.where('dedup_key', '=', finding.dedupKey);
    else {
      const since = new Date(Date.parse(finding.seenAt) - finding.mergeMs).toISOString();
      open = open.where('last_seen_at', '>=', since);
    }
  }
  const current = await open.orderBy('last_seen_at', 'desc').limit(1).executeTakeFirst();
  if (current) {
    if (current.dedup_key === finding.dedupKey) return undefined;
    const lastSeen = current.last_seen_at > finding.seenAt ? current.last_seen_at : finding.seenAt;
    await trx
      .updateTable('alerts')
      .set({ count: Number(current.count) + 1, last_seen_at: lastSeen })
      .where('id', '=', current.id)
      .execute();
    return {
      alert: { ...current, count: Number(current.count) + 1, last_seen_at: lastSeen },
      created: false,
    };
  }
  const row: AlertRow = {
    id: newId(),
    tenant_id: tenantId,
    rule: finding.rule,
    severity: finding.severity,
    status: 'open',
    subject_user_id: finding.subjectUserId,
    subject_ip: finding.subjectIp,
    first_seen_at: finding.seenAt,
    last_seen_at: finding.seenAt,
    count: 1,
    dedup_key: finding.dedupKey,
    details: JSON.stringify(finding.details),
    created_at: finding.now,
    acknowledged_at: null,
    acknowledged_by: null,
    resolved_at: null,
    resolved_by: null,
  };
  const inserted = await trx
    .insertInto('alerts')
    .values(row)
    .onConflict((oc) => oc.columns(['tenant_id', 'dedup_key']).doNothing())
    .returning(['id'])
    .executeTakeFirst();
  if (!inserted) return undefined;
  await audit.append(trx, {
    tenantId,
    type: 'security.alert.raised',
    actor: { kind: 'system', id: 'detection' },
    target: { type: 'alert', id: row.id },
    reason: finding.rule,
  });
  return { alert: row, created: true };
}

export async function findAlert(db: Db, tenantId: string, id: string) {
  return db
    .selectFrom('alerts')
    .select(ALERT_COLUMNS)
    .where('tenant_id', '=', tenantId)
    .where('id', '=', id)
    .executeTakeFirst();
}
