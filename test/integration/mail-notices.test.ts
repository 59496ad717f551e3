import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createMailer } from '../../src/modules/mail/mailer.ts';
import { createTestContext, PASSWORD, type Session } from '../helpers/context.ts';
import {
  createMailTestContext,
  deadSmtpUrl,
  mailedResetToken,
  silentSmtpServer,
  type MailTestContext,
} from '../helpers/smtp.ts';
import { enrolTotp, totpCode } from '../helpers/totp.ts';

const FIREFOX_LINUX = 'Mozilla/5.0 (X11; Linux x86_64; rv:133.0) Gecko/20100101 Firefox/133.0';
const FIREFOX_LINUX_NEXT = 'Mozilla/5.0 (X11; Linux x86_64; rv:134.0) Gecko/20100101 Firefox/134.0';
const SAFARI_IPHONE =
  'Mozilla/5.0 (iPhone; CPU iPhone OS 18_1 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/18.1 Mobile/15E148 Safari/604.1';

describe('security notices by mail', () => {
  let ctx: MailTestContext;
  beforeAll(async () => {
    ctx = await createMailTestContext({
      CUSTOS_MAIL_FROM: 'Custos Security <security@crm.notices.example>',
    });
  });
  afterAll(async () => ctx?.close());

  const signIn = (s: Session, userAgent: string) =>
    ctx.app.inject({
      method: 'POST',
      url: '/api/v1/auth/login',
      headers: { 'user-agent': userAgent },
      payload: { tenant: s.tenant, email: s.email, password: PASSWORD },
    });

  const notices = (email: string, subject: string) => ctx.mailsTo(email, subject);

  it('tells a user about a sign-in from a new device, not the first sign-in nor a browser update', async () => {
    const owner = await ctx.tenant();
    const member = await ctx.user(owner, 'agent');
    const subject = 'New sign-in to your Custos account';
    // ctx.user signed in once (first device): no notice.
    expect(await notices(member.email, subject)).toHaveLength(0);
    expect((await signIn(member, FIREFOX_LINUX)).statusCode).toBe(200);
    const first = await notices(member.email, subject);
    expect(first).toHaveLength(1);
    expect(first[0]!.from).toBe('security@crm.notices.example');
    expect(first[0]!.raw).toContain('Custos Security');
    expect(first[0]!.text).toContain(`Tenant ${owner.tenant}`);
    // The user agent (typed by whoever signed in) is not quoted.
    expect(first[0]!.text).not.toContain('Firefox');
    expect((await signIn(member, FIREFOX_LINUX)).statusCode).toBe(200);
    expect((await signIn(member, FIREFOX_LINUX_NEXT)).statusCode).toBe(200);
    expect(await notices(member.email, subject)).toHaveLength(1);
    expect((await signIn(member, SAFARI_IPHONE)).statusCode).toBe(200);
    expect(await notices(member.email, subject)).toHaveLength(2);
    // A failed sign-in from yet another device sends nothing.
    await ctx.app.inject({
      method: 'POST',
      url: '/api/v1/auth/login',
      headers: { 'user-agent': 'curl/8.5.0' },
      payload: { tenant: member.tenant, email: member.email, password: 'wrong password entirely' },
    });
    expect(await notices(member.email, subject)).toHaveLength(2);
    // Devices are stored as hashes only.
    const devices = await ctx.database.handle.db
      .selectFrom('user_devices')
      .select(['device_hash'])
      .where('user_id', '=', member.userId)
      .execute();
    expect(devices).toHaveLength(3);
    expect(JSON.stringify(devices)).not.toContain('Mozilla');
  });

  it('tells a user when a second factor is added and when it is removed', async () => {
    const owner = await ctx.tenant();
    const { secret } = await enrolTotp(ctx, owner);
    const code = () => totpCode(ctx.clock, secret);
    const added = await notices(owner.email, 'A second factor was added to your Custos account');
    expect(added).toHaveLength(1);
    expect(added[0]!.text).toContain('authenticator app (TOTP)');
    ctx.clock.advance(30_000);
    const off = await ctx.app.inject({
      method: 'DELETE',
      url: '/api/v1/auth/mfa/totp',
      headers: owner.headers,
      payload: { code: code() },
    });
    expect(off.statusCode).toBe(204);
    expect(
      await notices(owner.email, 'A second factor was removed from your Custos account'),
    ).toHaveLength(1);
  });

  it('tells a user their password was reset through a link', async () => {
    const owner = await ctx.tenant();
    const token = await mailedResetToken(ctx, owner);
    const res = await ctx.app.inject({
      method: 'POST',
      url: '/api/v1/auth/password-reset/confirm',
      payload: {
        token,
        newPassword: 'copper meadow 61 unfolds slowly',
      },
    });
    expect(res.statusCode).toBe(204);
    const [notice] = await notices(owner.email, 'Your Custos password was changed');
    expect(notice?.text).toContain('reset through an e-mailed link');
  });
});

