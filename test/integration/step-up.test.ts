import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { FRESH_AUTH_MS } from '../../src/core/policy/index.ts';
import { createCollectingSink, type IdentityEvent } from '../../src/modules/auth/events.ts';
import {
  createTestContext,
  PASSWORD,
  sessionCookie,
  type Session,
  type StepUpProof,
  type TestContext,
} from '../helpers/context.ts';
import { expectCode } from '../helpers/problem.ts';
import { enrolTotp, TOTP_STEP, totpCode } from '../helpers/totp.ts';

const sink = createCollectingSink();
let ctx: TestContext;

beforeAll(async () => {
  ctx = await createTestContext({}, { audit: sink });
});
afterAll(async () => ctx?.close());

type Res = { statusCode: number; headers: Record<string, unknown>; json(): { code: string } };

function expectStepUpRequired(res: Res) {
  expectCode(res, 401, 'auth.step_up_required');
  expect(String(res.headers['www-authenticate'])).toContain(
    'error="insufficient_user_authentication"',
  );
  expect(String(res.headers['www-authenticate'])).toContain('max_age=300');
}

async function eventsOf(run: () => Promise<unknown>): Promise<IdentityEvent[]> {
  const start = sink.events.length;
  await run();
  return sink.events.slice(start);
}

const codeFor = (secret: string) => totpCode(ctx.clock, secret);

/** A step-up; when it succeeds, the session goes on under its new token. */
const stepUp = (s: Session, proof: StepUpProof) =>
  ctx.stepUp(s, proof, { remoteAddress: '198.51.100.1' });

/** Every sensitive route, as `who` would call it, against `target` (another user). */
function sensitive(who: Session, target: Session) {
  const h = who.headers;
  return {
    createApiKey: () =>
      ctx.app.inject({
        method: 'POST',
        url: '/api/v1/api-keys',
        headers: h,
        payload: { name: 'k', role: 'agent' },
      }),
    enrolTotp: () => ctx.app.inject({ method: 'POST', url: '/api/v1/auth/mfa/totp', headers: h }),
    confirmTotp: () =>
      ctx.app.inject({
        method: 'POST',
        url: '/api/v1/auth/mfa/totp/confirm',
        headers: h,
        payload: { code: '123456' },
      }),
    removeTotp: () =>
      ctx.app.inject({
        method: 'DELETE',
        url: '/api/v1/auth/mfa/totp',
        headers: h,
        payload: { password: PASSWORD },
      }),
    changeRole: () =>
      ctx.app.inject({
        method: 'PATCH',
        url: `/api/v1/users/${target.userId}`,
        headers: h,
        payload: { role: 'viewer' },
      }),
    exportContacts: () =>
      ctx.app.inject({ method: 'GET', url: '/api/v1/contacts/export', headers: h }),
    endSessions: () =>
      ctx.app.inject({
        method: 'DELETE',
        url: `/api/v1/users/${target.userId}/sessions`,
        headers: h,
      }),
  };
}

