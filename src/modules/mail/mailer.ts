import { createTransport } from 'nodemailer';

/** What the mail module writes to the server log: never a message's content, token or address. */
export interface MailLog {
  info(fields: object, message: string): void;
  warn(fields: object, message: string): void;
  error(fields: object, message: string): void;
}

/** Names each kind of message in the log (the only thing logged about it besides the outcome). */
export type MailKind =
  | 'password_reset'
  | 'email_confirmation'
  | 'email_change_notice'
  | 'new_device_notice'
  | 'password_changed_notice'
  | 'mfa_changed_notice'
  /** A detection rule raised a security alert (detection/mail-notifier.ts). */
  | 'security_alert';

export interface MailMessage {
  to: string;
  subject: string;
  text: string;
}

export interface Mailer {
  /**
   * Sends in the background: never throws, never makes the caller wait, gives up after the
   * time limit; failures are logged (kind and error code only). Call after the change commits.
   */
  send(kind: MailKind, message: MailMessage): void;
  /** Resolves once every message handed to `send` so far was delivered or given up. */
  settled(): Promise<void>;
  close(): void;
}

export interface MailerOptions {
  /** `smtp://` or `smtps://`; undefined: mail disabled (each message is logged as not sent). */
  smtpUrl: string | undefined;
  from: string;
  log: MailLog;
  /** Longest a message may take, connection included (default 15 s). */
  timeoutMs?: number;
}

/** Only what identifies the failure: relay replies may quote the recipient's address. */
function failureOf(error: unknown): { code?: string; responseCode?: number } {
  if (typeof error !== 'object' || error === null) return {};
  const e = error as { code?: unknown; responseCode?: unknown };
  return {
    ...(typeof e.code === 'string' ? { code: e.code } : {}),
    ...(typeof e.responseCode === 'number' ? { responseCode: e.responseCode } : {}),
  };
}

/** The SMTP mailer (nodemailer), or a disabled one that only logs that nothing was sent. */
export function createMailer(options: MailerOptions): Mailer {
  const { log } = options;
  const timeoutMs = options.timeoutMs ?? 15_000;
  const pending = new Set<Promise<void>>();
  const transport =
    options.smtpUrl === undefined
      ? undefined
      : createTransport(
          {
            url: options.smtpUrl,
            connectionTimeout: Math.min(timeoutMs, 10_000),
            greetingTimeout: Math.min(timeoutMs, 10_000),
            socketTimeout: timeoutMs,
          },
          { from: options.from },
        );

  async function deliver(kind: MailKind, message: MailMessage): Promise<void> {
    if (!transport) {
      log.warn({ mail: kind }, 'mail not sent: no mail relay configured (CUSTOS_SMTP_URL)');
      return;
    }
    let timer: NodeJS.Timeout | undefined;
    const timeout = new Promise<never>((_, reject) => {
      timer = setTimeout(
        () => reject(Object.assign(new Error('timeout'), { code: 'ETIMEOUT' })),
        timeoutMs,
      );
    });
    try {
      await Promise.race([
        // An address object: one mailbox, whatever commas or names the string holds.
        transport.sendMail({
          to: { name: '', address: message.to },
          subject: message.subject,
          text: message.text,
        }),
        timeout,
      ]);
      log.info({ mail: kind }, 'mail sent');
    } catch (error) {
      log.error({ mail: kind, ...failureOf(error) }, 'mail not sent');
    } finally {
      clearTimeout(timer);
    }
  }

  return {
    send(kind, message) {
      const job = deliver(kind, message).catch(() => undefined);
      pending.add(job);
      void job.finally(() => pending.delete(job));
    },
    async settled() {
      while (pending.size > 0) await Promise.all([...pending]);
    },
    close() {
      transport?.close();
    },
  };
}
