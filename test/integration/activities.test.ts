import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createTestContext, type Session, type TestContext } from '../helpers/context.ts';
import { recordRoutes } from '../helpers/records.ts';

let ctx: TestContext;
let owner: Session;
let contact: { id: string };
let company: { id: string };
let deal: { id: string };

const BASE = '/api/v1/activities';
const MISSING_ID = '01900000-0000-7000-8000-000000000000';

interface Activity {
  id: string;
  type: string;
  subject: string;
  body: string | null;
  contactId: string | null;
  companyId: string | null;
  dealId: string | null;
  dueAt: string | null;
  doneAt: string | null;
  ownerId: string | null;
  version: number;
}

beforeAll(async () => {
  ctx = await createTestContext();
  owner = await ctx.tenant();
  company = await post(owner, '/api/v1/companies', { name: 'Clinic' });
  contact = await post(owner, '/api/v1/contacts', { firstName: 'Pat', companyId: company.id });
  deal = await post(owner, '/api/v1/deals', { name: 'Renewal', companyId: company.id });
});
afterAll(async () => ctx?.close());

const { post, create, made, get, patch, del, listAll } = recordRoutes<Activity>(() => ctx, BASE);

describe('activities: create, get, change, delete', () => {
  it('creates an activity linked to a contact and reads it back', async () => {
    const res = await create(owner, { type: 'call', subject: 'Intro call', contactId: contact.id });
    expect(res.statusCode).toBe(201);
    expect(res.headers.etag).toBe('"1"');
    const a = res.json<Activity>();
    expect(res.headers.location).toBe(`${BASE}/${a.id}`);
    expect(a).toMatchObject({
      type: 'call',
      subject: 'Intro call',
      body: null,
      contactId: contact.id,
      companyId: null,
      dealId: null,
      dueAt: null,
      doneAt: null,
      ownerId: owner.userId,
      version: 1,
    });
    expect((await get(owner, a.id)).json()).toEqual(a);
  });

  it('accepts each known type and refuses any other', async () => {
    for (const type of ['call', 'email', 'meeting', 'note', 'task']) {
      expect((await made(owner, { type, subject: type, dealId: deal.id })).type).toBe(type);
    }
    for (const type of ['sms', 'Call', '', null, 1]) {
      const res = await create(owner, { type, subject: 'x', dealId: deal.id });
      expect(res.statusCode, String(type)).toBe(400);
      expect(res.json().code).toBe('request.invalid');
    }
    const missingType = await create(owner, { subject: 'x', dealId: deal.id });
    expect(missingType.statusCode).toBe(400);
    expect(missingType.json().errors).toContainEqual({ field: 'body/type', reason: 'is required' });
  });

  it('requires at least one link to a contact, company or deal', async () => {
    for (const payload of [
      { type: 'note', subject: 'Orphan' },
      { type: 'note', subject: 'Orphan', contactId: null, companyId: null, dealId: null },
    ]) {
      const res = await create(owner, payload);
      expect(res.statusCode).toBe(400);
      expect(res.json()).toMatchObject({
        code: 'request.invalid',
        errors: [
          { field: 'body', reason: 'must set at least one of contactId, companyId, dealId' },
        ],
      });
    }
  });

  it('refuses a PATCH that clears the last link, allows one that keeps another', async () => {
    const a = await made(owner, {
      type: 'task',
      subject: 'Linked twice',
      contactId: contact.id,
      dealId: deal.id,
    });
    const keep = await patch(owner, a.id, { contactId: null }, '"1"');
    expect(keep.statusCode).toBe(200);
    expect(keep.json()).toMatchObject({ contactId: null, dealId: deal.id, version: 2 });
    const clear = await patch(owner, a.id, { dealId: null }, '"2"');
    expect(clear.statusCode).toBe(400);
    expect(clear.json().code).toBe('request.invalid');
    const clearAll = await patch(
      owner,
      a.id,
      { dealId: null, companyId: null, contactId: null },
      '"2"',
    );
    expect(clearAll.statusCode).toBe(400);
    expect(clearAll.json().code).toBe('request.invalid');
    const swap = await patch(owner, a.id, { dealId: null, companyId: company.id }, '"2"');
    expect(swap.statusCode).toBe(200);
    expect(swap.json()).toMatchObject({ dealId: null, companyId: company.id, version: 3 });
  });

  it('stores a due time given with an offset as UTC with a Z', async () => {
    const a = await made(owner, {
      type: 'meeting',
      subject: 'Offset',
      contactId: contact.id,
      dueAt: '2026-03-01T10:30:00+02:00',
      doneAt: '2026-02-28T23:15:00.5-05:30',
    });
    expect(a.dueAt).toBe('2026-03-01T08:30:00.000Z');
    expect(a.doneAt).toBe('2026-03-01T04:45:00.500Z');
    expect((await get(owner, a.id)).json()).toMatchObject({
      dueAt: '2026-03-01T08:30:00.000Z',
      doneAt: '2026-03-01T04:45:00.500Z',
    });
    const p = await patch(owner, a.id, { dueAt: '2026-03-02T00:00:00-10:00' }, '"1"');
    expect(p.json().dueAt).toBe('2026-03-02T10:00:00.000Z');
    for (const dueAt of ['2026-03-01', 'tomorrow', '2026-02-30T10:00:00Z', '2026-03-01T10:00:00']) {
      const res = await create(owner, {
        type: 'task',
        subject: 'Bad',
        contactId: contact.id,
        dueAt,
      });
      expect(res.statusCode, dueAt).toBe(400);
      expect(res.json().code).toBe('request.invalid');
    }
  });

  it('guards PATCH with If-Match: 428 without, 412 stale or weak', async () => {
    const a = await made(owner, { type: 'note', subject: 'Guarded', companyId: company.id });
    const missing = await patch(owner, a.id, { subject: 'x' });
    expect(missing.statusCode).toBe(428);
    expect(missing.json().code).toBe('resource.if_match_required');
    for (const tag of ['"2"', 'W/"1"', '*']) {
      const res = await patch(owner, a.id, { subject: 'x' }, tag);
      expect(res.statusCode, tag).toBe(412);
      expect(res.json().code).toBe('resource.version_mismatch');
    }
    expect((await get(owner, a.id)).json()).toMatchObject({ subject: 'Guarded', version: 1 });
  });

  it('deletes with a current If-Match or none, refuses a stale or weak one', async () => {
    const a = await made(owner, { type: 'note', subject: 'Delete', companyId: company.id });
    for (const tag of ['"2"', 'W/"1"']) {
      const res = await del(owner, a.id, tag);
      expect(res.statusCode).toBe(412);
      expect(res.json().code).toBe('resource.version_mismatch');
    }
    expect((await del(owner, a.id, '"1"')).statusCode).toBe(204);
    expect((await get(owner, a.id)).statusCode).toBe(404);
    const b = await made(owner, { type: 'note', subject: 'Delete blindly', companyId: company.id });
    expect((await del(owner, b.id)).statusCode).toBe(204);
    expect((await del(owner, b.id)).json().code).toBe('resource.not_found');
  });

  it('deletes the activities of a deleted contact, even those also linked elsewhere (current behaviour)', async () => {
    // ON DELETE CASCADE on activities.contact_id: the history of a contact goes with the contact
    // (what an erasure request needs), including an activity also linked to a deal.
    const c = await post<{ id: string }>(owner, '/api/v1/contacts', { firstName: 'Leaving' });
    const only = await made(owner, { type: 'call', subject: 'Only contact', contactId: c.id });
    const shared = await made(owner, {
      type: 'call',
      subject: 'Also deal',
      contactId: c.id,
      dealId: deal.id,
    });
    const unrelated = await made(owner, { type: 'call', subject: 'Deal only', dealId: deal.id });
    const res = await ctx.app.inject({
      method: 'DELETE',
      url: `/api/v1/contacts/${c.id}`,
      headers: owner.headers,
    });
    expect(res.statusCode).toBe(204);
    expect((await get(owner, only.id)).statusCode).toBe(404);
    expect((await get(owner, shared.id)).statusCode).toBe(404);
    expect((await get(owner, unrelated.id)).statusCode).toBe(200);
    expect(await listAll(owner, `contactId=${c.id}`)).toEqual([]);
  });
});