describe('step-up authentication', () => {
  it('treats a sign-in as fresh for five minutes', async () => {
    const owner = await ctx.tenant();
    const member = await ctx.user(owner, 'agent');
    ctx.clock.advance(FRESH_AUTH_MS - 1_000);
    const routes = sensitive(owner, member);
    expect((await routes.exportContacts()).statusCode).toBe(200);
    expect((await routes.createApiKey()).statusCode).toBe(201);
  });

  it('refuses every sensitive route with auth.step_up_required once stale', async () => {
    const owner = await ctx.tenant();
    const member = await ctx.user(owner, 'agent');
    ctx.clock.advance(FRESH_AUTH_MS);
    const routes = sensitive(owner, member);
    for (const [name, call] of Object.entries(routes)) {
      const res = await call();
      expect(res.statusCode, name).toBe(401);
      expectStepUpRequired(res);
    }
    // Nothing happened: the member keeps the role and the session.
    const me = await ctx.app.inject({
      method: 'GET',
      url: '/api/v1/auth/me',
      headers: member.headers,
    });
    expect(me.json<{ role: string }>().role).toBe('agent');
  });

  it('leaves routes that are not sensitive alone', async () => {
    const owner = await ctx.tenant();
    const member = await ctx.user(owner, 'agent');
    ctx.clock.advance(FRESH_AUTH_MS * 2);
    const rename = await ctx.app.inject({
      method: 'PATCH',
      url: `/api/v1/users/${member.userId}`,
      headers: owner.headers,
      payload: { name: 'Renamed' },
    });
    expect(rename.statusCode).toBe(200);
    const keys = await ctx.app.inject({
      method: 'GET',
      url: '/api/v1/api-keys',
      headers: owner.headers,
    });
    expect(keys.statusCode).toBe(200);
  });

  it('makes the session fresh again with the password, for five minutes', async () => {
    const owner = await ctx.tenant();
    const member = await ctx.user(owner, 'agent');
    ctx.clock.advance(FRESH_AUTH_MS + 60_000);
    const events = await eventsOf(async () => {
      const res = await stepUp(owner, { password: PASSWORD });
      expect(res.statusCode).toBe(200);
      const body = res.json<{ authenticatedAt: string; freshUntil: string }>();
      expect(body.authenticatedAt).toBe(ctx.clock.now().toISOString());
      expect(Date.parse(body.freshUntil) - Date.parse(body.authenticatedAt)).toBe(FRESH_AUTH_MS);
    });
    expect(events).toContainEqual(
      expect.objectContaining({
        type: 'auth.step_up.succeeded',
        userId: owner.userId,
        method: 'password',
      }),
    );
    const routes = sensitive(owner, member);
    expect((await routes.exportContacts()).statusCode).toBe(200);
    expect((await routes.createApiKey()).statusCode).toBe(201);
    expect((await routes.endSessions()).statusCode).toBe(200);
    expect((await routes.changeRole()).statusCode).toBe(200);
    ctx.clock.advance(FRESH_AUTH_MS);
    expectStepUpRequired(await routes.exportContacts());
  });

  it('gives the session a new token at step-up: the old cookie and CSRF token stop working', async () => {
    const owner = await ctx.tenant();
    ctx.clock.advance(FRESH_AUTH_MS);
    const before = { ...owner.headers };
    const sessionId = (
      await ctx.database.handle.db
        .selectFrom('sessions')
        .select('id')
        .where('user_id', '=', owner.userId)
        .where('revoked_at', 'is', null)
        .executeTakeFirstOrThrow()
    ).id;
    const res = await stepUp(owner, { password: PASSWORD });
    expect(res.statusCode).toBe(200);
    const body = res.json<{ csrfToken: string; expiresAt: string }>();
    expect(owner.headers.cookie).not.toBe(before.cookie);
    expect(body.csrfToken).not.toBe(before['x-csrf-token']);
    const old = await ctx.app.inject({ method: 'GET', url: '/api/v1/auth/me', headers: before });
    expectCode(old, 401, 'auth.unauthenticated');
    // The same session (not a new one), now fresh, under the new token.
    expect((await sensitive(owner, owner).exportContacts()).statusCode).toBe(200);
    const rows = await ctx.database.handle.db
      .selectFrom('sessions')
      .select(['id', 'revoked_at'])
      .where('user_id', '=', owner.userId)
      .execute();
    expect(rows).toEqual([{ id: sessionId, revoked_at: null }]);
  });

  it('refreshes only the session that stepped up', async () => {
    const owner = await ctx.tenant();
    const other = await ctx.login(owner.tenant, owner.email);
    ctx.clock.advance(FRESH_AUTH_MS);
    expect((await stepUp(owner, { password: PASSWORD })).statusCode).toBe(200);
    const res = await ctx.app.inject({
      method: 'GET',
      url: '/api/v1/contacts/export',
      headers: other.headers,
    });
    expectStepUpRequired(res);
  });

  it('counts a wrong password in the account throttle', async () => {
    const owner = await ctx.tenant();
    ctx.clock.advance(FRESH_AUTH_MS);
    const events = await eventsOf(async () => {
      for (let i = 0; i < 5; i++) {
        expectCode(await stepUp(owner, { password: 'wrong' }), 400, 'auth.step_up_failed');
      }
    });
    expect(events).toContainEqual(
      expect.objectContaining({ type: 'auth.step_up.failed', reason: 'bad_password' }),
    );
    expect(events).toContainEqual(
      expect.objectContaining({ type: 'auth.account.locked', userId: owner.userId }),
    );
    // Locked: even the right password is refused now, at step-up and at sign-in.
    const locked = await eventsOf(async () => {
      expectCode(await stepUp(owner, { password: PASSWORD }), 400, 'auth.step_up_failed');
    });
    expect(locked).toContainEqual(
      expect.objectContaining({ type: 'auth.step_up.failed', reason: 'locked' }),
    );
    const login = await ctx.app.inject({
      method: 'POST',
      url: '/api/v1/auth/login',
      payload: { tenant: owner.tenant, email: owner.email, password: PASSWORD },
      remoteAddress: '198.51.100.99',
    });
    expectCode(login, 401, 'auth.invalid_credentials');
    expectStepUpRequired(await sensitive(owner, owner).exportContacts());
  });

  it('asks a TOTP user for the code, not the password, and refuses a replayed code', async () => {
    const owner = await ctx.tenant();
    const user = await ctx.user(owner, 'agent');
    const { secret } = await enrolTotp(ctx, user);
    ctx.clock.advance(FRESH_AUTH_MS);
    expectCode(await stepUp(user, { password: PASSWORD }), 400, 'auth.step_up_code_required');
    expectStepUpRequired(await sensitive(user, owner).exportContacts());
    const code = codeFor(secret);
    const ok = await eventsOf(async () => {
      expect((await stepUp(user, { code })).statusCode).toBe(200);
    });
    expect(ok).toContainEqual(
      expect.objectContaining({ type: 'auth.step_up.succeeded', method: 'totp' }),
    );
    expect((await sensitive(user, owner).exportContacts()).statusCode).toBe(200);
    const replay = await eventsOf(async () => {
      expectCode(await stepUp(user, { code }), 400, 'auth.step_up_failed');
    });
    expect(replay).toContainEqual(
      expect.objectContaining({ type: 'auth.step_up.failed', reason: 'replayed' }),
    );
  });

  it('counts a sign-in completed with the second factor as fresh', async () => {
    const owner = await ctx.tenant();
    const user = await ctx.user(owner, 'agent');
    const { secret } = await enrolTotp(ctx, user);
    ctx.clock.advance(FRESH_AUTH_MS + TOTP_STEP);
    const first = await ctx.app.inject({
      method: 'POST',
      url: '/api/v1/auth/login',
      payload: { tenant: owner.tenant, email: user.email, password: PASSWORD },
    });
    const { mfaToken } = first.json<{ mfaToken: string }>();
    const second = await ctx.app.inject({
      method: 'POST',
      url: '/api/v1/auth/login/mfa',
      payload: { mfaToken, code: codeFor(secret) },
    });
    expect(second.statusCode).toBe(200);
    const cookie = sessionCookie(second);
    const csrf = second.json<{ csrfToken: string }>().csrfToken;
    const res = await ctx.app.inject({
      method: 'GET',
      url: '/api/v1/contacts/export',
      headers: { cookie, 'x-csrf-token': csrf },
    });
    expect(res.statusCode).toBe(200);
  });

  it('treats a session from before step-up existed as stale', async () => {
    const owner = await ctx.tenant();
    await ctx.database.handle.db
      .updateTable('sessions')
      .set({ authenticated_at: null })
      .where('user_id', '=', owner.userId)
      .execute();
    expectStepUpRequired(await sensitive(owner, owner).exportContacts());
    expect((await stepUp(owner, { password: PASSWORD })).statusCode).toBe(200);
    expect((await sensitive(owner, owner).exportContacts()).statusCode).toBe(200);
  });

  it('exempts API keys from step-up, and never lets them step up', async () => {
    const owner = await ctx.tenant();
    const created = await sensitive(owner, owner).createApiKey();
    expect(created.statusCode).toBe(201);
    const bearer = { authorization: `Bearer ${created.json<{ key: string }>().key}` };
    ctx.clock.advance(FRESH_AUTH_MS * 10);
    const exported = await ctx.app.inject({
      method: 'GET',
      url: '/api/v1/contacts/export',
      headers: bearer,
    });
    expect(exported.statusCode).toBe(200);
    const step = await ctx.app.inject({
      method: 'POST',
      url: '/api/v1/auth/step-up',
      headers: bearer,
      payload: { password: PASSWORD },
    });
    expectCode(step, 403, 'policy.forbidden');
    const key = await ctx.app.inject({
      method: 'POST',
      url: '/api/v1/api-keys',
      headers: bearer,
      payload: { name: 'from a key' },
    });
    expectCode(key, 403, 'policy.forbidden');
  });
});
