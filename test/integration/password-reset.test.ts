import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createCollectingSink, type IdentityEvent } from '../../src/modules/auth/events.ts';
import { createTestContext, PASSWORD, type Session, type TestContext } from '../helpers/context.ts';
import { createMailTestContext, linkToken, type MailTestContext } from '../helpers/smtp.ts';
import { expectCode } from '../helpers/problem.ts';
import { enrolTotp, totpCode } from '../helpers/totp.ts';
import { SoftwareAuthenticator } from '../helpers/webauthn-authenticator.ts';

const PUBLIC_URL = 'https://crm.reset.example';
const NEW_PASSWORD = 'violet quarry lantern 42 drifts';
const sink = createCollectingSink();
let ctx: MailTestContext;

beforeAll(async () => {
  ctx = await createMailTestContext({ CUSTOS_PUBLIC_URL: PUBLIC_URL }, { audit: sink });
});
afterAll(async () => ctx?.close());

const requestReset = (tenant: string, email: string, remoteAddress = '203.0.113.7') =>
  ctx.app.inject({
    method: 'POST',
    url: '/api/v1/auth/password-reset',
    payload: { tenant, email },
    remoteAddress,
  });

const confirm = (payload: object) =>
  ctx.app.inject({ method: 'POST', url: '/api/v1/auth/password-reset/confirm', payload });

const login = (tenant: string, email: string, password: string) =>
  ctx.app.inject({
    method: 'POST',
    url: '/api/v1/auth/login',
    payload: { tenant, email, password },
  });

const me = (s: Session) =>
  ctx.app.inject({ method: 'GET', url: '/api/v1/auth/me', headers: s.headers });

const RESET_SUBJECT = 'Reset your Custos password';
const resetMails = (email: string) => ctx.inbox.to(email, RESET_SUBJECT);

/** Asks for a reset and returns the token of the link that arrived. */
async function resetToken(s: Session): Promise<string> {
  const before = resetMails(s.email).length;
  const res = await requestReset(s.tenant, s.email);
  expect(res.statusCode).toBe(202);
  const mails = await ctx.mailsTo(s.email, RESET_SUBJECT);
  expect(mails.length).toBe(before + 1);
  return linkToken(mails[mails.length - 1]!, `${PUBLIC_URL}/reset-password`);
}

async function eventsOf(run: () => Promise<unknown>): Promise<IdentityEvent[]> {
  const start = sink.events.length;
  await run();
  return sink.events.slice(start);
}

