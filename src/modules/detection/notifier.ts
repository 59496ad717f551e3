import type { AlertView } from './alerts.ts';

/** Who is told of an alert: a user of the tenant, or an address from the detection settings. */
export interface AlertRecipient {
  /** Null for an address listed in the settings (`alertRecipients.emails`). */
  userId: string | null;
  email: string;
}

/**
 * Tells people of a new alert (by e-mail: `createMailAlertNotifier`). Called once the alert is
 * committed; a failure is logged and never undoes the alert. Webhooks need nothing here: the
 * alert is the audit event `security.alert.raised`, which the SIEM outbox delivers.
 */
export interface AlertNotifier {
  notify(
    alert: AlertView,
    recipients: readonly AlertRecipient[],
    tenant: { id: string; name: string },
  ): Promise<void>;
}

/** Tells nobody (tests, and tools that must not send mail). */
export const noopAlertNotifier: AlertNotifier = { notify: async () => undefined };
