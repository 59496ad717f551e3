import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createTestContext, type Session, type TestContext } from '../helpers/context.ts';
import { recordRoutes } from '../helpers/records.ts';

let ctx: TestContext;
let owner: Session;

beforeAll(async () => {
  ctx = await createTestContext();
  owner = await ctx.tenant();
});
afterAll(async () => ctx?.close());

const BASE = '/api/v1/companies';
const MISSING_ID = '01900000-0000-7000-8000-000000000000';

interface Company {
  id: string;
  name: string;
  domain: string | null;
  ownerId: string | null;
  version: number;
}

const { create, made, get, patch, del, listAll } = recordRoutes<Company>(() => ctx, BASE);

describe('companies: create, get, change, delete', () => {
  it('creates a company with defaults, an ETag and a Location, and reads it back', async () => {
    const res = await create(owner, { name: 'Acme Ltd', domain: ' Acme.EXAMPLE ' });
    expect(res.statusCode).toBe(201);
    const company = res.json<Company>();
    expect(res.headers.etag).toBe('"1"');
    expect(res.headers.location).toBe(`${BASE}/${company.id}`);
    expect(company).toMatchObject({
      name: 'Acme Ltd',
      domain: 'acme.example', // domains compare case-insensitively, stored normalised
      industry: null,
      phone: null,
      address: null,
      ownerId: owner.userId,
      version: 1,
    });
    const got = await get(owner, company.id);
    expect(got.statusCode).toBe(200);
    expect(got.headers.etag).toBe('"1"');
    expect(got.json()).toEqual(company);
  });

  it('requires a non-empty name and refuses unknown fields', async () => {
    for (const payload of [
      {},
      { name: '' },
      { name: 42 },
      { name: 'A', tenantId: owner.tenantId },
    ]) {
      const res = await create(owner, payload);
      expect(res.statusCode).toBe(400);
      expect(res.json().code).toBe('request.invalid');
    }
  });

  it('answers 404 resource.not_found for a missing id and 400 for a malformed one', async () => {
    const missing = await get(owner, MISSING_ID);
    expect(missing.statusCode).toBe(404);
    expect(missing.json().code).toBe('resource.not_found');
    const malformed = await get(owner, 'not-a-uuid');
    expect(malformed.statusCode).toBe(400);
    expect(malformed.json().code).toBe('request.invalid');
  });

  it('changes a company with the current strong ETag and bumps the version', async () => {
    const c = await made(owner, { name: 'Patchable' });
    ctx.clock.advance(1000);
    const res = await patch(owner, c.id, { industry: 'Finance', domain: 'P.example' }, '"1"');
    expect(res.statusCode).toBe(200);
    expect(res.headers.etag).toBe('"2"');
    expect(res.json()).toMatchObject({
      name: 'Patchable',
      industry: 'Finance',
      domain: 'p.example',
      version: 2,
    });
    expect(res.json().updatedAt > res.json().createdAt).toBe(true);
    expect((await get(owner, c.id)).json()).toEqual(res.json());
  });

  it('refuses a PATCH without If-Match (428), stale (412), weak or * (412), and leaves the record', async () => {
    const c = await made(owner, { name: 'Guarded' });
    const missing = await patch(owner, c.id, { name: 'x' });
    expect(missing.statusCode).toBe(428);
    expect(missing.json().code).toBe('resource.if_match_required');
    for (const tag of ['"2"', '"0"', 'W/"1"', '*', '1', '"1", "2"']) {
      const res = await patch(owner, c.id, { name: 'x' }, tag);
      expect(res.statusCode, tag).toBe(412);
      expect(res.json().code).toBe('resource.version_mismatch');
    }
    expect((await get(owner, c.id)).json()).toMatchObject({ name: 'Guarded', version: 1 });
  });

  it('refuses an empty PATCH body and a PATCH that clears the required name', async () => {
    const c = await made(owner, { name: 'Named' });
    for (const payload of [{}, { name: null }, { name: '' }]) {
      const res = await patch(owner, c.id, payload, '"1"');
      expect(res.statusCode).toBe(400);
      expect(res.json().code).toBe('request.invalid');
    }
  });

  it('deletes with a matching If-Match, refuses a stale one, and deletes without one', async () => {
    const a = await made(owner, { name: 'Delete me' });
    const stale = await del(owner, a.id, '"7"');
    expect(stale.statusCode).toBe(412);
    expect(stale.json().code).toBe('resource.version_mismatch');
    const weak = await del(owner, a.id, 'W/"1"');
    expect(weak.statusCode).toBe(412);
    expect(weak.json().code).toBe('resource.version_mismatch');
    expect((await get(owner, a.id)).statusCode).toBe(200);
    const ok = await del(owner, a.id, '"1"');
    expect(ok.statusCode).toBe(204);
    expect(ok.body).toBe('');
    expect((await get(owner, a.id)).statusCode).toBe(404);

    const b = await made(owner, { name: 'Delete me blindly' });
    expect((await del(owner, b.id)).statusCode).toBe(204);
    const again = await del(owner, b.id);
    expect(again.statusCode).toBe(404);
    expect(again.json().code).toBe('resource.not_found');
  });

  it('clears a deleted company from its contacts and deals but keeps them', async () => {
    const c = await made(owner, { name: 'Parent' });
    const contact = (
      await ctx.app.inject({
        method: 'POST',
        url: '/api/v1/contacts',
        headers: owner.headers,
        payload: { firstName: 'Kept', companyId: c.id },
      })
    ).json<{ id: string }>();
    expect((await del(owner, c.id)).statusCode).toBe(204);
    const after = await ctx.app.inject({
      url: `/api/v1/contacts/${contact.id}`,
      headers: owner.headers,
    });
    expect(after.statusCode).toBe(200);
    expect(after.json().companyId).toBeNull();
  });
});