describe('password reset by mail', () => {
  it('mails a single-use link that sets the password, ends every session and signs nobody in', async () => {
    const owner = await ctx.tenant();
    const member = await ctx.user(owner, 'agent');
    const second = await ctx.login(member.tenant, member.email);
    const token = await resetToken(member);
    const mail = resetMails(member.email).at(-1)!;
    expect(mail.subject).toBe('Reset your Custos password');
    expect(mail.text).toContain(`${PUBLIC_URL}/reset-password?token=${token}`);
    expect(mail.text).toContain('30 minutes');
    expect(token).toMatch(/^[A-Za-z0-9_-]{43}$/);
    // Only its hash is stored.
    const rows = await ctx.database.handle.db
      .selectFrom('auth_links')
      .select(['token_hash'])
      .execute();
    expect(JSON.stringify(rows)).not.toContain(token);

    const events = await eventsOf(async () => {
      const res = await confirm({ token, newPassword: NEW_PASSWORD });
      expect(res.statusCode).toBe(204);
      expect(res.headers['set-cookie']).toBeUndefined();
    });
    expect(events.map((e) => e.type)).toEqual([
      'auth.password_reset.completed',
      'auth.password.changed',
      'auth.session.revoked',
      'auth.session.revoked',
    ]);
    expect(events[1]).toMatchObject({ userId: member.userId, method: 'reset' });
    expect(events[2]).toMatchObject({ reason: 'password_reset' });
    expectCode(await me(member), 401, 'auth.unauthenticated');
    expectCode(await me(second), 401, 'auth.unauthenticated');
    expect((await me(owner)).statusCode).toBe(200);
    expectCode(await login(member.tenant, member.email, PASSWORD), 401, 'auth.invalid_credentials');
    expect((await login(member.tenant, member.email, NEW_PASSWORD)).statusCode).toBe(200);
    // The token never reaches the log.
    expect(ctx.logs.join('\n')).not.toContain(token);
  });

  it('answers an unknown user, tenant or a disabled account exactly like a known one, and mails nothing', async () => {
    const owner = await ctx.tenant();
    const known = await requestReset(owner.tenant, owner.email);
    await ctx.services.mailer.settled();
    const count = ctx.inbox.mails.length;
    const answers = [
      await requestReset(owner.tenant, `nobody@${owner.tenant}.example`),
      await requestReset('no-such-tenant', owner.email),
    ];
    const disabled = await ctx.user(owner, 'agent');
    await ctx.app.inject({
      method: 'PATCH',
      url: `/api/v1/users/${disabled.userId}`,
      headers: owner.headers,
      payload: { status: 'disabled' },
    });
    answers.push(await requestReset(owner.tenant, disabled.email));
    await ctx.services.mailer.settled();
    for (const res of answers) {
      expect(res.statusCode).toBe(known.statusCode);
      expect(res.body).toBe(known.body);
      expect(res.headers['content-type']).toBe(known.headers['content-type']);
    }
    expect(ctx.inbox.mails.length).toBe(count);
    const recorded = sink.events.filter(
      (e) => e.type === 'auth.password_reset.requested' && e.tenantId === owner.tenantId,
    );
    expect(recorded.map((e) => 'userId' in e && e.userId)).toEqual([owner.userId, null, null]);
  });

  it('refuses a used link, then the same link again, with auth.reset_token_used', async () => {
    const owner = await ctx.tenant();
    const token = await resetToken(owner);
    expect((await confirm({ token, newPassword: NEW_PASSWORD })).statusCode).toBe(204);
    const again = await confirm({ token, newPassword: 'another fine passphrase 77' });
    expectCode(again, 400, 'auth.reset_token_used');
    expect(again.headers['content-type']).toContain('application/problem+json');
    expectCode(
      await login(owner.tenant, owner.email, 'another fine passphrase 77'),
      401,
      'auth.invalid_credentials',
    );
  });

  it('refuses a link at 30 minutes with auth.reset_token_expired (and accepts it just before)', async () => {
    const owner = await ctx.tenant();
    const token = await resetToken(owner);
    ctx.clock.advance(30 * 60_000);
    expectCode(
      await confirm({ token, newPassword: NEW_PASSWORD }),
      400,
      'auth.reset_token_expired',
    );
    ctx.clock.advance(-1000);
    expect((await confirm({ token, newPassword: NEW_PASSWORD })).statusCode).toBe(204);
    ctx.clock.advance(1000);
  });

  it('refuses an unknown token and a link superseded by a newer one with auth.reset_token_invalid', async () => {
    const owner = await ctx.tenant();
    const older = await resetToken(owner);
    const newer = await resetToken(owner);
    expectCode(
      await confirm({ token: older, newPassword: NEW_PASSWORD }),
      400,
      'auth.reset_token_invalid',
    );
    expectCode(
      await confirm({ token: 'A'.repeat(43), newPassword: NEW_PASSWORD }),
      400,
      'auth.reset_token_invalid',
    );
    expectCode(
      await confirm({ token: 'not a token!', newPassword: NEW_PASSWORD }),
      400,
      'request.invalid',
    );
    expect((await confirm({ token: newer, newPassword: NEW_PASSWORD })).statusCode).toBe(204);
  });

  it('applies the password policy, and a refused password leaves the link usable', async () => {
    const owner = await ctx.tenant();
    const token = await resetToken(owner);
    for (const newPassword of ['short one', 'passwordpassword', `${owner.tenant}${owner.tenant}`]) {
      const res = await confirm({ token, newPassword });
      expectCode(res, 400, 'auth.password_rejected');
      expect(res.body).not.toContain(newPassword);
    }
    expect((await confirm({ token, newPassword: NEW_PASSWORD })).statusCode).toBe(204);
  });

  it('never bypasses TOTP: no code is refused, a wrong one too, a current one or a recovery code works', async () => {
    const owner = await ctx.tenant();
    // Enrol TOTP (the sign-in is fresh, so no step-up is needed).
    const { secret, recoveryCodes } = await enrolTotp(ctx, owner);
    const code = () => totpCode(ctx.clock, secret);
    ctx.clock.advance(30_000);

    const token = await resetToken(owner);
    expectCode(await confirm({ token, newPassword: NEW_PASSWORD }), 400, 'auth.reset_mfa_required');
    const wrong = code() === '000000' ? '111111' : '000000';
    const failed = await eventsOf(async () =>
      expectCode(
        await confirm({ token, newPassword: NEW_PASSWORD, code: wrong }),
        400,
        'auth.mfa_invalid_code',
      ),
    );
    expect(failed.map((e) => e.type)).toContain('auth.mfa.failed');
    expectCode(
      await login(owner.tenant, owner.email, NEW_PASSWORD),
      401,
      'auth.invalid_credentials',
    );
    expect((await confirm({ token, newPassword: NEW_PASSWORD, code: code() })).statusCode).toBe(
      204,
    );
    expectCode(await me(owner), 401, 'auth.unauthenticated');
    // The new password still needs the second factor at sign-in.
    const signIn = await login(owner.tenant, owner.email, NEW_PASSWORD);
    expect(signIn.json()).toMatchObject({ mfaRequired: true });

    // A recovery code works too, once.
    const token2 = await resetToken(owner);
    const third = 'third passphrase for the reset 9';
    const ok = await confirm({ token: token2, newPassword: third, recoveryCode: recoveryCodes[0] });
    expect(ok.statusCode).toBe(204);
    const token3 = await resetToken(owner);
    expectCode(
      await confirm({ token: token3, newPassword: NEW_PASSWORD, recoveryCode: recoveryCodes[0] }),
      400,
      'auth.mfa_invalid_code',
    );
  });
});