describe('activities: list', () => {
  let s: Session;
  let member: Session;
  let links: { contact: string; company: string; deal: string };
  const byName: Record<string, Activity> = {};
  const order: string[] = [];

  beforeAll(async () => {
    s = await ctx.tenant();
    member = await ctx.user(s, 'agent');
    // Owned by the agent, so both may link to them (an agent links only records it may read).
    const mine = { ownerId: member.userId };
    const co = await post<{ id: string }>(s, '/api/v1/companies', { name: 'Co', ...mine });
    const ct = await post<{ id: string }>(s, '/api/v1/contacts', { firstName: 'Ct', ...mine });
    const dl = await post<{ id: string }>(s, '/api/v1/deals', { name: 'Dl', ...mine });
    links = { contact: ct.id, company: co.id, deal: dl.id };
    const rows = [
      { as: s, subject: 'A', type: 'call', contactId: ct.id, dueAt: '2026-05-01T09:00:00Z' },
      { as: member, subject: 'B', type: 'task', companyId: co.id, dueAt: null },
      { as: s, subject: 'C', type: 'call', dealId: dl.id, dueAt: '2026-04-30T23:00:00-02:00' },
      { as: member, subject: 'D', type: 'email', contactId: ct.id, dealId: dl.id },
      {
        as: s,
        subject: 'E',
        type: 'meeting',
        companyId: co.id,
        dueAt: '2026-04-01T00:00:00+01:00',
      },
    ];
    for (const { as, ...payload } of rows) {
      ctx.clock.advance(1000);
      const a = await made(as, payload);
      byName[a.subject] = a;
      order.push(a.id);
    }
  });
  const ids = (...names: string[]) => names.map((n) => byName[n]!.id);

  it('pages by createdAt and updatedAt in both directions', async () => {
    expect(await listAll(s, '')).toEqual(order);
    expect(await listAll(s, 'sort=-createdAt')).toEqual([...order].reverse());
    ctx.clock.advance(1000);
    const a = byName.A!;
    expect((await patch(s, a.id, { body: 'Notes' }, '"1"')).statusCode).toBe(200);
    const updated = [...order.filter((id) => id !== a.id), a.id];
    expect(await listAll(s, 'sort=updatedAt')).toEqual(updated);
    expect(await listAll(s, 'sort=-updatedAt')).toEqual([...updated].reverse());
  });

  it('pages by due time in UTC order with undated activities last (first descending)', async () => {
    // E 2026-03-31T23:00Z, A 2026-05-01T09:00Z, C 2026-05-01T01:00Z; B and D have none.
    const asc = ids('E', 'C', 'A', 'B', 'D');
    for (const limit of [1, 2, 4, 200]) {
      expect(await listAll(s, 'sort=dueAt', limit)).toEqual(asc);
      expect(await listAll(s, 'sort=-dueAt', limit)).toEqual([...asc].reverse());
    }
  });

  it('filters by type, contact, company, deal and owner', async () => {
    expect(await listAll(s, 'type=call')).toEqual(ids('A', 'C'));
    expect(await listAll(s, 'type=note')).toEqual([]);
    expect(await listAll(s, `contactId=${links.contact}`)).toEqual(ids('A', 'D'));
    expect(await listAll(s, `companyId=${links.company}`)).toEqual(ids('B', 'E'));
    expect(await listAll(s, `dealId=${links.deal}`)).toEqual(ids('C', 'D'));
    expect(await listAll(s, `ownerId=${member.userId}`)).toEqual(ids('B', 'D'));
    expect(await listAll(s, `type=email&dealId=${links.deal}`)).toEqual(ids('D'));
  });

  it('refuses an unknown type, sort or malformed link filter', async () => {
    for (const q of ['type=sms', 'sort=doneAt', 'sort=subject', 'dealId=1', 'contactId=%27']) {
      const res = await ctx.app.inject({ url: `${BASE}?${q}`, headers: s.headers });
      expect(res.statusCode, q).toBe(400);
      expect(res.json().code).toBe('request.invalid');
    }
  });
});

