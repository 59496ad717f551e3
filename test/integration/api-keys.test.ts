import { createHash } from 'node:crypto';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createTestContext, type Session, type TestContext } from '../helpers/context.ts';

let ctx: TestContext;
let owner: Session;

beforeAll(async () => {
  ctx = await createTestContext();
  owner = await ctx.tenant();
});
afterAll(async () => ctx?.close());

const KEY = /^custos_([0-9a-f]{12})_([A-Za-z0-9_-]{43})$/;
const HEX64 = /[0-9a-f]{64}/i;

const createKey = (s: Session, payload: object = { name: 'integration' }) =>
  ctx.app.inject({ method: 'POST', url: '/api/v1/api-keys', headers: s.headers, payload });

async function newKey(s: Session, payload: object = { name: 'integration' }) {
  const res = await createKey(s, payload);
  expect(res.statusCode, res.body).toBe(201);
  return res.json<{ id: string; key: string; role: string; prefix: string }>();
}

const bearer = (key: string) => ({ authorization: `Bearer ${key}` });
const me = (headers: Record<string, string>) => ctx.app.inject({ url: '/api/v1/auth/me', headers });
const writeContact = (headers: Record<string, string>) =>
  ctx.app.inject({
    method: 'POST',
    url: '/api/v1/contacts',
    headers,
    payload: { firstName: 'ViaKey' },
  });
const setUser = (id: string, payload: object) =>
  ctx.app.inject({
    method: 'PATCH',
    url: `/api/v1/users/${id}`,
    headers: owner.headers,
    payload,
  });

function expectInvalidKey(res: { statusCode: number; json(): { code: string } }) {
  expect(res.statusCode).toBe(401);
  expect(res.json().code).toBe('auth.api_key_invalid');
}

