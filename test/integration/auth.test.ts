import { createHash } from 'node:crypto';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createTestContext, PASSWORD, type Session, type TestContext } from '../helpers/context.ts';

let ctx: TestContext;
let owner: Session;

beforeAll(async () => {
  ctx = await createTestContext();
  owner = await ctx.tenant();
});
afterAll(async () => ctx?.close());

const login = (payload: unknown, headers: Record<string, string> = {}) =>
  ctx.app.inject({
    method: 'POST',
    url: '/api/v1/auth/login',
    headers,
    ...(typeof payload === 'string' ? { payload } : { payload: payload as object }),
  });

const sha256hex = (s: string) => createHash('sha256').update(s, 'utf8').digest('hex');

/** The problem body without its per-request parts. */
function stable(body: Record<string, unknown>) {
  const { instance, ...rest } = body;
  expect(typeof instance).toBe('string');
  return rest;
}

describe('sign-in', () => {
  it('sets a __Host- session cookie: HttpOnly, Secure, SameSite=Lax, Path=/, no Domain', async () => {
    const res = await login({ tenant: owner.tenant, email: owner.email, password: PASSWORD });
    expect(res.statusCode).toBe(200);
    const raw = ([] as string[]).concat(res.headers['set-cookie'] ?? []);
    const line = raw.find((c) => c.startsWith('__Host-custos_session='));
    expect(line).toBeDefined();
    const attrs = line!
      .split(';')
      .slice(1)
      .map((a) => a.trim().toLowerCase());
    expect(attrs).toContain('httponly');
    expect(attrs).toContain('secure');
    expect(attrs).toContain('samesite=lax');
    expect(attrs).toContain('path=/');
    expect(attrs.some((a) => a.startsWith('domain'))).toBe(false);
    const expires = attrs.find((a) => a.startsWith('expires='));
    expect(expires).toBeDefined();
    expect(new Date(expires!.slice('expires='.length)).getTime()).toBeLessThanOrEqual(
      Date.parse(res.json().expiresAt),
    );
    expect(res.headers['cache-control']).toBe('no-store');
  });

  it('answers the user, a CSRF token and the session expiry, never the password hash', async () => {
    const res = await login({ tenant: owner.tenant, email: owner.email, password: PASSWORD });
    const body = res.json();
    expect(body.user).toEqual({
      id: owner.userId,
      email: owner.email,
      name: 'Owner',
      role: 'owner',
    });
    expect(body.csrfToken).toMatch(/^[A-Za-z0-9_-]{43}$/);
    expect(Date.parse(body.expiresAt)).toBe(ctx.clock.now().getTime() + 12 * 3_600_000);
    expect(res.body).not.toContain('argon2');
  });

  it('issues a 256-bit random token and stores only its SHA-256', async () => {
    const tokens: string[] = [];
    for (let i = 0; i < 3; i++) {
      const res = await login({ tenant: owner.tenant, email: owner.email, password: PASSWORD });
      const cookie = res.cookies.find((c) => c.name === '__Host-custos_session')!;
      tokens.push(cookie.value);
    }
    expect(new Set(tokens).size).toBe(3);
    const rows = await ctx.database.handle.db.selectFrom('sessions').selectAll().execute();
    const dump = JSON.stringify(rows);
    for (const token of tokens) {
      expect(token).toMatch(/^[A-Za-z0-9_-]{43}$/);
      expect(Buffer.from(token, 'base64url')).toHaveLength(32);
      expect(dump).not.toContain(token);
      const stored = rows.filter((r) => r.token_hash === sha256hex(token));
      expect(stored).toHaveLength(1);
      expect(stored[0]!.user_id).toBe(owner.userId);
    }
  });

  it('stores the password as argon2id with m >= 19456, t >= 2, p = 1', async () => {
    const row = await ctx.database.handle.db
      .selectFrom('users')
      .select('password_hash')
      .where('id', '=', owner.userId)
      .executeTakeFirstOrThrow();
    const phc =
      /^\$argon2id\$v=19\$m=(\d+),t=(\d+),p=(\d+)\$([A-Za-z0-9+/]+)\$([A-Za-z0-9+/]+)$/.exec(
        row.password_hash ?? '',
      );
    expect(phc).not.toBeNull();
    const [, m, t, p, salt, hash] = phc!;
    expect(Number(m)).toBeGreaterThanOrEqual(19_456);
    expect(Number(t)).toBeGreaterThanOrEqual(2);
    expect(Number(p)).toBe(1);
    expect(Buffer.from(salt!, 'base64').length).toBeGreaterThanOrEqual(16);
    expect(Buffer.from(hash!, 'base64').length).toBeGreaterThanOrEqual(32);
    expect(row.password_hash).not.toContain(PASSWORD);
  });

  it('accepts the e-mail and the tenant in any case and with surrounding spaces', async () => {
    const res = await login({
      tenant: ` ${owner.tenant.toUpperCase()}`,
      email: `  ${owner.email.toUpperCase()} `,
      password: PASSWORD,
    });
    expect(res.statusCode).toBe(200);
    expect(res.json().user.id).toBe(owner.userId);
  });

  it('gives the same 401 for unknown tenant, unknown user, wrong password and disabled user', async () => {
    const disabled = await ctx.user(owner, 'agent');
    const off = await ctx.app.inject({
      method: 'PATCH',
      url: `/api/v1/users/${disabled.userId}`,
      headers: owner.headers,
      payload: { status: 'disabled' },
    });
    expect(off.statusCode).toBe(200);

    const attempts = [
      { tenant: 'no-such-tenant', email: owner.email, password: PASSWORD },
      { tenant: owner.tenant, email: `nobody@${owner.tenant}.example`, password: PASSWORD },
      { tenant: owner.tenant, email: owner.email, password: `${PASSWORD}!` },
      { tenant: owner.tenant, email: owner.email, password: PASSWORD.toUpperCase() },
      { tenant: owner.tenant, email: disabled.email, password: PASSWORD },
    ];
    const answers = [];
    for (const attempt of attempts) {
      const res = await login(attempt);
      expect(res.statusCode).toBe(401);
      expect(res.headers['content-type']).toContain('application/problem+json');
      expect(res.headers['set-cookie']).toBeUndefined();
      const body = res.json();
      expect(body.code).toBe('auth.invalid_credentials');
      expect(body.instance).toBe(res.headers['x-request-id']);
      answers.push({ body: stable(body), wwwAuthenticate: res.headers['www-authenticate'] });
    }
    for (const answer of answers.slice(1)) expect(answer).toEqual(answers[0]);
    expect(new Set(answers.map((a) => JSON.stringify(a))).size).toBe(1);
  });

  it('spends the password-hashing work even when the tenant or user does not exist', async () => {
    const median = async (payload: object) => {
      const times: number[] = [];
      for (let i = 0; i < 5; i++) {
        const start = performance.now();
        expect((await login(payload)).statusCode).toBe(401);
        times.push(performance.now() - start);
      }
      return times.sort((a, b) => a - b)[2]!;
    };
    const wrongPassword = await median({
      tenant: owner.tenant,
      email: owner.email,
      password: 'not the password at all',
    });
    const unknownTenant = await median({
      tenant: 'nobody-here',
      email: 'x@y.example',
      password: 'not the password at all',
    });
    // Without the dummy verification an unknown tenant answers in about 1 ms, argon2id in tens.
    expect(unknownTenant).toBeGreaterThan(wrongPassword * 0.3);
  });

  it("refuses a user's credentials at another tenant", async () => {
    const other = await ctx.tenant();
    const res = await login({ tenant: other.tenant, email: owner.email, password: PASSWORD });
    expect(res.statusCode).toBe(401);
    expect(res.json().code).toBe('auth.invalid_credentials');
  });

  it('answers 400 request.malformed_json for a body that is not JSON', async () => {
    for (const payload of ['{"tenant": "x", ', '', 'tenant=x&email=y']) {
      const res = await login(payload, { 'content-type': 'application/json' });
      expect(res.statusCode).toBe(400);
      expect(res.json().code).toBe('request.malformed_json');
      expect(res.body).not.toContain('    at ');
    }
  });

  it('answers 400 naming each missing or wrong field', async () => {
    const missing = await login({ tenant: owner.tenant, email: owner.email });
    expect(missing.statusCode).toBe(400);
    expect(missing.json().code).toBe('request.invalid');
    expect(missing.json().errors).toEqual([{ field: 'body/password', reason: 'is required' }]);

    const none = await login({});
    expect(none.statusCode).toBe(400);
    expect(
      none
        .json()
        .errors.map((e: { field: string }) => e.field)
        .sort(),
    ).toEqual(['body/email', 'body/password', 'body/tenant']);

    const wrongType = await login({ tenant: owner.tenant, email: owner.email, password: 12 });
    expect(wrongType.statusCode).toBe(400);
    expect(wrongType.json().errors[0].field).toBe('body/password');

    const extra = await login({
      tenant: owner.tenant,
      email: owner.email,
      password: PASSWORD,
      role: 'owner',
    });
    expect(extra.statusCode).toBe(400);
    expect(extra.json().errors).toEqual([
      { field: 'body/role', reason: 'is not an accepted field' },
    ]);
  });

  it('answers 415 to a login a cross-site HTML form could send (form-encoded or text/plain)', async () => {
    const json = JSON.stringify({ tenant: owner.tenant, email: owner.email, password: PASSWORD });
    for (const [type, payload] of [
      ['application/x-www-form-urlencoded', `tenant=${owner.tenant}&email=x&password=y`],
      ['text/plain', json],
      ['multipart/form-data; boundary=x', `--x\r\n\r\n${json}\r\n--x--`],
    ] as const) {
      const res = await login(payload, { 'content-type': type });
      expect(res.statusCode, type).toBe(415);
      expect(res.json().code).toBe('request.unsupported_media_type');
      expect(res.headers['set-cookie']).toBeUndefined();
    }
  });

  it('reports who is signed in through /auth/me', async () => {
    const res = await ctx.app.inject({ url: '/api/v1/auth/me', headers: owner.headers });
    expect(res.statusCode).toBe(200);
    expect(res.json()).toEqual({
      id: owner.userId,
      email: owner.email,
      name: 'Owner',
      role: 'owner',
      effectiveRole: 'owner',
      tenant: owner.tenant,
      via: 'user',
    });
  });

  it('refuses a forged or unknown session cookie with 401', async () => {
    for (const value of ['x', 'A'.repeat(43), `${owner.cookie.split('=')[1]}x`]) {
      const res = await ctx.app.inject({
        url: '/api/v1/auth/me',
        headers: { cookie: `__Host-custos_session=${value}` },
      });
      expect(res.statusCode).toBe(401);
      expect(res.json().code).toBe('auth.unauthenticated');
    }
  });
});
