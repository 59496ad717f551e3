import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createTestContext, type Session, type TestContext } from '../helpers/context.ts';
import { expectCode } from '../helpers/problem.ts';

let ctx: TestContext;
let owner: Session;

const call = (s: Session, method: string, url: string, payload?: object) =>
  ctx.app.inject({
    method: method as 'GET',
    url,
    headers: s.headers,
    ...(payload === undefined ? {} : { payload }),
  });

beforeAll(async () => {
  ctx = await createTestContext();
  owner = await ctx.tenant();
});
afterAll(async () => ctx?.close());

describe('custom roles', () => {
  it('takes a change to a role on the holder’s very next request', async () => {
    const role = await call(owner, 'POST', '/api/v1/roles', {
      name: 'deal-desk',
      spec: { base: 'viewer' },
    });
    expect(role.statusCode).toBe(201);
    const user = await ctx.user(owner, 'agent');
    const assign = await call(owner, 'PUT', `/api/v1/users/${user.userId}/custom-role`, {
      roleId: role.json().id,
    });
    expect(assign.statusCode).toBe(200);
    expectCode(await call(user, 'POST', '/api/v1/deals', { name: 'D' }), 403, 'policy.forbidden');
    const patch = await call(owner, 'PATCH', `/api/v1/roles/${role.json().id}`, {
      spec: { base: 'agent' },
    });
    expect(patch.json().version).toBe(2);
    expect((await call(user, 'POST', '/api/v1/deals', { name: 'D' })).statusCode).toBe(201);
    // Back to the built-in role: own records again.
    await call(owner, 'PUT', `/api/v1/users/${user.userId}/custom-role`, { roleId: null });
    expect((await call(user, 'GET', '/api/v1/deals')).json().items).toHaveLength(1);
    expect((await call(owner, 'DELETE', `/api/v1/roles/${role.json().id}`)).statusCode).toBe(204);
  });

  it('refuses a role above its creator, naming the grant, and built-in names', async () => {
    const admin = await ctx.user(owner, 'admin');
    const res = await call(admin, 'POST', '/api/v1/roles', {
      name: 'keys',
      spec: { capabilities: { encryption_keys: 'manage' } },
    });
    expectCode(res, 403, 'role.exceeds_own');
    expect(res.json().detail).toContain('capabilities.encryption_keys');
    expectCode(
      await call(owner, 'POST', '/api/v1/roles', { name: 'admin', spec: {} }),
      409,
      'role.name_taken',
    );
    const agent = await ctx.user(owner, 'agent');
    expectCode(await call(agent, 'GET', '/api/v1/roles'), 403, 'policy.forbidden');
  });

  it('refuses to delete a role users hold', async () => {
    const role = await call(owner, 'POST', '/api/v1/roles', { name: 'held', spec: {} });
    const user = await ctx.user(owner, 'viewer');
    await call(owner, 'PUT', `/api/v1/users/${user.userId}/custom-role`, {
      roleId: role.json().id,
    });
    expectCode(await call(owner, 'DELETE', `/api/v1/roles/${role.json().id}`), 409, 'role.in_use');
    // Explicit grants from nothing: not even reading contacts.
    expectCode(await call(user, 'GET', '/api/v1/contacts'), 403, 'policy.forbidden');
  });
});

