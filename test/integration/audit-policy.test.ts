import { afterAll, afterEach, beforeAll, describe, expect, it, vi } from 'vitest';
import { createTestContext, type Session, type TestContext } from '../helpers/context.ts';

let ctx: TestContext;

beforeAll(async () => {
  ctx = await createTestContext();
});
afterAll(async () => ctx?.close());
afterEach(() => vi.restoreAllMocks());

const db = () => ctx.database.handle.db;

async function events(tenantId: string, type: string) {
  return db()
    .selectFrom('audit_events')
    .select([
      'type',
      'actor_id',
      'target_type',
      'target_id',
      'fields',
      'outcome',
      'reason',
      'canonical',
    ])
    .where('tenant_id', '=', tenantId)
    .where('type', '=', type)
    .orderBy('leaf_index')
    .execute();
}

async function contact(owner: Session, payload: object) {
  const res = await ctx.app.inject({
    method: 'POST',
    url: '/api/v1/contacts',
    headers: owner.headers,
    payload,
  });
  expect(res.statusCode, res.body).toBe(201);
  return res.json<{ id: string }>();
}

const get = (s: Session, url: string) => ctx.app.inject({ url, headers: s.headers });
const setPolicy = (s: Session, payload: object) =>
  ctx.app.inject({ method: 'PATCH', url: '/api/v1/audit/settings', headers: s.headers, payload });

