import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import {
  hashFromHex,
  importPublicKey,
  leafHash,
  verifyCheckpoint,
  verifyConsistency,
  verifyInclusion,
  toHex,
} from '../../src/core/audit/index.ts';
import { createTestContext, type Session, type TestContext } from '../helpers/context.ts';

let ctx: TestContext;
let owner: Session;

beforeAll(async () => {
  ctx = await createTestContext();
  owner = await ctx.tenant();
});
afterAll(async () => ctx?.close());

interface AuditEvent {
  leafIndex: number;
  leafHash: string;
  type: string;
  actor: { kind: string; id: string | null };
  target: { type: string; id: string } | null;
  fields: string[];
  canonical: string;
  requestId: string | null;
}

const api = (s: Session, url: string) => ctx.app.inject({ url, headers: s.headers });
const createCompany = async (s: Session, payload: object) => {
  const res = await ctx.app.inject({
    method: 'POST',
    url: '/api/v1/companies',
    headers: s.headers,
    payload,
  });
  return res;
};
const events = async (s: Session, query = '') => {
  const res = await api(s, `/api/v1/audit/events${query}`);
  expect(res.statusCode).toBe(200);
  return res.json<{ items: AuditEvent[]; nextCursor: string | null }>();
};

describe('record events', () => {
  it('records create, update and delete with the changed field names, never values', async () => {
    const made = await createCompany(owner, { name: 'Secret Clinic', phone: '+44 20 7946 0000' });
    expect(made.statusCode).toBe(201);
    const id = made.json<{ id: string }>().id;
    const patched = await ctx.app.inject({
      method: 'PATCH',
      url: `/api/v1/companies/${id}`,
      headers: { ...owner.headers, 'if-match': '"1"' },
      payload: { industry: 'Oncology', name: 'Secret Clinic' },
    });
    expect(patched.statusCode).toBe(200);
    const deleted = await ctx.app.inject({
      method: 'DELETE',
      url: `/api/v1/companies/${id}`,
      headers: { ...owner.headers, 'if-match': '"2"' },
    });
    expect(deleted.statusCode).toBe(204);

    const { items } = await events(owner, `?targetId=${id}`);
    expect(items.map((e) => e.type)).toEqual([
      'record.created',
      'record.updated',
      'record.deleted',
    ]);
    expect(items[0]!.fields).toEqual(['name', 'ownerId', 'phone']);
    expect(items[1]!.fields).toEqual(['industry']); // name was sent unchanged
    expect(items[2]!.fields).toEqual([]);
    for (const e of items) {
      expect(e.target).toEqual({ type: 'company', id });
      expect(e.actor).toEqual({ kind: 'user', id: owner.userId });
      expect(e.requestId).toMatch(/^[0-9a-f-]{36}$/);
      expect(e.canonical).not.toMatch(/Secret|Oncology|7946/);
      expect(e.leafHash).toBe(toHex(leafHash(new TextEncoder().encode(e.canonical))));
    }
  });

  it('rolls the record change back when the audit append fails', async () => {
    const before = await events(owner, '?limit=200');
    const next = before.items.length;
    // A row squatting on the next leaf index makes the audit insert violate the primary key.
    await ctx.database.handle.db
      .insertInto('audit_events')
      .values({
        tenant_id: owner.tenantId,
        leaf_index: next,
        // Enough of an event for the columns the database reads out of it.
        canonical: JSON.stringify({
          actor: { id: null, kind: 'system' },
          fields: [],
          id: 'squatter',
          leafIndex: next,
          occurredAt: new Date().toISOString(),
          outcome: 'success',
          type: 'test.squat',
        }),
        leaf_hash: '00'.repeat(32),
      })
      .execute();
    const res = await createCompany(owner, { name: 'Never Stored' });
    expect(res.statusCode).toBe(500);
    const stored = await ctx.database.handle.db
      .selectFrom('companies')
      .select('id')
      .where('name', '=', 'Never Stored')
      .execute();
    expect(stored).toEqual([]);
    await ctx.database.handle.db
      .deleteFrom('audit_events')
      .where('tenant_id', '=', owner.tenantId)
      .where('id', '=', 'squatter')
      .execute();
    expect((await createCompany(owner, { name: 'Stored Now' })).statusCode).toBe(201);
  });
});

describe('identity events', () => {
  it('records sign-ins and failed sign-ins in the tenant log, without the attempted secret', async () => {
    const fresh = await ctx.tenant();
    const bad = await ctx.app.inject({
      method: 'POST',
      url: '/api/v1/auth/login',
      payload: {
        tenant: fresh.tenant,
        email: fresh.email,
        password: 'wrong password, long enough',
      },
    });
    expect(bad.statusCode).toBe(401);
    const { items } = await events(fresh, '?limit=200');
    const types = items.map((e) => e.type);
    expect(types[0]).toBe('auth.login.succeeded');
    const failed = items.find((e) => e.type === 'auth.login.failed');
    expect(failed?.target).toEqual({ type: 'user', id: fresh.userId });
    expect(failed?.canonical).toContain('"outcome":"failure"');
    expect(failed?.canonical).not.toContain('wrong password');
  });
});

