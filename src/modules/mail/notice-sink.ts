import { createHash } from 'node:crypto';
import type { Kysely } from 'kysely';
import type { Clock } from '../../clock.ts';
import type { Database } from '../../db/schema.ts';
import type { AuditSink, IdentityEvent } from '../auth/events.ts';
import type { Mailer, MailKind, MailLog } from './mailer.ts';
import {
  mfaChangedNotice,
  newDeviceNotice,
  passwordChangedNotice,
  type Rendered,
} from './templates.ts';
import type { UserCrypto } from '../users/crypto.ts';

/**
 * What identifies a device: the user agent with its version numbers removed, so a browser update
 * is not a new device but another browser or operating system is. Hashed with the user id, so the
 * table holds no user agent and one user's hashes say nothing about another's.
 */
export function deviceHash(userId: string, userAgent: string | null): string {
  const family = (userAgent ?? '')
    .replace(/[0-9]+/g, '')
    .replace(/\s+/g, ' ')
    .trim();
  return createHash('sha256').update(`custos-device\u0000${userId}\u0000${family}`).digest('hex');
}

export interface NoticeSinkDeps {
  /** The sink every event is forwarded to first (the audit log). */
  inner: AuditSink;
  db: Kysely<Database>;
  clock: Clock;
  mailer: Mailer;
  publicUrl: string;
  log: MailLog;
  /** Opens the recipient's e-mail. */
  users: UserCrypto;
}

/**
 * An `AuditSink` decorator that, once an identity event is recorded, mails its user a security
 * notice: sign-in from a new device (not the first sign-in ever), password changed or reset, a
 * second factor added or removed (any method). A failure here is logged and never fails the
 * request; a failure of the inner sink propagates and sends nothing.
 */
export function createNoticeSink(deps: NoticeSinkDeps): AuditSink {
  const { db, clock, mailer, publicUrl } = deps;

  async function recipient(tenantId: string, userId: string) {
    const row = await db
      .selectFrom('users')
      .innerJoin('tenants', 'tenants.id', 'users.tenant_id')
      .select(['users.id', 'users.email', 'users.name', 'tenants.name as tenant_name'])
      .where('users.id', '=', userId)
      .where('users.tenant_id', '=', tenantId)
      .executeTakeFirst();
    return row && deps.users.openOne(tenantId, row);
  }

  async function mail(
    kind: MailKind,
    who: { tenantId: string; userId: string },
    render: (tenantName: string) => Rendered,
  ) {
    const user = await recipient(who.tenantId, who.userId);
    if (!user) return;
    const { subject, text } = render(user.tenant_name);
    mailer.send(kind, { to: user.email, subject, text });
  }

  /** Records the device; true when it is new and the user had signed in from another before. */
  async function isNewDevice(event: Extract<IdentityEvent, { type: 'auth.login.succeeded' }>) {
    const session = await db
      .selectFrom('sessions')
      .select(['user_agent'])
      .where('id', '=', event.sessionId)
      .executeTakeFirst();
    const hash = deviceHash(event.userId, session?.user_agent ?? null);
    const now = clock.now().toISOString();
    const seen = await db
      .updateTable('user_devices')
      .set({ last_seen_at: now })
      .where('user_id', '=', event.userId)
      .where('device_hash', '=', hash)
      .executeTakeFirst();
    if (Number(seen.numUpdatedRows) > 0) return false;
    const other = await db
      .selectFrom('user_devices')
      .select(['device_hash'])
      .where('user_id', '=', event.userId)
      .limit(1)
      .executeTakeFirst();
    const inserted = await db
      .insertInto('user_devices')
      .values({
        user_id: event.userId,
        device_hash: hash,
        tenant_id: event.tenantId,
        first_seen_at: now,
        last_seen_at: now,
      })
      .onConflict((oc) => oc.columns(['user_id', 'device_hash']).doNothing())
      .executeTakeFirst();
    // Two sign-ins racing from one new device: only the one that inserted it notifies.
    return other !== undefined && Number(inserted.numInsertedOrUpdatedRows ?? 0) > 0;
  }

  /** Only these events concern the user enough to mail them; every other one sends nothing. */
  async function notify(event: IdentityEvent): Promise<void> {
    if (event.type === 'auth.login.succeeded') {
      if (await isNewDevice(event)) {
        await mail('new_device_notice', event, (tenantName) =>
          newDeviceNotice({ tenantName, at: event.at, publicUrl }),
        );
      }
    } else if (event.type === 'auth.password.changed') {
      await mail('password_changed_notice', event, (tenantName) =>
        passwordChangedNotice({
          tenantName,
          at: event.at,
          method: event.method ?? 'change',
          publicUrl,
        }),
      );
    } else if (event.type === 'auth.mfa.enrolled' || event.type === 'auth.mfa.removed') {
      const change = event.type === 'auth.mfa.enrolled' ? 'enrolled' : 'removed';
      await mail('mfa_changed_notice', event, (tenantName) =>
        mfaChangedNotice({ tenantName, at: event.at, change, method: event.method, publicUrl }),
      );
    }
  }

  return {
    async record(event) {
      await deps.inner.record(event);
      try {
        await notify(event);
      } catch (error) {
        const code = (error as { code?: unknown }).code;
        deps.log.error(
          { event: event.type, ...(typeof code === 'string' ? { code } : {}) },
          'security notice not sent',
        );
      }
    },
  };
}
