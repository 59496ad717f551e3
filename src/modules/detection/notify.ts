import type { Kysely } from 'kysely';
import type { Database } from '../../db/schema.ts';
import type { AlertView } from './alerts.ts';
import type { AlertNotifier, AlertRecipient } from './notifier.ts';
import { readSettings } from './settings.ts';
import type { UserCrypto } from '../users/crypto.ts';

/**
 * Tells the tenant's recipients of a committed alert: its active owners and admins (unless the
 * detection settings turned them off) and the addresses its settings list, each address once.
 * A failing notifier never undoes the alert.
 */
export async function notifyAlert(
  db: Kysely<Database>,
  users: UserCrypto,
  notifier: AlertNotifier,
  tenantId: string,
  alert: AlertView,
  onError?: (error: unknown) => void,
): Promise<void> {
  try {
    const settings = await readSettings(db, tenantId);
    const tenant = await db
      .selectFrom('tenants')
      .select(['id', 'name'])
      .where('id', '=', tenantId)
      .executeTakeFirstOrThrow();
    const recipients: AlertRecipient[] = [];
    if (settings.alertRecipients.ownersAndAdmins) {
      const staff = await db
        .selectFrom('users')
        .select(['id', 'email', 'name'])
        .where('tenant_id', '=', tenantId)
        .where('status', '=', 'active')
        .where('role', 'in', ['owner', 'admin'])
        .orderBy('id')
        .execute();
      for (const u of await users.open(tenantId, staff)) {
        recipients.push({ userId: u.id, email: u.email });
      }
    }
    const known = new Set(recipients.map((r) => r.email.toLowerCase()));
    for (const email of settings.alertRecipients.emails) {
      if (known.has(email.toLowerCase())) continue;
      known.add(email.toLowerCase());
      recipients.push({ userId: null, email });
    }
    if (recipients.length === 0) return;
    await notifier.notify(alert, recipients, tenant);
  } catch (error) {
    onError?.(error);
  }
}
