import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createCollectingSink, type IdentityEvent } from '../../src/modules/auth/events.ts';
import { PASSWORD, sessionCookie, type Session } from '../helpers/context.ts';
import { createMailTestContext, mailedResetToken, type MailTestContext } from '../helpers/smtp.ts';
import { expectCode } from '../helpers/problem.ts';

const NEW_PASSWORD = 'amber glacier whistles 58 times';
const sink = createCollectingSink();
let ctx: MailTestContext;

beforeAll(async () => {
  ctx = await createMailTestContext({}, { audit: sink });
});
afterAll(async () => ctx?.close());

const change = (s: Session, payload: object, remoteAddress = '198.51.100.20') =>
  ctx.app.inject({
    method: 'POST',
    url: '/api/v1/auth/password',
    headers: s.headers,
    payload,
    remoteAddress,
  });

const me = (headers: Record<string, string>) =>
  ctx.app.inject({ method: 'GET', url: '/api/v1/auth/me', headers });

async function eventsOf(run: () => Promise<unknown>): Promise<IdentityEvent[]> {
  const start = sink.events.length;
  await run();
  return sink.events.slice(start);
}

describe('POST /api/v1/auth/password', () => {
  it('changes the password, ends the other sessions and gives this one a new token', async () => {
    const owner = await ctx.tenant();
    const member = await ctx.user(owner, 'agent');
    const other = await ctx.login(member.tenant, member.email);
    let res: Awaited<ReturnType<typeof change>> | undefined;
    const events = await eventsOf(async () => {
      res = await change(member, { currentPassword: PASSWORD, newPassword: NEW_PASSWORD });
    });
    expect(res!.statusCode).toBe(200);
    const body = res!.json<{ csrfToken: string; sessionsEnded: number }>();
    expect(body.sessionsEnded).toBe(1);
    const cookie = sessionCookie(res!);
    expect(cookie).not.toBe(member.cookie);
    expect(body.csrfToken).not.toBe(member.csrfToken);
    // The old token is dead, the new one works (with its new CSRF token for writes).
    expectCode(await me(member.headers), 401, 'auth.unauthenticated');
    expectCode(await me(other.headers), 401, 'auth.unauthenticated');
    const fresh = { cookie, 'x-csrf-token': body.csrfToken };
    expect((await me(fresh)).statusCode).toBe(200);
    const write = await ctx.app.inject({
      method: 'POST',
      url: '/api/v1/companies',
      headers: fresh,
      payload: { name: 'Still signed in Ltd' },
    });
    expect(write.statusCode).toBe(201);
    expect(events.map((e) => e.type)).toEqual(['auth.password.changed', 'auth.session.revoked']);
    expect(events[0]).toMatchObject({ userId: member.userId, by: member.userId, method: 'change' });
    expect(events[1]).toMatchObject({ reason: 'password_changed' });
    const login = (password: string) =>
      ctx.app.inject({
        method: 'POST',
        url: '/api/v1/auth/login',
        payload: { tenant: member.tenant, email: member.email, password },
      });
    expect((await login(PASSWORD)).statusCode).toBe(401);
    expect((await login(NEW_PASSWORD)).statusCode).toBe(200);
    // A notice went to the user, without the password.
    const [notice] = await ctx.mailsTo(member.email, 'Your Custos password was changed');
    expect(notice?.text).toContain('was changed');
    expect(notice?.raw).not.toContain(NEW_PASSWORD);
  });

  it('refuses a wrong current password (counted in the throttle) and changes nothing', async () => {
    const owner = await ctx.tenant();
    const events = await eventsOf(async () =>
      expectCode(
        await change(owner, {
          currentPassword: 'not my password at all',
          newPassword: NEW_PASSWORD,
        }),
        400,
        'auth.current_password_invalid',
      ),
    );
    expect(events).toMatchObject([{ type: 'auth.password.change_failed', reason: 'bad_password' }]);
    expect((await me(owner.headers)).statusCode).toBe(200);
    // Five wrong guesses lock the account: the right password is then refused too.
    for (let i = 0; i < 4; i++) {
      await change(owner, { currentPassword: `wrong guess ${i}`, newPassword: NEW_PASSWORD });
    }
    expectCode(
      await change(owner, { currentPassword: PASSWORD, newPassword: NEW_PASSWORD }),
      400,
      'auth.current_password_invalid',
    );
    ctx.clock.advance(16 * 60_000);
  });

  it('applies the password policy to the new password', async () => {
    const owner = await ctx.tenant();
    const res = await change(owner, { currentPassword: PASSWORD, newPassword: 'iloveyou12345678' });
    expectCode(res, 400, 'auth.password_rejected');
    expect(res.json<{ errors: { field: string }[] }>().errors[0]?.field).toBe('body/newPassword');
    expectCode(
      await change(owner, { currentPassword: PASSWORD, newPassword: 'short' }),
      400,
      'auth.password_rejected',
    );
    expect((await me(owner.headers)).statusCode).toBe(200);
  });

  it('makes an open reset link useless', async () => {
    const owner = await ctx.tenant();
    const token = await mailedResetToken(ctx, owner);
    expect(
      (await change(owner, { currentPassword: PASSWORD, newPassword: NEW_PASSWORD })).statusCode,
    ).toBe(200);
    expectCode(
      await ctx.app.inject({
        method: 'POST',
        url: '/api/v1/auth/password-reset/confirm',
        payload: { token, newPassword: 'a third passphrase entirely 3' },
      }),
      400,
      'auth.reset_token_invalid',
    );
  });

  it('needs a session: an API key is refused, and the body is validated', async () => {
    const owner = await ctx.tenant();
    const key = await ctx.app.inject({
      method: 'POST',
      url: '/api/v1/api-keys',
      headers: owner.headers,
      payload: { name: 'script', role: 'admin' },
    });
    const bearer = { authorization: `Bearer ${key.json<{ key: string }>().key}` };
    expectCode(
      await ctx.app.inject({
        method: 'POST',
        url: '/api/v1/auth/password',
        headers: bearer,
        payload: { currentPassword: PASSWORD, newPassword: NEW_PASSWORD },
      }),
      403,
      'policy.forbidden',
    );
    expectCode(await change(owner, { newPassword: NEW_PASSWORD }), 400, 'request.invalid');
    expectCode(
      await ctx.app.inject({
        method: 'POST',
        url: '/api/v1/auth/password',
        headers: { cookie: owner.cookie },
        payload: { currentPassword: PASSWORD, newPassword: NEW_PASSWORD },
      }),
      403,
      'auth.csrf_failed',
    );
  });
});
