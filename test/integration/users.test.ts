import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createTestContext, PASSWORD, type Session, type TestContext } from '../helpers/context.ts';
import { expectCode } from '../helpers/problem.ts';

let ctx: TestContext;
let owner: Session;
let admin: Session;

beforeAll(async () => {
  ctx = await createTestContext();
  owner = await ctx.tenant();
  admin = await ctx.user(owner, 'admin');
});
afterAll(async () => ctx?.close());

let n = 0;
const email = (s: Session) => `user${++n}@${s.tenant}.example`;

const createUser = (s: Session, payload: Record<string, unknown> = {}) =>
  ctx.app.inject({
    method: 'POST',
    url: '/api/v1/users',
    headers: s.headers,
    payload: { email: email(s), name: 'Someone', role: 'agent', password: PASSWORD, ...payload },
  });

const patchUser = (s: Session | Record<string, string>, id: string, payload: object) =>
  ctx.app.inject({
    method: 'PATCH',
    url: `/api/v1/users/${id}`,
    headers: 'headers' in s ? (s.headers as Record<string, string>) : s,
    payload,
  });

describe('users', () => {
  it('lets an owner or admin create a user who can then sign in', async () => {
    for (const by of [owner, admin]) {
      const address = email(by);
      const res = await createUser(by, { email: address, role: 'agent', name: ' Mia ' });
      expect(res.statusCode).toBe(201);
      expect(res.json()).toMatchObject({
        email: address,
        name: 'Mia',
        role: 'agent',
        status: 'active',
        version: 1,
      });
      expect(res.body).not.toContain('argon2');
      expect(res.body).not.toContain(PASSWORD);
      const s = await ctx.login(owner.tenant, address);
      expect(s.role).toBe('agent');
    }
  });

  it('lists and gets users without any password material', async () => {
    const list = await ctx.app.inject({ url: '/api/v1/users', headers: admin.headers });
    expect(list.statusCode).toBe(200);
    expect(list.body).not.toContain('argon2');
    expect(list.body).not.toMatch(/password/i);
    const ids = list.json().items.map((u: { id: string }) => u.id);
    expect(ids).toContain(owner.userId);
    const one = await ctx.app.inject({
      url: `/api/v1/users/${owner.userId}`,
      headers: admin.headers,
    });
    expect(one.json()).toMatchObject({ id: owner.userId, role: 'owner' });
  });

  it('lets neither a member nor a viewer list, read, create or change users (403)', async () => {
    const target = (await createUser(owner)).json();
    for (const role of ['agent', 'viewer'] as const) {
      const s = await ctx.user(owner, role);
      expectCode(
        await ctx.app.inject({ url: '/api/v1/users', headers: s.headers }),
        403,
        'policy.forbidden',
      );
      expectCode(
        await ctx.app.inject({ url: `/api/v1/users/${target.id}`, headers: s.headers }),
        403,
        'policy.forbidden',
      );
      expectCode(await createUser(s, { role: 'viewer' }), 403, 'policy.forbidden');
      expectCode(await patchUser(s, target.id, { name: 'Renamed' }), 403, 'policy.forbidden');
      expectCode(await patchUser(s, s.userId, { role: 'admin' }), 403, 'policy.forbidden');
    }
  });

  it('does not let an admin create an owner (403 user.role_not_allowed)', async () => {
    expectCode(await createUser(admin, { role: 'owner' }), 403, 'user.role_not_allowed');
    expect((await createUser(admin, { role: 'admin' })).statusCode).toBe(201);
  });

  it('does not let an admin promote anyone to owner', async () => {
    const member = (await createUser(owner)).json();
    expectCode(await patchUser(admin, member.id, { role: 'owner' }), 403, 'user.role_not_allowed');
    const after = await ctx.app.inject({
      url: `/api/v1/users/${member.id}`,
      headers: owner.headers,
    });
    expect(after.json()).toMatchObject({ role: 'agent', version: 1 });
    // An admin may promote to admin; an owner may promote to owner.
    expect((await patchUser(admin, member.id, { role: 'admin' })).json().role).toBe('admin');
    expect((await patchUser(owner, member.id, { role: 'owner' })).json().role).toBe('owner');
  });

  it('does not let an admin change an owner in any way', async () => {
    const second = (await createUser(owner, { role: 'owner' })).json();
    for (const patch of [{ name: 'Renamed' }, { status: 'disabled' }, { role: 'viewer' }]) {
      expectCode(await patchUser(admin, second.id, patch), 403, 'user.role_not_allowed');
    }
    expectCode(
      await patchUser(admin, owner.userId, { status: 'disabled' }),
      403,
      'user.role_not_allowed',
    );
    expect((await ctx.login(owner.tenant, owner.email)).role).toBe('owner');
  });

  it('does not let anyone change their own role or status', async () => {
    for (const s of [owner, admin]) {
      for (const patch of [{ role: 'viewer' }, { status: 'disabled' }, { role: s.role }]) {
        expectCode(await patchUser(s, s.userId, patch), 403, 'user.cannot_change_self');
      }
      // The name is theirs to change.
      const renamed = await patchUser(s, s.userId, { name: `${s.role} renamed` });
      expect(renamed.statusCode).toBe(200);
    }
    // Nor through an API key of their own.
    const key = (
      await ctx.app.inject({
        method: 'POST',
        url: '/api/v1/api-keys',
        headers: owner.headers,
        payload: { name: 'self' },
      })
    ).json().key as string;
    expectCode(
      await patchUser({ authorization: `Bearer ${key}` }, owner.userId, { status: 'disabled' }),
      403,
      'user.cannot_change_self',
    );
  });

  it('refuses a duplicate e-mail, whatever its case, with 409 user.email_taken', async () => {
    const address = email(owner);
    expect((await createUser(owner, { email: address })).statusCode).toBe(201);
    expectCode(await createUser(owner, { email: address }), 409, 'user.email_taken');
    expectCode(await createUser(admin, { email: address.toUpperCase() }), 409, 'user.email_taken');
    // The same address is free in another tenant.
    const other = await ctx.tenant();
    expect((await createUser(other, { email: address })).statusCode).toBe(201);
  });

  it('refuses a short or overlong password with 400 naming body/password', async () => {
    for (const password of ['short', 'x'.repeat(14)]) {
      const res = await createUser(owner, { password });
      expectCode(res, 400, 'auth.password_rejected');
      expect(res.json().errors).toEqual([
        { field: 'body/password', reason: 'must be at least 15 characters' },
      ]);
      expect(res.body).not.toContain(password);
    }
    const long = await createUser(owner, { password: 'x'.repeat(1025) });
    expectCode(long, 400, 'request.invalid');
    expect(long.json().errors[0].field).toBe('body/password');
    expect((await createUser(owner, { password: 'plum kayak 15 chr' })).statusCode).toBe(201);
  });

  it('refuses an invalid e-mail, role or unknown field naming it', async () => {
    const bad = await createUser(owner, { email: 'not-an-address' });
    expectCode(bad, 400, 'request.invalid');
    expect(bad.json().errors[0].field).toBe('body/email');
    const role = await createUser(owner, { role: 'superuser' });
    expect(role.statusCode).toBe(400);
    expect(role.json().errors.some((e: { field: string }) => e.field === 'body/role')).toBe(true);
    const extra = await createUser(owner, { tenantId: owner.tenantId });
    expect(extra.json().errors).toEqual([
      { field: 'body/tenantId', reason: 'is not an accepted field' },
    ]);
    const empty = await patchUser(owner, admin.userId, {});
    expectCode(empty, 400, 'request.invalid');
  });

  it('refuses a name made only of spaces, on create and on change', async () => {
    const created = await createUser(owner, { name: ' \t ' });
    expect(created.statusCode).toBe(400);
    expect(created.json().errors.map((e: { field: string }) => e.field)).toContain('body/name');
    const ok = await createUser(owner, { name: '  Trimmed Name  ' });
    expect(ok.json().name).toBe('Trimmed Name');
    const patched = await patchUser(owner, ok.json().id, { name: '   ' });
    expect(patched.statusCode).toBe(400);
    const renamed = await patchUser(owner, ok.json().id, { name: ' New Name ' });
    expect(renamed.json().name).toBe('New Name');
  });

  it("answers 404 for another tenant's user, exactly as for a missing one", async () => {
    const other = await ctx.tenant();
    const missing = '01900000-0000-7000-8000-000000000000';
    for (const id of [other.userId, missing]) {
      const get = await ctx.app.inject({ url: `/api/v1/users/${id}`, headers: owner.headers });
      expectCode(get, 404, 'resource.not_found');
      expectCode(await patchUser(owner, id, { status: 'disabled' }), 404, 'resource.not_found');
    }
    expect((await ctx.login(other.tenant, other.email)).role).toBe('owner');
    const list = (await ctx.app.inject({ url: '/api/v1/users', headers: owner.headers })).json();
    expect(list.items.some((u: { id: string }) => u.id === other.userId)).toBe(false);
  });

  it('refuses a malformed user id with 400', async () => {
    const res = await ctx.app.inject({ url: '/api/v1/users/not-a-uuid', headers: owner.headers });
    expectCode(res, 400, 'request.invalid');
  });

  it('counts versions and keeps the change after reload', async () => {
    const u = (await createUser(owner)).json();
    const changed = await patchUser(admin, u.id, { name: 'New name', role: 'viewer' });
    expect(changed.json()).toMatchObject({ name: 'New name', role: 'viewer', version: 2 });
    const reread = await ctx.app.inject({ url: `/api/v1/users/${u.id}`, headers: owner.headers });
    expect(reread.json()).toEqual(changed.json());
  });
});
