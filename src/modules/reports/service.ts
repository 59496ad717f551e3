import type { Kysely } from 'kysely';
import type { Clock } from '../../clock.ts';
import { authorize, type Actor } from '../../core/policy/index.ts';
import type { Database } from '../../db/schema.ts';
import { AppError, notFound } from '../../errors.ts';
import type { UserCrypto } from '../users/crypto.ts';
import { securityReportData, type SecurityReportData } from './data.ts';

/** A report covers at most a year: the per-day series stays small enough to draw and read. */
export const MAX_REPORT_DAYS = 366;
const DEFAULT_DAYS = 30;
const DAY_MS = 86_400_000;

/** The report period: `to` defaults to now (inclusive), `from` to 30 days before `to`. */
export function reportRange(
  clock: Clock,
  from: string | undefined,
  to: string | undefined,
): { from: Date; to: Date } {
  // `to` is exclusive: by default it ends just after now, so what happened this instant counts.
  const end = to === undefined ? new Date(clock.now().getTime() + 1) : parseTime(to, 'to');
  const start =
    from === undefined ? new Date(end.getTime() - DEFAULT_DAYS * DAY_MS) : parseTime(from, 'from');
  if (start.getTime() >= end.getTime()) {
    throw new AppError('invalid', 'report.invalid_range', 'report range is empty', {
      detail: '"from" must be earlier than "to".',
      errors: [{ field: '/from', reason: 'must be earlier than "to"' }],
    });
  }
  if (end.getTime() - start.getTime() > MAX_REPORT_DAYS * DAY_MS) {
    throw new AppError('invalid', 'report.invalid_range', 'report range too long', {
      detail: `A report covers at most ${MAX_REPORT_DAYS} days.`,
      errors: [{ field: '/to', reason: `at most ${MAX_REPORT_DAYS} days after "from"` }],
    });
  }
  return { from: start, to: end };
}

function parseTime(value: string, field: 'from' | 'to'): Date {
  // A date alone means its midnight, UTC.
  const text = /^\d{4}-\d{2}-\d{2}$/.test(value) ? `${value}T00:00:00Z` : value;
  const time = Date.parse(text);
  if (!/^\d{4}-\d{2}-\d{2}(?:T[\d:.]+(?:Z|[+-]\d{2}:\d{2}))?$/.test(text) || Number.isNaN(time)) {
    throw new AppError('invalid', 'report.invalid_range', `unreadable ${field}`, {
      detail: `"${field}" must be a date (YYYY-MM-DD) or an ISO 8601 time with a zone.`,
      errors: [{ field: `/${field}`, reason: 'must be a date or an ISO 8601 time' }],
    });
  }
  return new Date(time);
}

export function createReportService(deps: {
  db: Kysely<Database>;
  clock: Clock;
  /** Opens the names of the users a report lists. */
  users: UserCrypto;
}) {
  /** The security report of the actor's tenant. Administrators only (as the audit log). */
  async function security(
    actor: Actor,
    query: { from?: string | undefined; to?: string | undefined },
  ): Promise<SecurityReportData> {
    authorize(actor, 'read', 'audit');
    const range = reportRange(deps.clock, query.from, query.to);
    const tenant = await deps.db
      .selectFrom('tenants')
      .select(['id', 'slug', 'name'])
      .where('id', '=', actor.tenantId)
      .executeTakeFirst();
    if (!tenant) throw notFound('tenant');
    return securityReportData(deps.db, deps.users, tenant, range);
  }
  return { security };
}

export type ReportService = ReturnType<typeof createReportService>;
