import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createTestContext, type Session, type TestContext } from '../helpers/context.ts';

let ctx: TestContext;
let owner: Session;

beforeAll(async () => {
  ctx = await createTestContext();
  owner = await ctx.tenant();
});
afterAll(async () => ctx?.close());

const create = (s: Session, payload: object) =>
  ctx.app.inject({ method: 'POST', url: '/api/v1/contacts', headers: s.headers, payload });

describe('contacts', () => {
  it('creates, reads, changes and deletes a contact with versions', async () => {
    const res = await create(owner, {
      firstName: 'Ada',
      lastName: 'Lovelace',
      email: 'Ada@Example.com',
      phone: '+44 20 7946 0958',
      dateOfBirth: '1815-12-10',
    });
    expect(res.statusCode).toBe(201);
    const contact = res.json();
    expect(res.headers.etag).toBe('"1"');
    expect(res.headers.location).toBe(`/api/v1/contacts/${contact.id}`);
    expect(contact).toMatchObject({
      firstName: 'Ada',
      email: 'Ada@Example.com',
      ownerId: owner.userId,
      version: 1,
    });

    const got = await ctx.app.inject({
      url: `/api/v1/contacts/${contact.id}`,
      headers: owner.headers,
    });
    expect(got.json()).toEqual(contact);

    const patched = await ctx.app.inject({
      method: 'PATCH',
      url: `/api/v1/contacts/${contact.id}`,
      headers: { ...owner.headers, 'if-match': '"1"' },
      payload: { title: 'Analyst' },
    });
    expect(patched.statusCode).toBe(200);
    expect(patched.json()).toMatchObject({ title: 'Analyst', version: 2, firstName: 'Ada' });
    expect(patched.headers.etag).toBe('"2"');

    const stale = await ctx.app.inject({
      method: 'PATCH',
      url: `/api/v1/contacts/${contact.id}`,
      headers: { ...owner.headers, 'if-match': '"1"' },
      payload: { title: 'Overwritten' },
    });
    expect(stale.statusCode).toBe(412);
    expect(stale.headers['content-type']).toContain('application/problem+json');
    expect(stale.json().code).toBe('resource.version_mismatch');

    const noIfMatch = await ctx.app.inject({
      method: 'PATCH',
      url: `/api/v1/contacts/${contact.id}`,
      headers: owner.headers,
      payload: { title: 'Blind' },
    });
    expect(noIfMatch.statusCode).toBe(428);
    expect(noIfMatch.json().code).toBe('resource.if_match_required');

    const del = await ctx.app.inject({
      method: 'DELETE',
      url: `/api/v1/contacts/${contact.id}`,
      headers: { ...owner.headers, 'if-match': '"2"' },
    });
    expect(del.statusCode).toBe(204);
    const gone = await ctx.app.inject({
      url: `/api/v1/contacts/${contact.id}`,
      headers: owner.headers,
    });
    expect(gone.statusCode).toBe(404);
    expect(gone.json().code).toBe('resource.not_found');
  });

  it('filters exactly by e-mail and phone, whatever their formatting', async () => {
    const a = (
      await create(owner, {
        firstName: 'Grace',
        email: 'grace@navy.example',
        phone: '+1 (415) 555-2671',
      })
    ).json();
    await create(owner, {
      firstName: 'Other',
      email: 'other@navy.example',
      phone: '+1 415 555 0000',
    });
    const byEmail = await ctx.app.inject({
      url: '/api/v1/contacts?email=%20GRACE@navy.example',
      headers: owner.headers,
    });
    expect(byEmail.json().items.map((c: { id: string }) => c.id)).toEqual([a.id]);
    const byPhone = await ctx.app.inject({
      url: `/api/v1/contacts?phone=${encodeURIComponent('+14155552671')}`,
      headers: owner.headers,
    });
    expect(byPhone.json().items.map((c: { id: string }) => c.id)).toEqual([a.id]);
    const none = await ctx.app.inject({
      url: '/api/v1/contacts?email=nobody@x.example',
      headers: owner.headers,
    });
    expect(none.json().items).toEqual([]);
  });

  it('refuses a second contact with the same e-mail in a tenant (409)', async () => {
    expect((await create(owner, { email: 'dup@example.com' })).statusCode).toBe(201);
    const again = await create(owner, { email: 'DUP@example.com ' });
    expect(again.statusCode).toBe(400); // the e-mail format refuses the trailing space
    const dup = await create(owner, { email: 'DUP@example.com' });
    expect(dup.statusCode).toBe(409);
    expect(dup.json().code).toBe('contact.email_taken');
  });

  it('pages through every contact once with a cursor, in both directions', async () => {
    const s = await ctx.tenant();
    const ids: string[] = [];
    for (let i = 0; i < 7; i++) {
      ctx.clock.advance(1000);
      ids.push((await create(s, { firstName: `P${i}` })).json().id);
    }
    for (const [sort, expected] of [
      ['createdAt', ids],
      ['-createdAt', [...ids].reverse()],
    ] as const) {
      const seen: string[] = [];
      let cursor: string | null = null;
      do {
        const url: string = `/api/v1/contacts?limit=3&sort=${sort}${cursor ? `&cursor=${cursor}` : ''}`;
        const page = (await ctx.app.inject({ url, headers: s.headers })).json();
        seen.push(...page.items.map((c: { id: string }) => c.id));
        cursor = page.nextCursor;
      } while (cursor);
      expect(seen).toEqual(expected);
    }
    const bad = await ctx.app.inject({ url: '/api/v1/contacts?cursor=bm9wZQ', headers: s.headers });
    expect(bad.statusCode).toBe(400);
    expect(bad.json().code).toBe('request.invalid_cursor');
  });

  it("answers 404 for another tenant's contact, exactly as for a missing one", async () => {
    const other = await ctx.tenant();
    const theirs = (await create(other, { firstName: 'Secret' })).json();
    for (const [method, extra] of [
      ['GET', {}],
      ['PATCH', { payload: { title: 'x' }, headers: { 'if-match': '"1"' } }],
      ['DELETE', {}],
    ] as const) {
      const res = await ctx.app.inject({
        method,
        url: `/api/v1/contacts/${theirs.id}`,
        ...extra,
        headers: { ...owner.headers, ...('headers' in extra ? extra.headers : {}) },
      });
      expect(res.statusCode).toBe(404);
      expect(res.json().code).toBe('resource.not_found');
    }
    const list = (
      await ctx.app.inject({ url: '/api/v1/contacts?limit=200', headers: owner.headers })
    ).json();
    expect(list.items.some((c: { id: string }) => c.id === theirs.id)).toBe(false);
  });

  it("refuses a reference to another tenant's company without revealing it exists", async () => {
    const other = await ctx.tenant();
    const company = (
      await ctx.app.inject({
        method: 'POST',
        url: '/api/v1/companies',
        headers: other.headers,
        payload: { name: 'Theirs' },
      })
    ).json();
    const res = await create(owner, { firstName: 'X', companyId: company.id });
    expect(res.statusCode).toBe(400);
    expect(res.json().code).toBe('resource.invalid_reference');
    const missing = await create(owner, {
      firstName: 'X',
      companyId: '01900000-0000-7000-8000-000000000000',
    });
    expect(missing.json()).toMatchObject({
      code: 'resource.invalid_reference',
      detail: res.json().detail,
    });
  });

  it('needs a session: 401 without one', async () => {
    const res = await ctx.app.inject({ url: '/api/v1/contacts' });
    expect(res.statusCode).toBe(401);
    expect(res.json().code).toBe('auth.unauthenticated');
  });

  it('lets a viewer read but not write (403)', async () => {
    const viewer = await ctx.user(owner, 'viewer');
    expect(
      (await ctx.app.inject({ url: '/api/v1/contacts', headers: viewer.headers })).statusCode,
    ).toBe(200);
    const res = await create(viewer, { firstName: 'No' });
    expect(res.statusCode).toBe(403);
    expect(res.json().code).toBe('policy.forbidden');
  });

  it('refuses unknown fields and names them', async () => {
    const res = await create(owner, { firstName: 'A', tenantId: 'x', version: 9 });
    expect(res.statusCode).toBe(400);
    const fields = res
      .json()
      .errors.map((e: { field: string }) => e.field)
      .sort();
    expect(fields).toEqual(['body/tenantId', 'body/version']);
  });
});