describe('password reset with a passkey as the second factor', () => {
  type Options = { challenge: string; rpId: string; allowCredentials: Array<{ id: string }> };

  /** Registers a passkey for `s` (a fresh sign-in needs no step-up). */
  async function registerPasskey(s: Session): Promise<SoftwareAuthenticator> {
    const auth = SoftwareAuthenticator.create(PUBLIC_URL);
    const options = await ctx.app.inject({
      method: 'POST',
      url: '/api/v1/auth/passkeys/registration/options',
      headers: s.headers,
    });
    expect(options.statusCode, options.body).toBe(200);
    const res = await ctx.app.inject({
      method: 'POST',
      url: '/api/v1/auth/passkeys/registration',
      headers: s.headers,
      payload: { credential: auth.register(options.json()) },
    });
    expect(res.statusCode, res.body).toBe(201);
    return auth;
  }

  const passkeyOptions = (token: string) =>
    ctx.app.inject({
      method: 'POST',
      url: '/api/v1/auth/password-reset/passkey-options',
      payload: { token },
    });

  it('never bypasses a passkey: the mailbox alone or a wrong passkey is refused, the right one works', async () => {
    const owner = await ctx.tenant();
    const member = await ctx.user(owner, 'agent');
    const auth = await registerPasskey(member);
    const other = await registerPasskey(await ctx.user(owner, 'agent'));
    const token = await resetToken(member);

    // The mailbox alone: refused, and the password is unchanged.
    expectCode(await confirm({ token, newPassword: NEW_PASSWORD }), 400, 'auth.reset_mfa_required');
    // No recovery codes come with a passkey, and there is no TOTP code to give.
    expectCode(
      await confirm({ token, newPassword: NEW_PASSWORD, code: '123456' }),
      400,
      'auth.mfa_invalid_code',
    );
    const options = await passkeyOptions(token);
    expect(options.statusCode, options.body).toBe(200);
    const body = options.json<Options>();
    expect(body.allowCredentials.map((c) => c.id)).toEqual([auth.id]);
    // Another user's passkey, then a replay of the spent challenge with the right one.
    const refused = await eventsOf(async () => {
      expectCode(
        await confirm({ token, newPassword: NEW_PASSWORD, passkey: other.assert(body) }),
        400,
        'auth.passkey_invalid',
      );
      expectCode(
        await confirm({ token, newPassword: NEW_PASSWORD, passkey: auth.assert(body) }),
        400,
        'auth.passkey_invalid',
      );
    });
    expect(
      refused.filter((e) => e.type === 'auth.passkey.failed').map((e) => 'reason' in e && e.reason),
    ).toEqual(['unknown_credential', 'challenge_invalid']);
    expect(refused).toContainEqual(
      expect.objectContaining({ type: 'auth.mfa.failed', stage: 'password_reset' }),
    );
    expectCode(
      await login(member.tenant, member.email, NEW_PASSWORD),
      401,
      'auth.invalid_credentials',
    );

    // A fresh challenge signed by the member's own passkey.
    const fresh = (await passkeyOptions(token)).json<Options>();
    const done = await confirm({ token, newPassword: NEW_PASSWORD, passkey: auth.assert(fresh) });
    expect(done.statusCode, done.body).toBe(204);
    expectCode(await me(member), 401, 'auth.unauthenticated');
    // The new password still needs the passkey at sign-in.
    const signIn = await login(member.tenant, member.email, NEW_PASSWORD);
    expect(signIn.json()).toMatchObject({ mfaRequired: true });
  });

  it('gives passkey options only for a usable link of an account with a passkey', async () => {
    const owner = await ctx.tenant();
    const token = await resetToken(owner);
    expectCode(await passkeyOptions(token), 409, 'auth.passkey_not_registered');
    expectCode(await passkeyOptions('A'.repeat(43)), 400, 'auth.reset_token_invalid');
    ctx.clock.advance(30 * 60_000);
    expectCode(await passkeyOptions(token), 400, 'auth.reset_token_expired');
  });
});