describe('audit policy: optional categories', () => {
  it('records no reads and no API calls by default', async () => {
    const owner = await ctx.tenant();
    const c = await contact(owner, {
      firstName: 'Ada',
      lastName: 'Lovelace',
      email: 'ada@example.com',
    });
    expect((await get(owner, `/api/v1/contacts/${c.id}`)).statusCode).toBe(200);
    expect((await get(owner, '/api/v1/contacts')).statusCode).toBe(200);
    expect(await events(owner.tenantId, 'record.read')).toEqual([]);
    expect(await events(owner.tenantId, 'api.call')).toEqual([]);
  });

  it('always records reads of sensitive fields in clear, never of masked ones', async () => {
    const owner = await ctx.tenant();
    const agent = await ctx.user(owner, 'agent');
    const mine = await contact(agent, {
      firstName: 'Grace',
      nationalId: '123-45-6789',
      notes: 'diagnosis: private',
    });
    const plain = await contact(owner, { firstName: 'Alan', email: 'alan@example.com' });
    // The agent sees the sensitive fields masked: not a read of them.
    expect((await get(agent, `/api/v1/contacts/${mine.id}`)).statusCode).toBe(200);
    expect(await events(owner.tenantId, 'record.read')).toEqual([]);
    // The owner reads them in clear, with the tenant's policy at its default.
    expect((await get(owner, `/api/v1/contacts/${mine.id}`)).statusCode).toBe(200);
    expect((await get(owner, `/api/v1/contacts/${plain.id}`)).statusCode).toBe(200);
    const reads = await events(owner.tenantId, 'record.read');
    expect(reads.map((e) => [e.actor_id, e.target_id])).toEqual([[owner.userId, mine.id]]);
    expect((JSON.parse(String(reads[0]!.fields)) as string[]).sort()).toEqual([
      'nationalId',
      'notes',
    ]);
    expect(reads[0]!.canonical).not.toContain('123-45-6789');
    // A list page records the one record that carried sensitive values.
    expect((await get(owner, '/api/v1/contacts?limit=10')).statusCode).toBe(200);
    const after = await events(owner.tenantId, 'record.read');
    expect(after.map((e) => e.target_id)).toEqual([mine.id, mine.id]);
    await ctx.services.auditLog.verify(owner.tenantId);
  });

  it('records reads of personal records with field names only, once turned on (audited)', async () => {
    const owner = await ctx.tenant();
    const viewer = await ctx.user(owner, 'viewer');
    const a = await contact(owner, {
      firstName: 'Ada',
      lastName: 'Lovelace',
      email: 'ada@example.com',
    });
    const b = await contact(owner, { firstName: 'Alan', lastName: 'Turing', title: 'Dr' });

    const on = await setPolicy(owner, { recordReads: true });
    expect(on.statusCode).toBe(200);
    expect(on.json()).toMatchObject({ categories: { recordReads: true, apiCalls: false } });
    const changed = await events(owner.tenantId, 'settings.audit_changed');
    expect(changed.map((e) => [e.actor_id, e.fields])).toEqual([[owner.userId, '["recordReads"]']]);

    expect((await get(viewer, `/api/v1/contacts/${a.id}`)).statusCode).toBe(200);
    let reads = await events(owner.tenantId, 'record.read');
    expect(reads.map((e) => [e.actor_id, e.target_type, e.target_id, e.fields])).toEqual([
      [viewer.userId, 'contact', a.id, '["email","firstName","lastName"]'],
    ]);
    // Names, never values.
    expect(reads[0]!.canonical).not.toContain('ada@example.com');
    expect(reads[0]!.canonical).not.toContain('Lovelace');

    // A list reads every record on the page: one event each.
    expect((await get(viewer, '/api/v1/contacts?limit=10')).statusCode).toBe(200);
    reads = await events(owner.tenantId, 'record.read');
    expect(
      reads
        .slice(1)
        .map((e) => e.target_id)
        .sort(),
    ).toEqual([a.id, b.id].sort());

    // Companies hold no personal field: no read event.
    expect((await get(viewer, '/api/v1/companies')).statusCode).toBe(200);
    expect((await events(owner.tenantId, 'record.read')).length).toBe(3);

    expect((await setPolicy(owner, { recordReads: false })).statusCode).toBe(200);
    await get(viewer, `/api/v1/contacts/${a.id}`);
    expect((await events(owner.tenantId, 'record.read')).length).toBe(3);
    await ctx.services.auditLog.verify(owner.tenantId);
  });

  it('records every API call with method, route pattern and status when turned on', async () => {
    const owner = await ctx.tenant();
    const other = await ctx.tenant();
    expect((await setPolicy(owner, { apiCalls: true })).statusCode).toBe(200);
    const c = await contact(owner, { firstName: 'Grace', lastName: 'Hopper' });
    await get(owner, `/api/v1/contacts/${c.id}`);
    await get(owner, '/api/v1/contacts/01890000-0000-7000-8000-000000000000');
    await get(other, '/api/v1/companies');
    // Written after the response is sent: wait for the last one.
    const calls = await vi.waitFor(
      async () => {
        const rows = await events(owner.tenantId, 'api.call');
        expect(rows.length).toBeGreaterThanOrEqual(4);
        return rows;
      },
      { timeout: 5000 },
    );
    expect(calls.map((e) => [e.target_id, e.reason, e.outcome])).toEqual([
      // The call that turned the category on is the first recorded.
      ['PATCH /api/v1/audit/settings', '200', 'success'],
      ['POST /api/v1/contacts', '201', 'success'],
      ['GET /api/v1/contacts/:id', '200', 'success'],
      ['GET /api/v1/contacts/:id', '404', 'failure'],
    ]);
    // Route patterns, never the ids or query strings of the URL.
    expect(calls.some((e) => e.canonical.includes(c.id))).toBe(false);
    expect(await events(other.tenantId, 'api.call')).toEqual([]);
  });

  it('refuses to switch off a mandatory category', async () => {
    const owner = await ctx.tenant();
    for (const payload of [{ authentication: false }, { sensitiveReads: false }]) {
      const res = await setPolicy(owner, payload);
      expect([res.statusCode, res.json<{ code: string }>().code]).toEqual([400, 'request.invalid']);
    }
    const view = (await get(owner, '/api/v1/audit/settings')).json<{ mandatory: string[] }>();
    expect(view.mandatory).toEqual([
      'authentication',
      'administration',
      'record_changes',
      'sensitive_reads',
    ]);
  });

  it('costs no database work per request while the categories are off (cached policy)', async () => {
    const owner = await ctx.tenant();
    const c = await contact(owner, { firstName: 'Edsger', lastName: 'Dijkstra' });
    const selectFrom = vi.spyOn(db(), 'selectFrom');
    for (let i = 0; i < 5; i++)
      expect((await get(owner, `/api/v1/contacts/${c.id}`)).statusCode).toBe(200);
    const policyReads = selectFrom.mock.calls.filter(
      ([table]) => (table as unknown) === 'audit_settings',
    );
    expect(policyReads.length).toBeLessThanOrEqual(1);
  });
});