describe('activities: access', () => {
  it('answers 401 on every route without a session', async () => {
    const a = await made(owner, { type: 'note', subject: 'Private', contactId: contact.id });
    for (const [method, url] of [
      ['GET', BASE],
      ['POST', BASE],
      ['GET', `${BASE}/${a.id}`],
      ['PATCH', `${BASE}/${a.id}`],
      ['DELETE', `${BASE}/${a.id}`],
    ] as const) {
      const payload = method === 'POST' || method === 'PATCH' ? { subject: 'x' } : undefined;
      const res = await ctx.app.inject({ method, url, payload });
      expect(res.statusCode, `${method} ${url}`).toBe(401);
      expect(res.json().code).toBe('auth.unauthenticated');
    }
  });

  it('lets a viewer read but not write, and an agent write their own activities', async () => {
    const viewer = await ctx.user(owner, 'viewer');
    const member = await ctx.user(owner, 'agent');
    const a = await made(owner, { type: 'note', subject: 'Shared', contactId: contact.id });
    expect((await get(viewer, a.id)).statusCode).toBe(200);
    for (const res of [
      await create(viewer, { type: 'note', subject: 'No', contactId: contact.id }),
      await patch(viewer, a.id, { subject: 'No' }, '"1"'),
      await del(viewer, a.id),
    ]) {
      expect(res.statusCode).toBe(403);
      expect(res.json().code).toBe('policy.forbidden');
    }
    // The owner's deal is out of the agent's scope: no link to it, as to a missing record.
    const refused = await create(member, { type: 'task', subject: 'No', dealId: deal.id });
    expect(refused.statusCode).toBe(400);
    expect(refused.json().code).toBe('resource.invalid_reference');
    const memberDeal = await post<{ id: string }>(member, '/api/v1/deals', { name: 'Member deal' });
    const mine = await made(member, { type: 'task', subject: 'Mine', dealId: memberDeal.id });
    expect(mine.ownerId).toBe(member.userId);
    // The owner's activity is out of an agent's scope: as if it did not exist.
    expect((await patch(member, a.id, { doneAt: '2026-01-01T00:00:00Z' }, '"1"')).statusCode).toBe(
      404,
    );
    expect(
      (await patch(member, mine.id, { doneAt: '2026-01-01T00:00:00Z' }, '"1"')).statusCode,
    ).toBe(200);
    expect((await del(member, mine.id, '"2"')).statusCode).toBe(204);
  });

  it("hides another tenant's activity: 404 on every route and absent from lists", async () => {
    const other = await ctx.tenant();
    const theirContact = await post<{ id: string }>(other, '/api/v1/contacts', { firstName: 'T' });
    const theirs = await made(other, {
      type: 'call',
      subject: 'Theirs',
      contactId: theirContact.id,
    });
    for (const res of [
      await get(owner, theirs.id),
      await patch(owner, theirs.id, { subject: 'Mine' }, '"1"'),
      await del(owner, theirs.id, '"1"'),
      await del(owner, theirs.id),
    ]) {
      expect(res.statusCode).toBe(404);
      expect(res.json()).toMatchObject({
        code: 'resource.not_found',
        detail: 'No activity with this id.',
      });
    }
    expect(await listAll(owner, '', 200)).not.toContain(theirs.id);
    expect(await listAll(owner, `contactId=${theirContact.id}`)).toEqual([]);
    expect((await get(other, theirs.id)).json()).toMatchObject({ subject: 'Theirs', version: 1 });
  });

  it("refuses links to another tenant's records exactly like missing ones", async () => {
    const other = await ctx.tenant();
    const foreign = {
      contactId: (await post<{ id: string }>(other, '/api/v1/contacts', { firstName: 'T' })).id,
      companyId: (await post<{ id: string }>(other, '/api/v1/companies', { name: 'T' })).id,
      dealId: (await post<{ id: string }>(other, '/api/v1/deals', { name: 'T' })).id,
      ownerId: other.userId,
    };
    for (const [field, foreignId] of Object.entries(foreign)) {
      // ownerId alone is not a link: add one of ours so that only the reference is wrong.
      const base = field === 'ownerId' ? { dealId: deal.id } : {};
      const theirs = await create(owner, {
        type: 'note',
        subject: 'X',
        ...base,
        [field]: foreignId,
      });
      const missing = await create(owner, {
        type: 'note',
        subject: 'X',
        ...base,
        [field]: MISSING_ID,
      });
      expect(theirs.statusCode, field).toBe(400);
      expect(theirs.json().code).toBe('resource.invalid_reference');
      expect(missing.json()).toEqual({ ...theirs.json(), instance: missing.json().instance });
      const a = await made(owner, { type: 'note', subject: `Patch ${field}`, dealId: deal.id });
      const res = await patch(owner, a.id, { [field]: foreignId }, '"1"');
      expect(res.statusCode).toBe(400);
      expect(res.json().code).toBe('resource.invalid_reference');
    }
  });
});
