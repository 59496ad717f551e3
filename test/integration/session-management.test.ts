import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createCollectingSink, type IdentityEvent } from '../../src/modules/auth/events.ts';
import { createTestContext, PASSWORD, type Session, type TestContext } from '../helpers/context.ts';
import { expectCode } from '../helpers/problem.ts';
import { enrolTotp, totpCode } from '../helpers/totp.ts';

const MINUTE = 60_000;
const sink = createCollectingSink();
let ctx: TestContext;
let owner: Session;

beforeAll(async () => {
  ctx = await createTestContext({}, { audit: sink });
  owner = await ctx.tenant();
});
afterAll(async () => ctx?.close());

interface Item {
  id: string;
  createdAt: string;
  lastSeenAt: string;
  expiresAt: string;
  ip: string | null;
  userAgent: string | null;
  current: boolean;
}

const inject = (
  method: 'GET' | 'POST' | 'DELETE' | 'PATCH',
  url: string,
  s: Session,
  payload?: object,
) => ctx.app.inject({ method, url, headers: s.headers, ...(payload ? { payload } : {}) });
const me = (s: Session) => inject('GET', '/api/v1/auth/me', s);
const listOf = async (s: Session): Promise<Item[]> => {
  const res = await inject('GET', '/api/v1/auth/sessions', s);
  expect(res.statusCode).toBe(200);
  return res.json<{ items: Item[] }>().items;
};
const currentId = async (s: Session) => (await listOf(s)).find((i) => i.current)!.id;

async function revocations(run: () => Promise<unknown>) {
  const start = sink.events.length;
  await run();
  return sink.events
    .slice(start)
    .filter(
      (e): e is Extract<IdentityEvent, { type: 'auth.session.revoked' }> =>
        e.type === 'auth.session.revoked',
    );
}

describe('own sessions', () => {
  it("lists the caller's active sessions, marks the current one and never shows a token", async () => {
    const a = await ctx.user(owner, 'agent');
    const b = await ctx.login(a.tenant, a.email);
    const res = await inject('GET', '/api/v1/auth/sessions', a);
    expect(res.statusCode).toBe(200);
    const items = res.json<{ items: Item[] }>().items;
    expect(items).toHaveLength(2);
    expect(items.filter((i) => i.current)).toHaveLength(1);
    expect(Object.keys(items[0]!).sort()).toEqual(
      ['createdAt', 'current', 'expiresAt', 'id', 'ip', 'lastSeenAt', 'userAgent'].sort(),
    );
    expect(res.body).not.toMatch(/token|hash/i);
    expect(res.body).not.toContain(a.cookie.split('=')[1]!.split(';')[0]!);
    // Each session sees itself as current.
    expect(await currentId(b)).not.toBe(await currentId(a));
  });

  it('does not list revoked sessions nor those of other users', async () => {
    const a = await ctx.user(owner, 'agent');
    const other = await ctx.user(owner, 'agent');
    const b = await ctx.login(a.tenant, a.email);
    await inject('POST', '/api/v1/auth/logout', b);
    const items = await listOf(a);
    expect(items).toHaveLength(1);
    expect(items.map((i) => i.id)).not.toContain(await currentId(other));
  });

  it('revokes one of its own sessions: that cookie answers 401, the others live on', async () => {
    const a = await ctx.user(owner, 'agent');
    const b = await ctx.login(a.tenant, a.email);
    const bId = await currentId(b);
    const events = await revocations(async () => {
      const res = await inject('DELETE', `/api/v1/auth/sessions/${bId}`, a);
      expect(res.statusCode).toBe(204);
    });
    expectCode(await me(b), 401, 'auth.unauthenticated');
    expect((await me(a)).statusCode).toBe(200);
    expect(events).toEqual([
      expect.objectContaining({
        sessionId: bId,
        userId: a.userId,
        reason: 'user_revoked',
        by: a.userId,
      }),
    ]);
    // A second attempt finds nothing to revoke.
    expectCode(
      await inject('DELETE', `/api/v1/auth/sessions/${bId}`, a),
      404,
      'resource.not_found',
    );
  });

  it("answers 404 for another user's session and for another tenant's, and leaves them alive", async () => {
    const a = await ctx.user(owner, 'agent');
    const colleague = await ctx.user(owner, 'admin');
    const stranger = await ctx.tenant();
    for (const victim of [colleague, stranger]) {
      const id = await currentId(victim);
      expectCode(
        await inject('DELETE', `/api/v1/auth/sessions/${id}`, a),
        404,
        'resource.not_found',
      );
      expect((await me(victim)).statusCode).toBe(200);
    }
  });

  it('revokes every other session of the caller and keeps the current one', async () => {
    const a = await ctx.user(owner, 'agent');
    const b = await ctx.login(a.tenant, a.email);
    const c = await ctx.login(a.tenant, a.email);
    const other = await ctx.user(owner, 'agent');
    const events = await revocations(async () => {
      const res = await inject('POST', '/api/v1/auth/sessions/revoke-others', a);
      expect(res.statusCode).toBe(200);
      expect(res.json()).toEqual({ revoked: 2 });
    });
    expect((await me(a)).statusCode).toBe(200);
    expectCode(await me(b), 401, 'auth.unauthenticated');
    expectCode(await me(c), 401, 'auth.unauthenticated');
    expect((await me(other)).statusCode).toBe(200);
    expect(events.map((e) => e.reason)).toEqual(['others_revoked', 'others_revoked']);
    expect(await listOf(a)).toHaveLength(1);
  });

  it('refuses session management through an API key', async () => {
    const created = await inject('POST', '/api/v1/api-keys', owner, { name: 'k', role: 'agent' });
    expect(created.statusCode).toBe(201);
    const key = created.json<{ key: string }>().key;
    const res = await ctx.app.inject({
      method: 'POST',
      url: '/api/v1/auth/sessions/revoke-others',
      headers: { authorization: `Bearer ${key}` },
    });
    expectCode(res, 403, 'policy.forbidden');
  });
});

