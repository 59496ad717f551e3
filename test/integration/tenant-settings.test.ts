import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createCollectingSink } from '../../src/modules/auth/events.ts';
import {
  createTestContext,
  tenantSettings,
  type Session,
  type TestContext,
} from '../helpers/context.ts';
import { expectCode } from '../helpers/problem.ts';

const MINUTE = 60_000;
const HOUR = 60 * MINUTE;
const sink = createCollectingSink();
let ctx: TestContext;

beforeAll(async () => {
  ctx = await createTestContext({}, { audit: sink });
});
afterAll(async () => ctx?.close());

const settings = (s: Session, payload?: object) => tenantSettings(ctx, s, payload);
const me = (s: Session) => ctx.app.inject({ url: '/api/v1/auth/me', headers: s.headers });

describe('tenant settings', () => {
  it('shows the server defaults until a tenant sets its own', async () => {
    const owner = await ctx.tenant();
    const res = await settings(owner);
    expect(res.statusCode).toBe(200);
    expect(res.json()).toEqual({
      sessionIdleMinutes: null,
      sessionAbsoluteHours: null,
      mfaRequired: 'off',
      mfaRequiredRoles: [],
      phoneRegion: null,
      defaults: { sessionIdleMinutes: 30, sessionAbsoluteHours: 12 },
    });
  });

  it('lets owners and admins change the timeouts, and null restores the default', async () => {
    const owner = await ctx.tenant();
    const admin = await ctx.user(owner, 'admin');
    const res = await settings(admin, { sessionIdleMinutes: 15, sessionAbsoluteHours: 8 });
    expect(res.statusCode).toBe(200);
    expect(res.json()).toMatchObject({ sessionIdleMinutes: 15, sessionAbsoluteHours: 8 });
    const back = await settings(owner, { sessionIdleMinutes: null });
    expect(back.json()).toMatchObject({ sessionIdleMinutes: null, sessionAbsoluteHours: 8 });
    expect((await settings(owner)).json()).toMatchObject({
      sessionIdleMinutes: null,
      sessionAbsoluteHours: 8,
    });
  });

  it('refuses members and viewers', async () => {
    const owner = await ctx.tenant();
    for (const role of ['agent', 'viewer'] as const) {
      const user = await ctx.user(owner, role);
      expectCode(await settings(user), 403, 'policy.forbidden');
      expectCode(await settings(user, { sessionIdleMinutes: 1440 }), 403, 'policy.forbidden');
    }
    expect((await settings(owner)).json()).toMatchObject({ sessionIdleMinutes: null });
  });

  it('refuses values outside 5..1440 minutes and 1..168 hours', async () => {
    const owner = await ctx.tenant();
    for (const payload of [
      { sessionIdleMinutes: 4 },
      { sessionIdleMinutes: 1441 },
      { sessionIdleMinutes: 10.5 },
      { sessionIdleMinutes: '10' },
      { sessionAbsoluteHours: 0 },
      { sessionAbsoluteHours: 169 },
      {},
      { other: 1 },
    ]) {
      expectCode(await settings(owner, payload), 400, 'request.invalid');
    }
  });

  it("keeps one tenant's settings away from another's sessions", async () => {
    const strict = await ctx.tenant();
    const relaxed = await ctx.tenant();
    expect((await settings(strict, { sessionIdleMinutes: 5 })).statusCode).toBe(200);
    const a = await ctx.login(strict.tenant, strict.email);
    const b = await ctx.login(relaxed.tenant, relaxed.email);
    ctx.clock.advance(10 * MINUTE);
    expectCode(await me(a), 401, 'auth.session_expired');
    expect((await me(b)).statusCode).toBe(200);
  });
});

describe('per-tenant session timeouts', () => {
  it('logs off after 5 idle minutes (HIPAA automatic logoff), not a moment before', async () => {
    const owner = await ctx.tenant();
    expect((await settings(owner, { sessionIdleMinutes: 5 })).statusCode).toBe(200);
    const s = await ctx.login(owner.tenant, owner.email);
    ctx.clock.advance(5 * MINUTE - 1);
    expect((await me(s)).statusCode).toBe(200);
    // Activity moved the idle window.
    ctx.clock.advance(5 * MINUTE - 1);
    expect((await me(s)).statusCode).toBe(200);
    const start = sink.events.length;
    ctx.clock.advance(5 * MINUTE);
    expectCode(await me(s), 401, 'auth.session_expired');
    expect(sink.events.slice(start)).toContainEqual(
      expect.objectContaining({
        type: 'auth.session.revoked',
        reason: 'idle_timeout',
        userId: owner.userId,
      }),
    );
    // Expired for good, even if the clock goes back.
    ctx.clock.advance(-5 * MINUTE);
    expectCode(await me(s), 401, 'auth.unauthenticated');
  });

  it('applies a shorter idle limit to sessions already open', async () => {
    const owner = await ctx.tenant();
    const s = await ctx.login(owner.tenant, owner.email);
    expect((await settings(owner, { sessionIdleMinutes: 5 })).statusCode).toBe(200);
    ctx.clock.advance(6 * MINUTE);
    expectCode(await me(s), 401, 'auth.session_expired');
  });

  it('uses a longer idle limit than the default when the tenant sets one', async () => {
    const owner = await ctx.tenant();
    expect((await settings(owner, { sessionIdleMinutes: 120 })).statusCode).toBe(200);
    const s = await ctx.login(owner.tenant, owner.email);
    ctx.clock.advance(90 * MINUTE);
    expect((await me(s)).statusCode).toBe(200);
  });

  it('ends sessions at the tenant absolute limit, even when in use', async () => {
    const owner = await ctx.tenant();
    expect((await settings(owner, { sessionAbsoluteHours: 1 })).statusCode).toBe(200);
    const s = await ctx.login(owner.tenant, owner.email);
    const listed = await ctx.app.inject({ url: '/api/v1/auth/sessions', headers: s.headers });
    const current = listed
      .json<{ items: { current: boolean; createdAt: string; expiresAt: string }[] }>()
      .items.find((i) => i.current)!;
    expect(Date.parse(current.expiresAt) - Date.parse(current.createdAt)).toBe(HOUR);
    for (let i = 0; i < 3; i++) {
      ctx.clock.advance(20 * MINUTE - 1);
      expect((await me(s)).statusCode).toBe(200);
    }
    ctx.clock.advance(3);
    expectCode(await me(s), 401, 'auth.session_expired');
  });

  it('applies a shorter absolute limit to sessions already open', async () => {
    const owner = await ctx.tenant();
    const s = await ctx.login(owner.tenant, owner.email);
    ctx.clock.advance(20 * MINUTE);
    expect((await me(s)).statusCode).toBe(200);
    expect((await settings(owner, { sessionAbsoluteHours: 1 })).statusCode).toBe(200);
    ctx.clock.advance(20 * MINUTE);
    expect((await me(s)).statusCode).toBe(200);
    ctx.clock.advance(20 * MINUTE);
    expectCode(await me(s), 401, 'auth.session_expired');
  });
});