describe('companies: list', () => {
  let s: Session;
  const byName: Record<string, Company> = {};
  let createdOrder: string[] = [];

  beforeAll(async () => {
    s = await ctx.tenant();
    const member = await ctx.user(s, 'agent');
    const rows = [
      { name: 'Delta', domain: 'delta.example', as: s },
      { name: 'alpha', domain: 'shared.example', as: member },
      { name: 'Charlie', domain: 'SHARED.example', as: s },
      { name: 'Bravo', domain: null, as: member },
      { name: 'Echo', domain: 'echo.example', as: s },
    ];
    for (const { as, ...payload } of rows) {
      ctx.clock.advance(1000);
      byName[payload.name] = await made(as, payload);
    }
    createdOrder = rows.map((r) => byName[r.name]!.id);
  });

  const ids = (...names: string[]) => names.map((n) => byName[n]!.id);

  it('pages through every company exactly once by createdAt, both directions', async () => {
    expect(await listAll(s, '')).toEqual(createdOrder);
    expect(await listAll(s, 'sort=createdAt')).toEqual(createdOrder);
    expect(await listAll(s, 'sort=-createdAt')).toEqual([...createdOrder].reverse());
    expect(await listAll(s, 'sort=createdAt', 200)).toEqual(createdOrder);
  });

  it('sorts by name (binary order) in both directions', async () => {
    // Text order is by code point on both databases: upper case before lower case.
    const asc = ids('Bravo', 'Charlie', 'Delta', 'Echo', 'alpha');
    expect(await listAll(s, 'sort=name')).toEqual(asc);
    expect(await listAll(s, 'sort=-name')).toEqual([...asc].reverse());
  });

  it('sorts by updatedAt in both directions', async () => {
    ctx.clock.advance(1000);
    const delta = byName.Delta!;
    const res = await patch(s, delta.id, { industry: 'Retail' }, `"${delta.version}"`);
    expect(res.statusCode).toBe(200);
    byName.Delta = res.json<Company>();
    const expected = [...createdOrder.filter((id) => id !== delta.id), delta.id];
    expect(await listAll(s, 'sort=updatedAt')).toEqual(expected);
    expect(await listAll(s, 'sort=-updatedAt')).toEqual([...expected].reverse());
  });

  it('filters by domain case-insensitively and by owner', async () => {
    expect(await listAll(s, 'domain=Shared.Example')).toEqual(ids('alpha', 'Charlie'));
    expect(await listAll(s, 'domain=nobody.example')).toEqual([]);
    expect(await listAll(s, `ownerId=${s.userId}`)).toEqual(ids('Delta', 'Charlie', 'Echo'));
    expect(await listAll(s, `ownerId=${MISSING_ID}`)).toEqual([]);
  });

  it('filters by creation and update time', async () => {
    const charlie = (await get(s, byName.Charlie!.id)).json<{ createdAt: string }>();
    const at = encodeURIComponent(charlie.createdAt);
    expect(await listAll(s, `createdAfter=${at}`)).toEqual(ids('Charlie', 'Bravo', 'Echo'));
    expect(await listAll(s, `createdBefore=${at}`)).toEqual(ids('Delta', 'alpha'));
    const delta = (await get(s, byName.Delta!.id)).json<{ updatedAt: string }>();
    expect(await listAll(s, `updatedAfter=${encodeURIComponent(delta.updatedAt)}`)).toEqual(
      ids('Delta'),
    );
  });

  it('refuses an unknown sort, a bad limit, an unknown filter and a foreign cursor', async () => {
    for (const q of [
      'sort=industry',
      'sort=--name',
      'limit=0',
      'limit=201',
      'limit=x',
      'city=Paris',
    ]) {
      const res = await ctx.app.inject({ url: `${BASE}?${q}`, headers: s.headers });
      expect(res.statusCode, q).toBe(400);
      expect(res.json().code).toBe('request.invalid');
    }
    const first = (
      await ctx.app.inject({ url: `${BASE}?limit=1&sort=name`, headers: s.headers })
    ).json<{ nextCursor: string }>();
    // A cursor of one sort order is refused by another.
    const res = await ctx.app.inject({
      url: `${BASE}?limit=1&sort=-name&cursor=${first.nextCursor}`,
      headers: s.headers,
    });
    expect(res.statusCode).toBe(400);
    expect(res.json().code).toBe('request.invalid_cursor');
  });
});

