import type { Mailer } from '../mail/mailer.ts';
import { securityAlertMail } from '../mail/templates.ts';
import type { AlertNotifier } from './notifier.ts';

/**
 * E-mails each recipient of a new alert (one message each, so no address sees the others),
 * through the mailer's background queue: a slow or broken relay never delays the detection
 * worker, and without CUSTOS_SMTP_URL the log says an alert mail was not sent.
 */
export function createMailAlertNotifier(deps: {
  mailer: Mailer;
  publicUrl: string;
}): AlertNotifier {
  return {
    notify(alert, recipients, tenant) {
      const mail = securityAlertMail({ tenantName: tenant.name, alert, publicUrl: deps.publicUrl });
      for (const r of recipients) deps.mailer.send('security_alert', { to: r.email, ...mail });
      return Promise.resolve();
    },
  };
}
