import { sql, type Kysely } from 'kysely';
import type { Database } from '../../db/schema.ts';
import type { UserCrypto } from '../users/crypto.ts';

/**
 * The numbers of the security report, read from the tenant's audit log: what happened between
 * `from` (inclusive) and `to` (exclusive). Only counts, event types, user ids and names, and client
 * addresses: no record values ever reach a report.
 */
export interface SecurityReportData {
  tenant: { id: string; slug: string; name: string };
  from: string;
  to: string;
  /** Bucket width of `signIns`: hours for ranges up to two days, else days (UTC). */
  bucket: 'hour' | 'day';
  signIns: { at: string; succeeded: number; failed: number }[];
  alertsByRule: { rule: string; count: number }[];
  /** Reads of sensitive fields, reveals and exports per acting user, most active first. */
  sensitiveByUser: { userId: string; name: string | null; reads: number; exports: number }[];
  /** Client addresses by number of events, with how many of them failed. */
  topAddresses: { ip: string; events: number; failures: number }[];
  totals: { events: number; signIns: number; signInFailures: number; alerts: number };
}

/** Event types each part of the report counts. */
export const REPORT_EVENT_TYPES = {
  signInSucceeded: ['auth.login.succeeded'],
  signInFailed: ['auth.login.failed', 'auth.mfa.failed'],
  /** Raised by the detection rules; the rule's id is the event's `reason`. */
  alert: ['security.alert.raised'],
  sensitiveRead: ['contact.field_read', 'record.read', 'record.revealed', 'contact.revealed'],
  export: ['contacts.exported', 'record.exported', 'export.created'],
} as const;

const TOP = 10;
const TWO_DAYS_MS = 2 * 24 * 3_600_000;

export async function securityReportData(
  db: Kysely<Database>,
  users: UserCrypto,
  tenant: { id: string; slug: string; name: string },
  range: { from: Date; to: Date },
): Promise<SecurityReportData> {
  const from = range.from.toISOString();
  const to = range.to.toISOString();
  const bucket = range.to.getTime() - range.from.getTime() <= TWO_DAYS_MS ? 'hour' : 'day';
  // ISO-8601 text sorts as time: the first 13 characters are the hour, the first 10 the day.
  const width = bucket === 'hour' ? 13 : 10;
  const inRange = db
    .selectFrom('audit_events')
    .where('audit_events.tenant_id', '=', tenant.id)
    .where('audit_events.occurred_at', '>=', from)
    .where('audit_events.occurred_at', '<', to);
  const T = REPORT_EVENT_TYPES;

  const slot = sql<string>`substr(occurred_at, 1, ${sql.lit(width)})`;
  const signInRows = await inRange
    .select([
      slot.as('slot'),
      sql<number>`sum(case when type in (${sql.join(T.signInSucceeded)}) then 1 else 0 end)`.as(
        'succeeded',
      ),
      sql<number>`sum(case when type in (${sql.join(T.signInFailed)}) then 1 else 0 end)`.as(
        'failed',
      ),
    ])
    .where('type', 'in', [...T.signInSucceeded, ...T.signInFailed])
    .groupBy(slot)
    .orderBy(slot)
    .execute();
  const bySlot = new Map(signInRows.map((r) => [r.slot, r]));
  const signIns: SecurityReportData['signIns'] = [];
  for (const at of slots(range.from, range.to, bucket)) {
    const row = bySlot.get(at.slice(0, width));
    signIns.push({ at, succeeded: Number(row?.succeeded ?? 0), failed: Number(row?.failed ?? 0) });
  }

  const alertRows = await inRange
    .select([sql<string>`coalesce(reason, 'unknown')`.as('rule'), sql<number>`count(*)`.as('n')])
    .where('type', 'in', [...T.alert])
    .groupBy(sql`coalesce(reason, 'unknown')`)
    .orderBy(sql`count(*)`, 'desc')
    .orderBy(sql`coalesce(reason, 'unknown')`)
    .limit(TOP)
    .execute();

  const userRows = await inRange
    .leftJoin('users', 'users.id', 'audit_events.actor_id')
    .select([
      'audit_events.actor_id as userId',
      'users.id as id',
      'users.email as email',
      'users.name as name',
      sql<number>`sum(case when audit_events.type in (${sql.join(T.sensitiveRead)}) then 1 else 0 end)`.as(
        'reads',
      ),
      sql<number>`sum(case when audit_events.type in (${sql.join(T.export)}) then 1 else 0 end)`.as(
        'exports',
      ),
    ])
    .where('audit_events.actor_kind', '=', 'user')
    .where('audit_events.actor_id', 'is not', null)
    .where('audit_events.type', 'in', [...T.sensitiveRead, ...T.export])
    .groupBy(['audit_events.actor_id', 'users.id', 'users.email', 'users.name'])
    .orderBy(sql`count(*)`, 'desc')
    .orderBy('audit_events.actor_id')
    .limit(TOP)
    .execute();

  const addressRows = await inRange
    .select([
      'ip',
      sql<number>`count(*)`.as('events'),
      sql<number>`sum(case when outcome = 'failure' then 1 else 0 end)`.as('failures'),
    ])
    .where('ip', 'is not', null)
    .groupBy('ip')
    .orderBy(sql`count(*)`, 'desc')
    .orderBy('ip')
    .limit(TOP)
    .execute();

  const total = await inRange
    .select([
      sql<number>`count(*)`.as('n'),
      sql<number>`sum(case when audit_events.type in (${sql.join(T.alert)}) then 1 else 0 end)`.as(
        'alerts',
      ),
    ])
    .executeTakeFirst();
  // Names are sealed at rest: opened for the users still there (a deleted one has no row).
  const known = userRows.flatMap((r) =>
    r.id !== null && r.email !== null && r.name !== null
      ? [{ id: r.id, email: r.email, name: r.name }]
      : [],
  );
  const names = new Map((await users.open(tenant.id, known)).map((u) => [u.id, u.name]));
  const signInTotal = signIns.reduce((n, s) => n + s.succeeded, 0);
  const failureTotal = signIns.reduce((n, s) => n + s.failed, 0);
  const alerts = alertRows.map((r) => ({ rule: r.rule, count: Number(r.n) }));
  return {
    tenant,
    from,
    to,
    bucket,
    signIns,
    alertsByRule: alerts,
    sensitiveByUser: userRows.map((r) => ({
      userId: r.userId ?? '',
      name: names.get(r.userId ?? '') ?? null,
      reads: Number(r.reads),
      exports: Number(r.exports),
    })),
    topAddresses: addressRows.map((r) => ({
      ip: r.ip ?? '',
      events: Number(r.events),
      failures: Number(r.failures),
    })),
    totals: {
      events: Number(total?.n ?? 0),
      signIns: signInTotal,
      signInFailures: failureTotal,
      alerts: Number(total?.alerts ?? 0),
    },
  };
}

/** Every bucket start in [from, to), as ISO strings (UTC). */
function slots(from: Date, to: Date, bucket: 'hour' | 'day'): string[] {
  const step = bucket === 'hour' ? 3_600_000 : 86_400_000;
  const start = new Date(from);
  if (bucket === 'hour') start.setUTCMinutes(0, 0, 0);
  else start.setUTCHours(0, 0, 0, 0);
  const out: string[] = [];
  for (let t = start.getTime(); t < to.getTime(); t += step) out.push(new Date(t).toISOString());
  return out;
}