describe('audit API', () => {
  it('refuses members and keeps tenants apart', async () => {
    const member = await ctx.user(owner, 'agent');
    const res = await api(member, '/api/v1/audit/events');
    expect(res.statusCode).toBe(403);
    expect(res.json<{ code: string }>().code).toBe('policy.forbidden');
    const other = await ctx.tenant();
    const theirs = (await events(other)).items;
    expect(theirs.map((e) => e.type)).toEqual(['auth.login.succeeded']);
    expect(theirs[0]!.actor.id).toBe(other.userId);
  });

  it('pages through events with a cursor and filters by type', async () => {
    for (let i = 0; i < 5; i++) await createCompany(owner, { name: `Paged ${i}` });
    const all = await events(owner, '?limit=200');
    const first = await events(owner, '?limit=2');
    expect(first.items.map((e) => e.leafIndex)).toEqual([0, 1]);
    const second = await events(owner, `?limit=2&cursor=${first.nextCursor}`);
    expect(second.items.map((e) => e.leafIndex)).toEqual([2, 3]);
    const created = await events(owner, '?type=record.created&limit=200');
    expect(created.items.length).toBe(all.items.filter((e) => e.type === 'record.created').length);
    const bad = await api(owner, '/api/v1/audit/events?cursor=bm90LWEtbnVtYmVy');
    expect(bad.json<{ code: string }>().code).toBe('request.invalid_cursor');
  });

  it('filters events by time range and target type', async () => {
    ctx.clock.advance(120_000);
    const from = ctx.clock.now().toISOString();
    const made = await createCompany(owner, { name: 'Late Company' });
    const id = made.json<{ id: string }>().id;
    ctx.clock.advance(1_000);
    const to = ctx.clock.now().toISOString();
    await createCompany(owner, { name: 'Later Still' });
    const inRange = await events(owner, `?from=${from}&to=${to}&targetType=company`);
    expect(inRange.items.map((e) => e.target?.id)).toEqual([id]);
    const none = await events(owner, `?from=${from}&to=${to}&targetType=contact`);
    expect(none.items).toEqual([]);
  });

  it('serves proofs that verify against the signed checkpoint', async () => {
    const keyRes = await api(owner, '/api/v1/audit/public-key');
    expect(keyRes.statusCode).toBe(200);
    const key = keyRes.json<{ keyId: string; publicKeyPem: string }>();
    const publicKey = importPublicKey(key.publicKeyPem);

    const older = verifyCheckpoint(
      (await api(owner, '/api/v1/audit/checkpoints/latest')).json(),
      publicKey,
      { tenantId: owner.tenantId },
    );
    for (let i = 0; i < 3; i++) await createCompany(owner, { name: `Later ${i}` });
    const cpRes = await api(owner, '/api/v1/audit/checkpoints/latest');
    expect(cpRes.statusCode).toBe(200);
    const head = verifyCheckpoint(cpRes.json(), publicKey, { tenantId: owner.tenantId });
    expect(head.keyId).toBe(key.keyId);
    expect(head.treeSize).toBe(older.treeSize + 3);

    const { items } = await events(owner, '?limit=200');
    expect(items.length).toBe(head.treeSize);
    for (const e of [items[0]!, items[5]!, items.at(-1)!]) {
      const res = await api(
        owner,
        `/api/v1/audit/proofs/inclusion?leafIndex=${e.leafIndex}&treeSize=${head.treeSize}`,
      );
      expect(res.statusCode).toBe(200);
      const p = res.json<{ leafHash: string; proof: string[] }>();
      expect(p.leafHash).toBe(e.leafHash);
      const ok = verifyInclusion(
        e.leafIndex,
        head.treeSize,
        leafHash(new TextEncoder().encode(e.canonical)),
        p.proof.map(hashFromHex),
        head.root,
      );
      expect(ok).toBe(true);
    }

    const res = await api(
      owner,
      `/api/v1/audit/proofs/consistency?from=${older.treeSize}&to=${head.treeSize}`,
    );
    expect(res.statusCode).toBe(200);
    const proof = res.json<{ proof: string[] }>().proof.map(hashFromHex);
    expect(verifyConsistency(older.treeSize, head.treeSize, older.root, head.root, proof)).toBe(
      true,
    );
    const tampered = proof.map((h, i) => (i === 0 ? leafHash(h) : h));
    expect(verifyConsistency(older.treeSize, head.treeSize, older.root, head.root, tampered)).toBe(
      false,
    );
  });

  it('refuses proofs outside the tree', async () => {
    const res = await api(owner, '/api/v1/audit/proofs/inclusion?leafIndex=0&treeSize=100000');
    expect(res.statusCode).toBe(400);
    expect(res.json<{ code: string }>().code).toBe('audit.tree_range_invalid');
    const back = await api(owner, '/api/v1/audit/proofs/consistency?from=3&to=2');
    expect(back.json<{ code: string }>().code).toBe('audit.tree_range_invalid');
  });
});
