import { afterAll, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import { createTestContext, type Session, type TestContext } from '../helpers/context.ts';

const MINUTE = 60_000;
const HOUR = 60 * MINUTE;

let ctx: TestContext;
let owner: Session;

beforeAll(async () => {
  ctx = await createTestContext();
  owner = await ctx.tenant();
});
afterAll(async () => ctx?.close());
// Tests move the clock; each starts with a fresh owner session.
beforeEach(async () => {
  owner = await ctx.login(owner.tenant, owner.email);
});

const me = (headers: Record<string, string>, c: TestContext = ctx) =>
  c.app.inject({ url: '/api/v1/auth/me', headers });

const createContact = (headers: Record<string, string>, method = 'POST') =>
  ctx.app.inject({
    method: method as 'POST',
    url: '/api/v1/contacts',
    headers,
    payload: { firstName: 'Csrf' },
  });

describe('sessions', () => {
  it('logout revokes the session: the cookie answers 401 afterwards', async () => {
    const s = await ctx.login(owner.tenant, owner.email);
    expect((await me(s.headers)).statusCode).toBe(200);
    const out = await ctx.app.inject({
      method: 'POST',
      url: '/api/v1/auth/logout',
      headers: s.headers,
    });
    expect(out.statusCode).toBe(204);
    const cleared = out.cookies.find((c) => c.name === '__Host-custos_session');
    expect(cleared?.value).toBe('');
    const after = await me(s.headers);
    expect(after.statusCode).toBe(401);
    expect(after.json().code).toBe('auth.unauthenticated');
    // Other sessions of the same user live on.
    expect((await me(owner.headers)).statusCode).toBe(200);
  });

  it('logout needs the CSRF token like any other cookie-authenticated write', async () => {
    const s = await ctx.login(owner.tenant, owner.email);
    const res = await ctx.app.inject({
      method: 'POST',
      url: '/api/v1/auth/logout',
      headers: { cookie: s.cookie },
    });
    expect(res.statusCode).toBe(403);
    expect(res.json().code).toBe('auth.csrf_failed');
    expect((await me(s.headers)).statusCode).toBe(200);
  });

  it('ends a session idle for 30 minutes with 401 auth.session_expired', async () => {
    const s = await ctx.login(owner.tenant, owner.email);
    ctx.clock.advance(29 * MINUTE);
    expect((await me(s.headers)).statusCode).toBe(200);
    ctx.clock.advance(30 * MINUTE);
    const res = await me(s.headers);
    expect(res.statusCode).toBe(401);
    expect(res.json().code).toBe('auth.session_expired');
    // Expired for good: it does not come back.
    ctx.clock.advance(-50 * MINUTE);
    const again = await me(s.headers);
    expect(again.statusCode).toBe(401);
    ctx.clock.advance(50 * MINUTE);
  });

  it('ends a session at exactly 30 idle minutes, not a moment later', async () => {
    const s = await ctx.login(owner.tenant, owner.email);
    ctx.clock.advance(30 * MINUTE);
    const res = await me(s.headers);
    expect(res.statusCode).toBe(401);
    expect(res.json().code).toBe('auth.session_expired');
  });

  it('keeps a session used every 20 minutes alive until the 12-hour absolute limit', async () => {
    const s = await ctx.login(owner.tenant, owner.email);
    const start = ctx.clock.now().getTime();
    while (ctx.clock.now().getTime() - start + 20 * MINUTE < 12 * HOUR) {
      ctx.clock.advance(20 * MINUTE);
      const res = await me(s.headers);
      expect(res.statusCode, `at ${(ctx.clock.now().getTime() - start) / MINUTE} min`).toBe(200);
    }
    expect(ctx.clock.now().getTime() - start).toBe(11 * HOUR + 40 * MINUTE);
    ctx.clock.advance(19 * MINUTE);
    expect((await me(s.headers)).statusCode).toBe(200);
    ctx.clock.advance(1 * MINUTE);
    const res = await me(s.headers);
    expect(res.statusCode).toBe(401);
    expect(res.json().code).toBe('auth.session_expired');
  });

  it('follows the configured idle and absolute timeouts', async () => {
    const short = await createTestContext({
      CUSTOS_SESSION_IDLE_MINUTES: '5',
      CUSTOS_SESSION_ABSOLUTE_HOURS: '1',
    });
    try {
      const s = await short.tenant();
      const login = await short.app.inject({
        method: 'POST',
        url: '/api/v1/auth/login',
        payload: { tenant: s.tenant, email: s.email, password: 'correct horse battery staple' },
      });
      expect(Date.parse(login.json().expiresAt)).toBe(short.clock.now().getTime() + HOUR);

      short.clock.advance(4 * MINUTE);
      expect((await me(s.headers, short)).statusCode).toBe(200);
      short.clock.advance(5 * MINUTE);
      const idle = await me(s.headers, short);
      expect(idle.statusCode).toBe(401);
      expect(idle.json().code).toBe('auth.session_expired');

      const busy = await short.login(s.tenant, s.email);
      for (let i = 0; i < 14; i++) {
        short.clock.advance(4 * MINUTE);
        expect((await me(busy.headers, short)).statusCode).toBe(200);
      }
      short.clock.advance(4 * MINUTE); // 60 minutes after sign-in
      const absolute = await me(busy.headers, short);
      expect(absolute.statusCode).toBe(401);
      expect(absolute.json().code).toBe('auth.session_expired');
    } finally {
      await short.close();
    }
  });

  it("stops a disabled user's sessions at once", async () => {
    const member = await ctx.user(owner, 'agent');
    const second = await ctx.login(owner.tenant, member.email);
    expect((await me(member.headers)).statusCode).toBe(200);
    const res = await ctx.app.inject({
      method: 'PATCH',
      url: `/api/v1/users/${member.userId}`,
      headers: owner.headers,
      payload: { status: 'disabled' },
    });
    expect(res.statusCode).toBe(200);
    for (const s of [member, second]) {
      const after = await me(s.headers);
      expect(after.statusCode).toBe(401);
      expect(after.json().code).toBe('auth.unauthenticated');
      expect((await createContact(s.headers)).statusCode).toBe(401);
    }
    // Enabling the account again does not bring old sessions back.
    await ctx.app.inject({
      method: 'PATCH',
      url: `/api/v1/users/${member.userId}`,
      headers: owner.headers,
      payload: { status: 'active' },
    });
    expect((await me(member.headers)).statusCode).toBe(401);
  });

  it('applies a role change from the next request on', async () => {
    const member = await ctx.user(owner, 'agent');
    expect((await createContact(member.headers)).statusCode).toBe(201);
    const demote = await ctx.app.inject({
      method: 'PATCH',
      url: `/api/v1/users/${member.userId}`,
      headers: owner.headers,
      payload: { role: 'viewer' },
    });
    expect(demote.statusCode).toBe(200);
    // The session that carried the old role is over: nothing more with member rights.
    const stale = await createContact(member.headers);
    expect(stale.statusCode).toBe(401);
    const viewer = await ctx.login(owner.tenant, member.email);
    expect((await me(viewer.headers)).json()).toMatchObject({
      role: 'viewer',
      effectiveRole: 'viewer',
    });
    const refused = await createContact(viewer.headers);
    expect(refused.statusCode).toBe(403);
    expect(refused.json().code).toBe('policy.forbidden');
  });

  it('reads the role from the account on every request, not from the session', async () => {
    const member = await ctx.user(owner, 'agent');
    // A change written behind the API's back (e.g. by another node) is honoured at once too.
    await ctx.database.handle.db
      .updateTable('users')
      .set({ role: 'viewer' })
      .where('id', '=', member.userId)
      .execute();
    const res = await createContact(member.headers);
    expect(res.statusCode).toBe(403);
    expect(res.json().code).toBe('policy.forbidden');
    expect((await me(member.headers)).json().effectiveRole).toBe('viewer');
  });
});

describe('CSRF', () => {
  const other = 'https://evil.example';

  it('refuses cookie-authenticated POST, PATCH and DELETE without the X-CSRF-Token header', async () => {
    const contact = (await createContact(owner.headers)).json();
    const noToken = { cookie: owner.cookie };
    const attempts = [
      createContact(noToken),
      ctx.app.inject({
        method: 'PATCH',
        url: `/api/v1/contacts/${contact.id}`,
        headers: { ...noToken, 'if-match': '"1"' },
        payload: { title: 'x' },
      }),
      ctx.app.inject({
        method: 'DELETE',
        url: `/api/v1/contacts/${contact.id}`,
        headers: { ...noToken, 'if-match': '"1"' },
      }),
    ];
    for (const res of await Promise.all(attempts)) {
      expect(res.statusCode).toBe(403);
      expect(res.json().code).toBe('auth.csrf_failed');
    }
    const still = await ctx.app.inject({
      url: `/api/v1/contacts/${contact.id}`,
      headers: owner.headers,
    });
    expect(still.json()).toMatchObject({ version: 1, title: null });
  });

  it('refuses a wrong, empty or other-session CSRF token', async () => {
    const second = await ctx.login(owner.tenant, owner.email);
    for (const token of [
      'wrong',
      '',
      second.csrfToken,
      owner.csrfToken.toLowerCase(),
      `${owner.csrfToken}x`,
    ]) {
      const res = await createContact({ cookie: owner.cookie, 'x-csrf-token': token });
      expect(res.statusCode, `token ${JSON.stringify(token)}`).toBe(403);
      expect(res.json().code).toBe('auth.csrf_failed');
    }
  });

  it('refuses a cross-site Origin even with the right token', async () => {
    for (const origin of [
      other,
      'null',
      'http://crm.example',
      'https://crm.example.evil.example',
    ]) {
      const res = await createContact({ ...owner.headers, host: 'crm.example', origin });
      expect(res.statusCode, origin).toBe(403);
      expect(res.json().code).toBe('auth.csrf_failed');
    }
  });

  it('accepts a same-origin Origin with the right token', async () => {
    for (const [host, origin] of [
      ['crm.example', 'https://crm.example'],
      ['crm.example:443', 'https://crm.example'],
      ['crm.example:8443', 'https://crm.example:8443'],
      ['localhost:8080', 'http://localhost:8080'],
      ['127.0.0.1:8080', 'http://127.0.0.1:8080'],
    ] as const) {
      const res = await createContact({
        ...owner.headers,
        host,
        origin,
        'sec-fetch-site': 'same-origin',
      });
      expect(res.statusCode, `${origin} on ${host}`).toBe(201);
    }
  });

  it('refuses a plain-http Origin on our host name (a downgraded page)', async () => {
    for (const [host, origin] of [
      ['crm.example', 'http://crm.example'],
      ['crm.example:8080', 'http://crm.example:8080'],
      ['crm.example:443', 'http://crm.example:443'],
    ] as const) {
      const res = await createContact({ ...owner.headers, host, origin });
      expect(res.statusCode, `${origin} on ${host}`).toBe(403);
      expect(res.json().code).toBe('auth.csrf_failed');
    }
  });

  it('refuses Sec-Fetch-Site: cross-site even with the right token', async () => {
    const res = await createContact({ ...owner.headers, 'sec-fetch-site': 'cross-site' });
    expect(res.statusCode).toBe(403);
    expect(res.json().code).toBe('auth.csrf_failed');
  });

  it('lets GET through without the token', async () => {
    const res = await ctx.app.inject({
      url: '/api/v1/contacts',
      headers: { cookie: owner.cookie, origin: other, 'sec-fetch-site': 'cross-site' },
    });
    expect(res.statusCode).toBe(200);
  });

  it('needs no CSRF token for writes authenticated with an API key', async () => {
    const key = (
      await ctx.app.inject({
        method: 'POST',
        url: '/api/v1/api-keys',
        headers: owner.headers,
        payload: { name: 'csrf test', role: 'agent' },
      })
    ).json().key as string;
    const res = await createContact({ authorization: `Bearer ${key}` });
    expect(res.statusCode).toBe(201);
  });
});
