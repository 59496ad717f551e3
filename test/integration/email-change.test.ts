import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { FRESH_AUTH_MS } from '../../src/core/policy/index.ts';
import { createCollectingSink } from '../../src/modules/auth/events.ts';
import { PASSWORD, type Session } from '../helpers/context.ts';
import { createMailTestContext, type MailTestContext } from '../helpers/smtp.ts';
import { expectCode } from '../helpers/problem.ts';

const PUBLIC_URL = 'https://crm.email.example';
const sink = createCollectingSink();
let ctx: MailTestContext;

beforeAll(async () => {
  ctx = await createMailTestContext({ CUSTOS_PUBLIC_URL: PUBLIC_URL }, { audit: sink });
});
afterAll(async () => ctx?.close());

const ask = (s: Session, email: string) =>
  ctx.app.inject({
    method: 'POST',
    url: '/api/v1/auth/email',
    headers: s.headers,
    payload: { email },
  });
const confirm = (token: string) =>
  ctx.app.inject({ method: 'POST', url: '/api/v1/auth/email/confirm', payload: { token } });
const login = (tenant: string, email: string) =>
  ctx.app.inject({
    method: 'POST',
    url: '/api/v1/auth/login',
    payload: { tenant, email, password: PASSWORD },
  });

/** Asks for the change and returns the token mailed to the new address. */
async function tokenFor(s: Session, email: string): Promise<string> {
  const res = await ask(s, email);
  expect(res.statusCode).toBe(202);
  return ctx.mailedToken(email, /^Confirm your new/, `${PUBLIC_URL}/confirm-email`);
}

describe('changing the sign-in e-mail', () => {
  it('mails a link to the new address and a notice to the old one; the link applies it', async () => {
    const owner = await ctx.tenant();
    const newEmail = `renamed@${owner.tenant}.example`;
    const token = await tokenFor(owner, newEmail);
    const notice = ctx.inbox.to(owner.email).at(-1)!;
    expect(notice.subject).toBe('A change of your Custos e-mail address was requested');
    // The old address is not told the new one, nor given the link.
    expect(notice.raw).not.toContain(newEmail);
    expect(notice.raw).not.toContain(token);
    // Nothing changes before the confirmation.
    expect((await login(owner.tenant, owner.email)).statusCode).toBe(200);
    expect((await confirm(token)).statusCode).toBe(204);
    expect(sink.events.at(-1)).toMatchObject({ type: 'auth.email.changed', userId: owner.userId });
    expectCode(await login(owner.tenant, owner.email), 401, 'auth.invalid_credentials');
    expect((await login(owner.tenant, newEmail)).statusCode).toBe(200);
    const me = await ctx.app.inject({
      method: 'GET',
      url: '/api/v1/auth/me',
      headers: owner.headers,
    });
    expect(me.json<{ email: string }>().email).toBe(newEmail);
    expectCode(await confirm(token), 400, 'auth.email_token_used');
  });

  it('needs a fresh authentication (step-up) and a session', async () => {
    const owner = await ctx.tenant();
    ctx.clock.advance(FRESH_AUTH_MS + 1000);
    const stale = await ask(owner, `late@${owner.tenant}.example`);
    expectCode(stale, 401, 'auth.step_up_required');
    const stepUp = await ctx.stepUp(owner, PASSWORD);
    expect(stepUp.statusCode).toBe(200);
    expect((await ask(owner, `late@${owner.tenant}.example`)).statusCode).toBe(202);
    expectCode(await ask(owner, 'not an address'), 400, 'request.invalid');
  });

  it('refuses an expired link, a superseded one and an unknown one with their codes', async () => {
    const owner = await ctx.tenant();
    const first = await tokenFor(owner, `first@${owner.tenant}.example`);
    const second = await tokenFor(owner, `second@${owner.tenant}.example`);
    expectCode(await confirm(first), 400, 'auth.email_token_invalid');
    expectCode(await confirm('B'.repeat(43)), 400, 'auth.email_token_invalid');
    ctx.clock.advance(30 * 60_000);
    expectCode(await confirm(second), 400, 'auth.email_token_expired');
    expect((await login(owner.tenant, owner.email)).statusCode).toBe(200);
  });

  it('refuses at confirmation an address another user of the tenant has (user.email_taken)', async () => {
    const owner = await ctx.tenant();
    const member = await ctx.user(owner, 'agent');
    const token = await tokenFor(owner, member.email.toUpperCase());
    expectCode(await confirm(token), 409, 'user.email_taken');
    expect(sink.events.at(-1)).toMatchObject({
      type: 'auth.email.change_failed',
      reason: 'email_taken',
    });
    expect((await login(owner.tenant, owner.email)).statusCode).toBe(200);
    // Another tenant's user with that address is no obstacle.
    const other = await ctx.tenant();
    const token2 = await tokenFor(other, member.email);
    expect((await confirm(token2)).statusCode).toBe(204);
  });
});