describe('when mail cannot be sent', () => {
  it('answers the request as usual and logs the failure without the token or the address', async () => {
    const ctx = await createTestContext({ CUSTOS_SMTP_URL: await deadSmtpUrl() });
    try {
      const owner = await ctx.tenant();
      const started = Date.now();
      const res = await ctx.app.inject({
        method: 'POST',
        url: '/api/v1/auth/password-reset',
        payload: { tenant: owner.tenant, email: owner.email },
      });
      expect(res.statusCode).toBe(202);
      expect(Date.now() - started).toBeLessThan(2000);
      await ctx.services.mailer.settled();
      const lines = ctx.logs.filter((l) => l.includes('"mail":"password_reset"'));
      expect(lines).toHaveLength(1);
      expect(lines[0]).toContain('mail not sent');
      expect(lines[0]).toMatch(/"code":"E[A-Z]+"/);
      const row = await ctx.database.handle.db
        .selectFrom('auth_links')
        .select(['token_hash'])
        .executeTakeFirstOrThrow();
      expect(row.token_hash).toMatch(/^[0-9a-f]{64}$/);
      const all = ctx.logs.join('\n');
      expect(all).not.toContain(owner.email);
      expect(all).not.toContain('reset-password?token=');
      // Notices fail the same quiet way: the password change still succeeds.
      const change = await ctx.app.inject({
        method: 'POST',
        url: '/api/v1/auth/password',
        headers: owner.headers,
        payload: { currentPassword: PASSWORD, newPassword: 'silent relay 88 still works' },
      });
      expect(change.statusCode).toBe(200);
    } finally {
      await ctx.close();
    }
  });

  it('without CUSTOS_SMTP_URL, logs that a notice could not be sent, never its content', async () => {
    const ctx = await createTestContext();
    try {
      const owner = await ctx.tenant();
      const res = await ctx.app.inject({
        method: 'POST',
        url: '/api/v1/auth/password-reset',
        payload: { tenant: owner.tenant, email: owner.email },
      });
      expect(res.statusCode).toBe(202);
      await ctx.services.mailer.settled();
      const lines = ctx.logs.filter((l) => l.includes('"mail":"password_reset"'));
      expect(lines).toHaveLength(1);
      expect(lines[0]).toContain('no mail relay configured');
      expect(ctx.logs.join('\n')).not.toContain('token=');
      expect(ctx.logs.join('\n')).not.toContain(owner.email);
    } finally {
      await ctx.close();
    }
  });

  it('gives up on a relay that never answers, without holding the caller', async () => {
    const relay = await silentSmtpServer();
    const logged: { level: string; fields: object; message: string }[] = [];
    const log = {
      info: (fields: object, message: string) => logged.push({ level: 'info', fields, message }),
      warn: (fields: object, message: string) => logged.push({ level: 'warn', fields, message }),
      error: (fields: object, message: string) => logged.push({ level: 'error', fields, message }),
    };
    const mailer = createMailer({ smtpUrl: relay.url, from: 'x@y.example', log, timeoutMs: 300 });
    try {
      const started = Date.now();
      mailer.send('password_reset', { to: 'a@b.example', subject: 's', text: 'secret-link' });
      expect(Date.now() - started).toBeLessThan(50);
      await mailer.settled();
      const waited = Date.now() - started;
      expect(waited).toBeGreaterThanOrEqual(250);
      expect(waited).toBeLessThan(5000);
      expect(logged).toHaveLength(1);
      expect(logged[0]).toMatchObject({ level: 'error', message: 'mail not sent' });
      expect(JSON.stringify(logged)).not.toContain('secret-link');
      expect(JSON.stringify(logged)).not.toContain('a@b.example');
    } finally {
      mailer.close();
      await relay.close();
    }
  });
});
