import { createServer, type AddressInfo, type Socket } from 'node:net';
import { SMTPServer } from 'smtp-server';
import { createTestContext, type TestContext } from './context.ts';

/** A message as the SMTP server received it, its single text part decoded. */
export interface ReceivedMail {
  from: string;
  to: string[];
  subject: string;
  text: string;
  /** Headers and body exactly as received. */
  raw: string;
}

/** A subject to pick mails by: the whole subject, or a pattern it matches. */
export type SubjectMatch = string | RegExp;

export interface Inbox {
  /** `smtp://127.0.0.1:<port>` */
  url: string;
  mails: ReceivedMail[];
  /** Mails to one address (with `subject` when given), oldest first. */
  to(address: string, subject?: SubjectMatch): ReceivedMail[];
  close(): Promise<void>;
}

function decodeQuotedPrintable(body: string): string {
  const soft = body.replace(/=\r?\n/g, '');
  const bytes: number[] = [];
  for (let i = 0; i < soft.length; i++) {
    const hex = soft.slice(i + 1, i + 3);
    if (soft[i] === '=' && /^[0-9A-Fa-f]{2}$/.test(hex)) {
      bytes.push(parseInt(hex, 16));
      i += 2;
    } else {
      bytes.push(...Buffer.from(soft[i] ?? '', 'utf8'));
    }
  }
  return Buffer.from(bytes).toString('utf8');
}

/** Enough of RFC 5322 / MIME for the single-part text mail Custos sends. */
export function parseMail(raw: string): { subject: string; text: string } {
  const split = raw.indexOf('\r\n\r\n');
  const head = raw.slice(0, split).replace(/\r\n[ \t]+/g, ' ');
  const body = raw.slice(split + 4);
  const header = (name: string) =>
    new RegExp(`^${name}:\\s*(.*)$`, 'im').exec(head)?.[1]?.trim() ?? '';
  const encoding = header('Content-Transfer-Encoding').toLowerCase();
  const text =
    encoding === 'quoted-printable'
      ? decodeQuotedPrintable(body)
      : encoding === 'base64'
        ? Buffer.from(body.replace(/\s+/g, ''), 'base64').toString('utf8')
        : body;
  return { subject: header('Subject'), text: text.replace(/\r\n/g, '\n') };
}

/** A real SMTP listener on 127.0.0.1 (random port), keeping every message it receives. */
export async function startInbox(): Promise<Inbox> {
  const mails: ReceivedMail[] = [];
  const server = new SMTPServer({
    authOptional: true,
    disabledCommands: ['AUTH', 'STARTTLS'],
    logger: false,
    onData(stream, session, callback) {
      const chunks: Buffer[] = [];
      stream.on('data', (chunk: Buffer) => chunks.push(chunk));
      stream.on('end', () => {
        const raw = Buffer.concat(chunks).toString('utf8');
        const envelope = session.envelope;
        mails.push({
          from: envelope.mailFrom === false ? '' : envelope.mailFrom.address,
          to: envelope.rcptTo.map((r) => r.address),
          ...parseMail(raw),
          raw,
        });
        callback();
      });
    },
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const port = (server.server.address() as AddressInfo).port;
  return {
    url: `smtp://127.0.0.1:${port}`,
    mails,
    to: (address, subject) =>
      mails.filter(
        (m) =>
          m.to.some((t) => t.toLowerCase() === address.toLowerCase()) &&
          (subject === undefined ||
            (typeof subject === 'string' ? m.subject === subject : subject.test(m.subject))),
      ),
    close: () => new Promise<void>((resolve) => server.close(() => resolve())),
  };
}

/** An `smtp://` URL where nothing listens (connections are refused). */
export async function deadSmtpUrl(): Promise<string> {
  const server = createServer();
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const port = (server.address() as AddressInfo).port;
  await new Promise<void>((resolve) => server.close(() => resolve()));
  return `smtp://127.0.0.1:${port}`;
}

/** A TCP listener that accepts connections and never says a word (a hung relay). */
export async function silentSmtpServer(): Promise<{ url: string; close(): Promise<void> }> {
  const sockets = new Set<Socket>();
  const server = createServer((socket) => {
    sockets.add(socket);
    socket.on('close', () => sockets.delete(socket));
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const port = (server.address() as AddressInfo).port;
  return {
    url: `smtp://127.0.0.1:${port}`,
    close: () =>
      new Promise<void>((resolve) => {
        for (const s of sockets) s.destroy();
        server.close(() => resolve());
      }),
  };
}

/** The token of the first link to `path` in a mail. */
export function linkToken(mail: ReceivedMail, path: string): string {
  const match = new RegExp(`${path.replace(/[/.]/g, '\\$&')}\\?token=([A-Za-z0-9_-]+)`).exec(
    mail.text,
  );
  if (!match?.[1]) throw new Error(`no ${path} link in: ${mail.text}`);
  return match[1];
}

/** A test context whose mail goes to its own inbox (`CUSTOS_SMTP_URL`). */
export interface MailTestContext extends TestContext {
  inbox: Inbox;
  /**
   * Waits until the app's mailer has sent what it queued, then: the mails to `address` (with
   * `subject` when given), oldest first.
   */
  mailsTo(address: string, subject?: SubjectMatch): Promise<ReceivedMail[]>;
  /**
   * Waits for the mailer, then: the token of the first link to `path` in the newest mail to
   * `address` with `subject`. Throws when no such mail arrived.
   */
  mailedToken(address: string, subject: SubjectMatch, path: string): Promise<string>;
  /** Closes the context, then the inbox. */
  close(): Promise<void>;
}

/** `createTestContext` with `env` and `options`, sending its mail to a fresh `startInbox()`. */
export async function createMailTestContext(
  env: Record<string, string> = {},
  options: Parameters<typeof createTestContext>[1] = {},
): Promise<MailTestContext> {
  const inbox = await startInbox();
  let ctx: TestContext;
  try {
    ctx = await createTestContext({ CUSTOS_SMTP_URL: inbox.url, ...env }, options);
  } catch (error) {
    await inbox.close();
    throw error;
  }
  const mailsTo = async (address: string, subject?: SubjectMatch) => {
    await ctx.services.mailer.settled();
    return inbox.to(address, subject);
  };
  return {
    ...ctx,
    inbox,
    mailsTo,
    async mailedToken(address, subject, path) {
      const mail = (await mailsTo(address, subject)).at(-1);
      if (!mail) throw new Error(`no mail to ${address} with the subject ${String(subject)}`);
      return linkToken(mail, path);
    },
    async close() {
      try {
        await ctx.close();
      } finally {
        await inbox.close();
      }
    },
  };
}

/**
 * Asks for a password reset of `s` (the answer is not checked) and returns the token of the
 * `/reset-password` link in the newest reset mail to its address.
 */
export async function mailedResetToken(
  ctx: MailTestContext,
  s: { tenant: string; email: string },
): Promise<string> {
  await ctx.app.inject({
    method: 'POST',
    url: '/api/v1/auth/password-reset',
    payload: { tenant: s.tenant, email: s.email },
  });
  return ctx.mailedToken(s.email, 'Reset your Custos password', '/reset-password');
}