describe('password reset mails per account', () => {
  it('sends at most 3 reset mails an hour per account, then answers the same and sends nothing', async () => {
    const owner = await ctx.tenant();
    const tokens = [];
    for (let i = 0; i < 3; i++) tokens.push(await resetToken(owner));
    const sent = resetMails(owner.email).length;
    const unknown = await requestReset(owner.tenant, `nobody@${owner.tenant}.example`);
    // From other addresses too: the limit is the account's, not the client's.
    const events = await eventsOf(async () => {
      for (const address of ['198.51.100.1', '198.51.100.2']) {
        const res = await requestReset(owner.tenant, owner.email, address);
        expect(res.statusCode).toBe(unknown.statusCode);
        expect(res.body).toBe(unknown.body);
        expect(res.headers['content-type']).toBe(unknown.headers['content-type']);
      }
      await ctx.services.mailer.settled();
    });
    expect(resetMails(owner.email).length).toBe(sent);
    expect(events.filter((e) => e.type === 'auth.password_reset.requested')).toEqual([
      expect.objectContaining({ userId: owner.userId, limited: true }),
      expect.objectContaining({ userId: owner.userId, limited: true }),
    ]);
    // A refused request does not supersede the last link that was sent.
    expect((await confirm({ token: tokens[2]!, newPassword: NEW_PASSWORD })).statusCode).toBe(204);
    // An hour later mails leave again.
    ctx.clock.advance(60 * 60_000);
    const next = await resetToken(owner);
    const again = 'a passphrase after the hour 31';
    expect((await confirm({ token: next, newPassword: again })).statusCode).toBe(204);
  });
});

describe('password reset throttling', () => {
  let small: TestContext;
  beforeAll(async () => {
    small = await createTestContext({ CUSTOS_LOGIN_FAILURES_PER_ADDRESS_PER_DAY: '3' });
  });
  afterAll(async () => small?.close());

  it('refuses an address past its daily budget with 429 auth.reset_rate_limited, known user or not', async () => {
    const owner = await small.tenant();
    const ask = (email: string, remoteAddress: string) =>
      small.app.inject({
        method: 'POST',
        url: '/api/v1/auth/password-reset',
        payload: { tenant: owner.tenant, email },
        remoteAddress,
      });
    for (let i = 0; i < 3; i++)
      expect((await ask(`x${i}@nowhere.example`, '192.0.2.50')).statusCode).toBe(202);
    const refused = await ask(owner.email, '192.0.2.50');
    expect(refused.statusCode).toBe(429);
    expect(refused.json<{ code: string }>().code).toBe('auth.reset_rate_limited');
    expect((await ask(owner.email, '192.0.2.51')).statusCode).toBe(202);
  });
});
