import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createTestContext, type Session, type TestContext } from '../helpers/context.ts';

let ctx: TestContext;

beforeAll(async () => {
  ctx = await createTestContext();
});
afterAll(async () => ctx?.close());

const db = () => ctx.database.handle.db;

async function events(tenantId: string, type: string) {
  return db()
    .selectFrom('audit_events')
    .select(['actor_id', 'target_type', 'target_id', 'fields', 'outcome', 'reason'])
    .where('tenant_id', '=', tenantId)
    .where('type', '=', type)
    .orderBy('leaf_index')
    .execute();
}

const call = (
  s: Session,
  method: 'GET' | 'POST' | 'PATCH' | 'DELETE',
  url: string,
  payload?: object,
) => ctx.app.inject({ method, url, headers: s.headers, ...(payload ? { payload } : {}) });

describe('administration and refusal events', () => {
  it('records a refused authorization with the route and the refusal code', async () => {
    const owner = await ctx.tenant();
    const member = await ctx.user(owner, 'agent');
    expect((await call(member, 'GET', '/api/v1/users')).statusCode).toBe(403);
    expect(await events(owner.tenantId, 'authz.denied')).toEqual([
      {
        actor_id: member.userId,
        target_type: 'route',
        target_id: 'GET /api/v1/users',
        fields: '[]',
        outcome: 'failure',
        reason: 'policy.forbidden',
      },
    ]);
  });

  it('records users created and their role changed, with the role granted', async () => {
    const owner = await ctx.tenant();
    const res = await call(owner, 'POST', '/api/v1/users', {
      email: 'new@example.com',
      name: 'New Person',
      role: 'agent',
      password: 'correct horse battery staple',
    });
    expect(res.statusCode).toBe(201);
    const id = res.json<{ id: string }>().id;
    expect((await call(owner, 'PATCH', `/api/v1/users/${id}`, { role: 'admin' })).statusCode).toBe(
      200,
    );
    expect(
      (await events(owner.tenantId, 'user.created')).map((e) => [
        e.actor_id,
        e.target_id,
        e.reason,
      ]),
    ).toEqual([[owner.userId, id, 'role_agent']]);
    expect(
      (await events(owner.tenantId, 'user.updated')).map((e) => [e.target_id, e.fields, e.reason]),
    ).toEqual([[id, '["role"]', 'role_admin']]);
  });

  it('records API keys created and revoked, and tenant settings changed', async () => {
    const owner = await ctx.tenant();
    const created = await call(owner, 'POST', '/api/v1/api-keys', { name: 'ci', role: 'viewer' });
    expect(created.statusCode).toBe(201);
    const keyId = created.json<{ id: string }>().id;
    expect((await call(owner, 'DELETE', `/api/v1/api-keys/${keyId}`)).statusCode).toBe(204);
    expect(
      (await events(owner.tenantId, 'api_key.created')).map((e) => [e.target_id, e.reason]),
    ).toEqual([[keyId, 'role_viewer']]);
    expect((await events(owner.tenantId, 'api_key.revoked')).map((e) => e.target_id)).toEqual([
      keyId,
    ]);

    const patched = await call(owner, 'PATCH', '/api/v1/tenant/settings', {
      sessionIdleMinutes: 15,
    });
    expect(patched.statusCode).toBe(200);
    expect((await events(owner.tenantId, 'tenant.settings.updated')).map((e) => e.fields)).toEqual([
      '["sessionIdleMinutes"]',
    ]);
    await ctx.services.auditLog.verify(owner.tenantId);
  });
});
