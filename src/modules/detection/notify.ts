import type { Kysely } from 'kysely';
import type { Database } from '../../db/schema.ts';
import type { AlertView } from './alerts.ts';
import type { AlertNotifier } from './notifier.ts';

/** Tells the tenant's active owners and admins; a failing notifier never undoes the alert. */
export async function notifyAlert(
  db: Kysely<Database>,
  notifier: AlertNotifier,
  tenantId: string,
  alert: AlertView,
  onError?: (error: unknown) => void,
): Promise<void> {
  try {
    const recipients = await db
      .selectFrom('users')
      .select(['id as userId', 'email'])
      .where('tenant_id', '=', tenantId)
      .where('status', '=', 'active')
      .where('role', 'in', ['owner', 'admin'])
      .orderBy('id')
      .execute();
    await notifier.notify(alert, recipients);
  } catch (error) {
    onError?.(error);
  }
}