describe('companies: access', () => {
  it('answers 401 on every route without a session', async () => {
    const c = await made(owner, { name: 'Private' });
    for (const [method, url] of [
      ['GET', BASE],
      ['POST', BASE],
      ['GET', `${BASE}/${c.id}`],
      ['PATCH', `${BASE}/${c.id}`],
      ['DELETE', `${BASE}/${c.id}`],
    ] as const) {
      const res = await ctx.app.inject({
        method,
        url,
        payload: method === 'POST' || method === 'PATCH' ? { name: 'x' } : undefined,
      });
      expect(res.statusCode, `${method} ${url}`).toBe(401);
      expect(res.json().code).toBe('auth.unauthenticated');
    }
    expect((await get(owner, c.id)).json()).toMatchObject({ name: 'Private', version: 1 });
  });

  it('lets a viewer read but refuses every write with 403', async () => {
    const viewer = await ctx.user(owner, 'viewer');
    const c = await made(owner, { name: 'Viewed' });
    expect((await get(viewer, c.id)).statusCode).toBe(200);
    expect((await ctx.app.inject({ url: BASE, headers: viewer.headers })).statusCode).toBe(200);
    for (const res of [
      await create(viewer, { name: 'No' }),
      await patch(viewer, c.id, { name: 'No' }, '"1"'),
      await del(viewer, c.id, '"1"'),
      await del(viewer, c.id),
    ]) {
      expect(res.statusCode).toBe(403);
      expect(res.json().code).toBe('policy.forbidden');
    }
    expect((await get(owner, c.id)).json()).toMatchObject({ name: 'Viewed', version: 1 });
  });

  it('lets a member create, change and delete', async () => {
    const member = await ctx.user(owner, 'agent');
    const c = await made(member, { name: 'Member made' });
    expect(c.ownerId).toBe(member.userId);
    expect((await patch(member, c.id, { industry: 'Health' }, '"1"')).statusCode).toBe(200);
    expect((await del(member, c.id, '"2"')).statusCode).toBe(204);
  });

  it("hides another tenant's company: 404 on every route, absent from lists", async () => {
    const other = await ctx.tenant();
    const theirs = await made(other, { name: 'Theirs', domain: 'theirs.example' });
    for (const res of [
      await get(owner, theirs.id),
      await patch(owner, theirs.id, { name: 'Mine now' }, '"1"'),
      await del(owner, theirs.id, '"1"'),
      await del(owner, theirs.id),
    ]) {
      expect(res.statusCode).toBe(404);
      expect(res.json()).toMatchObject({
        code: 'resource.not_found',
        detail: 'No company with this id.',
      });
    }
    const missing = await get(owner, MISSING_ID);
    expect(missing.json().detail).toBe('No company with this id.');
    expect(await listAll(owner, '', 200)).not.toContain(theirs.id);
    expect(await listAll(owner, 'domain=theirs.example')).toEqual([]);
    expect((await get(other, theirs.id)).json()).toMatchObject({ name: 'Theirs', version: 1 });
  });

  it("refuses another tenant's user as owner exactly like a missing user", async () => {
    const other = await ctx.tenant();
    const foreign = await create(owner, { name: 'X', ownerId: other.userId });
    expect(foreign.statusCode).toBe(400);
    expect(foreign.json().code).toBe('resource.invalid_reference');
    const missing = await create(owner, { name: 'X', ownerId: MISSING_ID });
    expect(missing.statusCode).toBe(400);
    expect(missing.json()).toMatchObject({
      code: 'resource.invalid_reference',
      detail: foreign.json().detail,
      errors: foreign.json().errors,
    });
    const c = await made(owner, { name: 'Reassign' });
    const res = await patch(owner, c.id, { ownerId: other.userId }, '"1"');
    expect(res.statusCode).toBe(400);
    expect(res.json().code).toBe('resource.invalid_reference');
    // A user of the same tenant is a valid owner.
    const member = await ctx.user(owner, 'agent');
    const ok = await patch(owner, c.id, { ownerId: member.userId }, '"1"');
    expect(ok.statusCode).toBe(200);
    expect(ok.json().ownerId).toBe(member.userId);
  });
});