describe('teams and record scope', () => {
  it('lets a manager reach a teammate’s records, and no longer once they leave the team', async () => {
    const manager = await ctx.user(owner, 'manager');
    const agent = await ctx.user(owner, 'agent');
    const team = (await call(owner, 'POST', '/api/v1/teams', { name: 'North' })).json();
    for (const s of [manager, agent]) {
      const res = await call(owner, 'PUT', `/api/v1/teams/${team.id}/members/${s.userId}`);
      expect(res.statusCode).toBe(200);
    }
    const contact = (await call(agent, 'POST', '/api/v1/contacts', { firstName: 'Tea' })).json();
    expect((await call(manager, 'GET', `/api/v1/contacts/${contact.id}`)).statusCode).toBe(200);
    const left = await call(owner, 'DELETE', `/api/v1/teams/${team.id}/members/${agent.userId}`);
    expect(left.json().memberIds).toEqual([manager.userId]);
    expectCode(
      await call(manager, 'GET', `/api/v1/contacts/${contact.id}`),
      404,
      'resource.not_found',
    );
    expect((await call(manager, 'GET', '/api/v1/contacts')).json().items).toEqual([]);
  });

  it('refuses another tenant’s user as a team member', async () => {
    const other = await ctx.tenant();
    const team = (await call(owner, 'POST', '/api/v1/teams', { name: 'South' })).json();
    expectCode(
      await call(owner, 'PUT', `/api/v1/teams/${team.id}/members/${other.userId}`),
      404,
      'resource.not_found',
    );
  });
});

describe('references and record scope', () => {
  it('answers a link to a record out of scope like a link to no record (no existence oracle)', async () => {
    const agent = await ctx.user(owner, 'agent');
    const colleague = await ctx.user(owner, 'agent');
    const theirs = await call(colleague, 'POST', '/api/v1/contacts', { firstName: 'T' });
    const mine = await call(agent, 'POST', '/api/v1/contacts', { firstName: 'M' });
    expect(theirs.statusCode).toBe(201);
    expect(mine.statusCode).toBe(201);
    const missing = await call(agent, 'POST', '/api/v1/deals', {
      name: 'D',
      contactId: '00000000-0000-7000-8000-000000000000',
    });
    expectCode(missing, 400, 'resource.invalid_reference');
    const outOfScope = await call(agent, 'POST', '/api/v1/deals', {
      name: 'D',
      contactId: theirs.json().id,
    });
    expectCode(outOfScope, 400, 'resource.invalid_reference');
    expect(outOfScope.json().detail).toBe(missing.json().detail);
    const activity = await call(agent, 'POST', '/api/v1/activities', {
      type: 'note',
      subject: 'S',
      contactId: theirs.json().id,
    });
    expectCode(activity, 400, 'resource.invalid_reference');
    // In scope: the same link is accepted; an owner (scope all) may link the colleague's contact.
    const ok = await call(agent, 'POST', '/api/v1/deals', { name: 'D', contactId: mine.json().id });
    expect(ok.statusCode, ok.body).toBe(201);
    const byOwner = await call(owner, 'POST', '/api/v1/deals', {
      name: 'D',
      contactId: theirs.json().id,
    });
    expect(byOwner.statusCode, byOwner.body).toBe(201);
  });
});

describe('explain', () => {
  it('answers allowed, role, rule and scope, and audits the question', async () => {
    const agent = await ctx.user(owner, 'agent');
    const auditor = await ctx.user(owner, 'auditor');
    const res = await call(
      auditor,
      'GET',
      `/api/v1/permissions/explain?userId=${agent.userId}&resource=contact&action=read&field=nationalId`,
    );
    expect(res.statusCode).toBe(200);
    expect(res.json()).toEqual({
      allowed: true,
      role: 'agent',
      customRole: null,
      rule: 'agent: read contact (own)',
      scope: 'own',
      field: {
        name: 'nationalId',
        read: 'masked',
        write: true,
        reveal: true,
        rule: 'agent: read fields of contact',
      },
    });
    const denied = await call(
      owner,
      'GET',
      `/api/v1/permissions/explain?userId=${agent.userId}&resource=audit&action=read`,
    );
    expect(denied.json()).toMatchObject({ allowed: false, scope: null });
    const events = await call(owner, 'GET', '/api/v1/audit/events?type=permissions.explained');
    expect(
      events
        .json()
        .items.filter((e: { type: string }) => e.type === 'permissions.explained')
        .map((e: { target: { id: string } }) => e.target.id),
    ).toEqual([agent.userId, agent.userId]);
    expectCode(
      await call(
        agent,
        'GET',
        `/api/v1/permissions/explain?userId=${agent.userId}&resource=contact&action=read`,
      ),
      403,
      'policy.forbidden',
    );
  });
});