describe('API keys', () => {
  it('returns the secret once, starting with custos_, and stores only its SHA-256', async () => {
    const res = await createKey(owner, { name: 'Reporting', role: 'agent' });
    expect(res.statusCode).toBe(201);
    expect(res.headers['cache-control']).toBe('no-store');
    const created = res.json();
    expect(created.key).toMatch(KEY);
    const [, prefix, secret] = KEY.exec(created.key)!;
    expect(created).toMatchObject({
      name: 'Reporting',
      role: 'agent',
      userId: owner.userId,
      prefix: `custos_${prefix}`,
      expiresAt: null,
      lastUsedAt: null,
      revokedAt: null,
    });

    const rows = await ctx.database.handle.db
      .selectFrom('api_keys')
      .selectAll()
      .where('id', '=', created.id)
      .execute();
    expect(rows).toHaveLength(1);
    expect(rows[0]!.secret_hash).toBe(createHash('sha256').update(secret!).digest('hex'));
    expect(JSON.stringify(rows)).not.toContain(secret);
  });

  it('never lists the secret nor its hash', async () => {
    const created = await newKey(owner, { name: 'Listed' });
    const secret = KEY.exec(created.key)![2]!;
    const res = await ctx.app.inject({ url: '/api/v1/api-keys', headers: owner.headers });
    expect(res.statusCode).toBe(200);
    expect(res.body).not.toContain(secret);
    expect(res.body).not.toContain(created.key);
    expect(res.body).not.toMatch(HEX64);
    const listed = res.json().items.find((k: { id: string }) => k.id === created.id);
    expect(Object.keys(listed).sort()).toEqual(
      [
        'createdAt',
        'expiresAt',
        'id',
        'lastUsedAt',
        'name',
        'prefix',
        'revokedAt',
        'role',
        'userId',
      ].sort(),
    );
  });

  it('works as Authorization: Bearer and records its last use', async () => {
    const created = await newKey(owner, { name: 'Bearer', role: 'agent' });
    const res = await me(bearer(created.key));
    expect(res.statusCode).toBe(200);
    expect(res.json()).toMatchObject({
      id: owner.userId,
      role: 'owner',
      effectiveRole: 'agent',
      via: 'api_key',
    });
    expect((await writeContact(bearer(created.key))).statusCode).toBe(201);
    // The scheme name is case-insensitive (RFC 9110).
    expect((await me({ authorization: `bearer ${created.key}` })).statusCode).toBe(200);
    const listed = (
      await ctx.app.inject({ url: '/api/v1/api-keys', headers: owner.headers })
    ).json();
    const row = listed.items.find((k: { id: string }) => k.id === created.id);
    expect(row.lastUsedAt).toBe(ctx.clock.now().toISOString());
  });

  it('refuses a revoked key with 401 auth.api_key_invalid', async () => {
    const created = await newKey(owner);
    expect((await me(bearer(created.key))).statusCode).toBe(200);
    const del = await ctx.app.inject({
      method: 'DELETE',
      url: `/api/v1/api-keys/${created.id}`,
      headers: owner.headers,
    });
    expect(del.statusCode).toBe(204);
    expectInvalidKey(await me(bearer(created.key)));
    // Revoking twice is harmless.
    const again = await ctx.app.inject({
      method: 'DELETE',
      url: `/api/v1/api-keys/${created.id}`,
      headers: owner.headers,
    });
    expect(again.statusCode).toBe(204);
  });

  it('refuses a key from its expiry on (frozen clock)', async () => {
    const expiresAt = new Date(ctx.clock.now().getTime() + 3_600_000).toISOString();
    const created = await newKey(owner, { name: 'Short', expiresAt });
    expect(created).toMatchObject({ expiresAt });
    ctx.clock.advance(3_600_000 - 1);
    expect((await me(bearer(created.key))).statusCode).toBe(200);
    ctx.clock.advance(1);
    expectInvalidKey(await me(bearer(created.key)));
    // The owner's session was idle for an hour meanwhile.
    owner = await ctx.login(owner.tenant, owner.email);
  });

  it('refuses an expiry in the past or now with 400 naming body/expiresAt', async () => {
    for (const expiresAt of [
      new Date(ctx.clock.now().getTime() - 1000).toISOString(),
      ctx.clock.now().toISOString(),
    ]) {
      const res = await createKey(owner, { name: 'Past', expiresAt });
      expect(res.statusCode).toBe(400);
      expect(res.json().code).toBe('request.invalid');
      expect(res.json().errors).toEqual([
        { field: 'body/expiresAt', reason: 'must be in the future' },
      ]);
    }
    const garbage = await createKey(owner, { name: 'Bad', expiresAt: 'tomorrow' });
    expect(garbage.statusCode).toBe(400);
    expect(garbage.json().errors[0].field).toBe('body/expiresAt');
  });

  it('lets neither a member nor a viewer create, list or revoke keys (403)', async () => {
    const own = await newKey(owner);
    for (const role of ['agent', 'viewer'] as const) {
      const s = await ctx.user(owner, role);
      const create = await createKey(s, { name: 'mine' });
      expect(create.statusCode).toBe(403);
      expect(create.json().code).toBe('policy.forbidden');
      const list = await ctx.app.inject({ url: '/api/v1/api-keys', headers: s.headers });
      expect(list.statusCode).toBe(403);
      const revoke = await ctx.app.inject({
        method: 'DELETE',
        url: `/api/v1/api-keys/${own.id}`,
        headers: s.headers,
      });
      expect(revoke.statusCode).toBe(403);
    }
    expect((await me(bearer(own.key))).statusCode).toBe(200);
  });

  it('does not let an admin create an owner-role key (403 api_key.role_not_allowed)', async () => {
    const admin = await ctx.user(owner, 'admin');
    const res = await createKey(admin, { name: 'Escalate', role: 'owner' });
    expect(res.statusCode).toBe(403);
    expect(res.json().code).toBe('api_key.role_not_allowed');
    const ok = await newKey(admin, { name: 'Fine' });
    expect(ok.role).toBe('admin');
  });

  it('acts no more powerfully than its creator: demoting the creator demotes the key', async () => {
    const admin = await ctx.user(owner, 'admin');
    const created = await newKey(admin, { name: 'Admin key', role: 'admin' });
    expect((await me(bearer(created.key))).json().effectiveRole).toBe('admin');
    expect(
      (await ctx.app.inject({ url: '/api/v1/users', headers: bearer(created.key) })).statusCode,
    ).toBe(200);

    expect((await setUser(admin.userId, { role: 'viewer' })).statusCode).toBe(200);
    const who = await me(bearer(created.key));
    expect(who.statusCode).toBe(200);
    expect(who.json()).toMatchObject({ role: 'viewer', effectiveRole: 'viewer' });
    const write = await writeContact(bearer(created.key));
    expect(write.statusCode).toBe(403);
    expect(write.json().code).toBe('policy.forbidden');
    const users = await ctx.app.inject({ url: '/api/v1/users', headers: bearer(created.key) });
    expect(users.statusCode).toBe(403);
    const read = await ctx.app.inject({ url: '/api/v1/contacts', headers: bearer(created.key) });
    expect(read.statusCode).toBe(200);
  });

  it("stops a disabled creator's keys", async () => {
    const admin = await ctx.user(owner, 'admin');
    const created = await newKey(admin, { name: 'Soon dead', role: 'agent' });
    expect((await me(bearer(created.key))).statusCode).toBe(200);
    expect((await setUser(admin.userId, { status: 'disabled' })).statusCode).toBe(200);
    expectInvalidKey(await me(bearer(created.key)));
    expectInvalidKey(await writeContact(bearer(created.key)));
    // Enabling the account again does not bring its keys back: disabling revoked them.
    expect((await setUser(admin.userId, { status: 'active' })).statusCode).toBe(200);
    expectInvalidKey(await me(bearer(created.key)));
  });

  it('refuses a key name made only of spaces', async () => {
    const res = await ctx.app.inject({
      method: 'POST',
      url: '/api/v1/api-keys',
      headers: owner.headers,
      payload: { name: '   ' },
    });
    expect(res.statusCode).toBe(400);
    expect(res.json().errors.map((e: { field: string }) => e.field)).toContain('body/name');
  });

  it('cannot manage API keys with an API key', async () => {
    const created = await newKey(owner, { name: 'Owner key', role: 'owner' });
    const other = await newKey(owner, { name: 'Target' });
    const headers = bearer(created.key);
    const create = await ctx.app.inject({
      method: 'POST',
      url: '/api/v1/api-keys',
      headers,
      payload: { name: 'child' },
    });
    expect(create.statusCode).toBe(403);
    expect(create.json().code).toBe('policy.forbidden');
    expect((await ctx.app.inject({ url: '/api/v1/api-keys', headers })).statusCode).toBe(403);
    const revoke = await ctx.app.inject({
      method: 'DELETE',
      url: `/api/v1/api-keys/${other.id}`,
      headers,
    });
    expect(revoke.statusCode).toBe(403);
    expect((await me(bearer(other.key))).statusCode).toBe(200);
  });

  it('answers 401 to a malformed or unknown bearer credential', async () => {
    const created = await newKey(owner);
    const [, prefix, secret] = KEY.exec(created.key)!;
    const flipped = `${secret!.slice(0, -1)}${secret!.endsWith('A') ? 'B' : 'A'}`;
    for (const authorization of [
      'Bearer',
      'Bearer ',
      'Basic dXNlcjpwYXNz',
      `Bearer ${created.key} extra`,
      `Token ${created.key}`,
      'Bearer custos_',
      'Bearer not-a-key',
      `Bearer custos_${prefix}_${flipped}`,
      `Bearer custos_000000000000_${secret}`,
      `Bearer ${created.key.toUpperCase()}`,
      `Bearer ${created.key}x`,
    ]) {
      const res = await me({ authorization });
      expect(res.statusCode, authorization).toBe(401);
      expect(res.json().code).toBe('auth.api_key_invalid');
      expect(res.headers['www-authenticate']).toContain('Bearer');
    }
  });

  it('does not fall back to the session cookie when a bad bearer is sent', async () => {
    const res = await me({ ...owner.headers, authorization: 'Bearer nope' });
    expect(res.statusCode).toBe(401);
    expect(res.json().code).toBe('auth.api_key_invalid');
  });

  it("answers 404 to revoking another tenant's key, and leaves it working", async () => {
    const other = await ctx.tenant();
    const theirs = await newKey(other, { name: 'Theirs' });
    const res = await ctx.app.inject({
      method: 'DELETE',
      url: `/api/v1/api-keys/${theirs.id}`,
      headers: owner.headers,
    });
    expect(res.statusCode).toBe(404);
    expect(res.json().code).toBe('resource.not_found');
    const missing = await ctx.app.inject({
      method: 'DELETE',
      url: '/api/v1/api-keys/01900000-0000-7000-8000-000000000000',
      headers: owner.headers,
    });
    expect(missing.json()).toMatchObject({ code: 'resource.not_found', detail: res.json().detail });
    expect((await me(bearer(theirs.key))).json().tenant).toBe(other.tenant);
    const list = (await ctx.app.inject({ url: '/api/v1/api-keys', headers: owner.headers })).json();
    expect(list.items.some((k: { id: string }) => k.id === theirs.id)).toBe(false);
  });

  it("cannot reach another tenant's records through a key", async () => {
    const other = await ctx.tenant();
    const theirs = (
      await ctx.app.inject({
        method: 'POST',
        url: '/api/v1/contacts',
        headers: other.headers,
        payload: { firstName: 'Hidden' },
      })
    ).json();
    const mine = await newKey(owner, { name: 'Mine' });
    const res = await ctx.app.inject({
      url: `/api/v1/contacts/${theirs.id}`,
      headers: bearer(mine.key),
    });
    expect(res.statusCode).toBe(404);
  });
});
