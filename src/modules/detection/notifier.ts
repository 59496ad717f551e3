import type { AlertView } from './alerts.ts';

/** Who is told of an alert: the tenant's active owners and admins. */
export interface AlertRecipient {
  userId: string;
  email: string;
}

/**
 * Tells people of a new alert (e-mail to the tenant's owners and admins). Called once the alert
 * is committed; a failure is logged and never undoes the alert. Webhooks need nothing here: the
 * alert is the audit event `security.alert.raised`, which the SIEM outbox delivers.
 */
export interface AlertNotifier {
  notify(alert: AlertView, recipients: readonly AlertRecipient[]): Promise<void>;
}

/** The default until a mailer is wired in compose.ts. */
export const noopAlertNotifier: AlertNotifier = { notify: async () => undefined };