describe('administrators end a user’s sessions', () => {
  it("an admin ends all of a member's sessions", async () => {
    const admin = await ctx.user(owner, 'admin');
    const m = await ctx.user(owner, 'agent');
    const m2 = await ctx.login(m.tenant, m.email);
    const events = await revocations(async () => {
      const res = await inject('DELETE', `/api/v1/users/${m.userId}/sessions`, admin);
      expect(res.statusCode).toBe(200);
      expect(res.json()).toEqual({ revoked: 2 });
    });
    expectCode(await me(m), 401, 'auth.unauthenticated');
    expectCode(await me(m2), 401, 'auth.unauthenticated');
    expect(events.map((e) => [e.reason, e.by, e.userId])).toEqual([
      ['admin_revoked', admin.userId, m.userId],
      ['admin_revoked', admin.userId, m.userId],
    ]);
    // The user signs in again.
    expect((await me(await ctx.login(m.tenant, m.email))).statusCode).toBe(200);
  });

  it('members cannot, and an admin cannot end an owner’s sessions', async () => {
    const member = await ctx.user(owner, 'agent');
    const admin = await ctx.user(owner, 'admin');
    expectCode(
      await inject('DELETE', `/api/v1/users/${admin.userId}/sessions`, member),
      403,
      'policy.forbidden',
    );
    expectCode(
      await inject('DELETE', `/api/v1/users/${owner.userId}/sessions`, admin),
      403,
      'user.role_not_allowed',
    );
    expect((await me(admin)).statusCode).toBe(200);
    expect((await me(owner)).statusCode).toBe(200);
  });

  it("answers 404 for another tenant's user", async () => {
    const stranger = await ctx.tenant();
    expectCode(
      await inject('DELETE', `/api/v1/users/${stranger.userId}/sessions`, owner),
      404,
      'resource.not_found',
    );
    expect((await me(stranger)).statusCode).toBe(200);
  });
});

describe('removing the second factor', () => {
  it("revokes the user's other sessions and keeps the one that removed it", async () => {
    const user = await ctx.user(owner, 'agent');
    const { secret } = await enrolTotp(ctx, user);
    // A second session, signed in with the password and a later code.
    ctx.clock.advance(MINUTE);
    const login = await ctx.app.inject({
      method: 'POST',
      url: '/api/v1/auth/login',
      payload: { tenant: user.tenant, email: user.email, password: PASSWORD },
    });
    const { mfaToken } = login.json<{ mfaToken: string }>();
    const second = await ctx.app.inject({
      method: 'POST',
      url: '/api/v1/auth/login/mfa',
      payload: {
        mfaToken,
        code: totpCode(ctx.clock, secret),
      },
    });
    expect(second.statusCode).toBe(200);
    const cookie = second.cookies.find((c) => c.name === '__Host-custos_session')!;
    const other = {
      ...user,
      cookie: `${cookie.name}=${cookie.value}`,
      headers: {
        cookie: `${cookie.name}=${cookie.value}`,
        'x-csrf-token': second.json<{ csrfToken: string }>().csrfToken,
      },
    };
    expect((await me(other)).statusCode).toBe(200);
    const otherId = await currentId(other);

    const events = await revocations(async () => {
      const res = await inject('DELETE', '/api/v1/auth/mfa/totp', user, { password: PASSWORD });
      expect(res.statusCode).toBe(204);
    });
    expect((await me(user)).statusCode).toBe(200);
    expectCode(await me(other), 401, 'auth.unauthenticated');
    expect(events).toEqual([
      expect.objectContaining({ sessionId: otherId, reason: 'mfa_removed' }),
    ]);
  });
});

describe('listing after timeouts', () => {
  it('leaves out sessions past their idle limit and shows the tenant absolute end', async () => {
    const a = await ctx.user(owner, 'agent');
    const stale = await ctx.login(a.tenant, a.email);
    const staleId = await currentId(stale);
    ctx.clock.advance(20 * MINUTE);
    expect((await me(a)).statusCode).toBe(200);
    ctx.clock.advance(20 * MINUTE);
    // `stale` has been idle for 40 minutes (default limit 30); `a` for 20.
    const items = await listOf(a);
    expect(items.map((i) => i.id)).not.toContain(staleId);
    expect(items.filter((i) => i.current)).toHaveLength(1);
  });
});
