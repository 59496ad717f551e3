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

const BASE = '/api/v1/deals';
const MISSING_ID = '01900000-0000-7000-8000-000000000000';

interface Deal {
  id: string;
  name: string;
  stage: string;
  amountMinor: number | null;
  currency: string | null;
  expectedCloseDate: string | null;
  companyId: string | null;
  contactId: string | null;
  ownerId: string | null;
  version: number;
}

const { post, create, made, get, patch, del, listAll } = recordRoutes<Deal>(() => ctx, BASE);

describe('deals: create, get, change, delete', () => {
  it('creates a deal in stage lead by default and reads it back', async () => {
    const res = await create(owner, { name: 'Pilot', amountMinor: 1999, currency: 'EUR' });
    expect(res.statusCode).toBe(201);
    expect(res.headers.etag).toBe('"1"');
    const deal = res.json<Deal>();
    expect(res.headers.location).toBe(`${BASE}/${deal.id}`);
    expect(deal).toMatchObject({
      name: 'Pilot',
      stage: 'lead',
      amountMinor: 1999,
      currency: 'EUR',
      expectedCloseDate: null,
      companyId: null,
      contactId: null,
      ownerId: owner.userId,
      version: 1,
    });
    expect((await get(owner, deal.id)).json()).toEqual(deal);
  });

  it('keeps amounts up to MAX_SAFE_INTEGER exact and returns them as JSON numbers', async () => {
    for (const amount of [0, 1, 2 ** 31, 2 ** 32 + 1, Number.MAX_SAFE_INTEGER]) {
      const deal = await made(owner, {
        name: `Amount ${amount}`,
        amountMinor: amount,
        currency: 'JPY',
      });
      expect(deal.amountMinor).toBe(amount);
      const got = await get(owner, deal.id);
      // The raw body has the bare number: PostgreSQL's BIGINT comes back as text and must be converted.
      expect(got.body).toContain(`"amountMinor":${amount},`);
      expect(got.json<Deal>().amountMinor).toBe(amount);
    }
    const page = await ctx.app.inject({ url: `${BASE}?limit=200`, headers: owner.headers });
    const amounts = page.json<{ items: Deal[] }>().items.map((d) => d.amountMinor);
    expect(amounts).toContain(Number.MAX_SAFE_INTEGER);
    expect(amounts.every((a) => a === null || typeof a === 'number')).toBe(true);
  });

  it('refuses amounts that are not whole non-negative safe integers of minor units', async () => {
    for (const amountMinor of [
      12.5,
      -1,
      '100',
      '12.50',
      Number.MAX_SAFE_INTEGER + 1,
      1e300,
      true,
      {},
    ]) {
      const res = await create(owner, { name: 'Bad amount', amountMinor, currency: 'USD' });
      expect(res.statusCode, JSON.stringify(amountMinor)).toBe(400);
      expect(res.json().code).toBe('request.invalid');
      expect(res.json().errors.some((e: { field: string }) => e.field === 'body/amountMinor')).toBe(
        true,
      );
    }
    const d = await made(owner, { name: 'Patch amount', amountMinor: 10 });
    const res = await patch(owner, d.id, { amountMinor: 10.01 }, '"1"');
    expect(res.statusCode).toBe(400);
    expect(res.json().code).toBe('request.invalid');
    const cleared = await patch(owner, d.id, { amountMinor: null }, '"1"');
    expect(cleared.statusCode).toBe(200);
    expect(cleared.json().amountMinor).toBeNull();
  });

  it('accepts only three-letter upper-case ISO currency codes', async () => {
    for (const currency of ['usd', 'US', 'USDT', 'U$D', '', 840]) {
      const res = await create(owner, { name: 'Bad currency', currency });
      expect(res.statusCode, String(currency)).toBe(400);
      expect(res.json().code).toBe('request.invalid');
    }
    expect((await made(owner, { name: 'CHF', currency: 'CHF' })).currency).toBe('CHF');
  });

  it('accepts only the known stages', async () => {
    for (const stage of ['closed', 'Won', '', null]) {
      const res = await create(owner, { name: 'Bad stage', stage });
      expect(res.statusCode, String(stage)).toBe(400);
      expect(res.json().code).toBe('request.invalid');
    }
    const d = await made(owner, { name: 'Staged', stage: 'qualified' });
    const won = await patch(owner, d.id, { stage: 'won' }, '"1"');
    expect(won.statusCode).toBe(200);
    expect(won.json()).toMatchObject({ stage: 'won', version: 2 });
    const bad = await patch(owner, d.id, { stage: 'archived' }, '"2"');
    expect(bad.statusCode).toBe(400);
    expect(bad.json().code).toBe('request.invalid');
  });

  it('refuses an expected close date that is not a calendar date', async () => {
    for (const expectedCloseDate of [
      '2026-02-30',
      '2026-13-01',
      '31/12/2026',
      '2026-12-31T00:00:00Z',
    ]) {
      const res = await create(owner, { name: 'Bad date', expectedCloseDate });
      expect(res.statusCode, expectedCloseDate).toBe(400);
      expect(res.json().code).toBe('request.invalid');
    }
  });

  it('guards PATCH with If-Match: 428 without, 412 stale or weak, 200 current', async () => {
    const d = await made(owner, { name: 'Guarded' });
    const missing = await patch(owner, d.id, { name: 'x' });
    expect(missing.statusCode).toBe(428);
    expect(missing.json().code).toBe('resource.if_match_required');
    for (const tag of ['"2"', 'W/"1"', '*']) {
      const res = await patch(owner, d.id, { name: 'x' }, tag);
      expect(res.statusCode, tag).toBe(412);
      expect(res.json().code).toBe('resource.version_mismatch');
    }
    const ok = await patch(owner, d.id, { name: 'Renamed' }, '"1"');
    expect(ok.statusCode).toBe(200);
    expect(ok.headers.etag).toBe('"2"');
    const stale = await patch(owner, d.id, { name: 'Overwrite' }, '"1"');
    expect(stale.statusCode).toBe(412);
    expect(stale.json().code).toBe('resource.version_mismatch');
    expect((await get(owner, d.id)).json()).toMatchObject({ name: 'Renamed', version: 2 });
  });

  it('deletes with a current If-Match or none, refuses a stale or weak one', async () => {
    const d = await made(owner, { name: 'To delete' });
    for (const tag of ['"3"', 'W/"1"']) {
      const res = await del(owner, d.id, tag);
      expect(res.statusCode).toBe(412);
      expect(res.json().code).toBe('resource.version_mismatch');
    }
    expect((await del(owner, d.id, '"1"')).statusCode).toBe(204);
    expect((await get(owner, d.id)).statusCode).toBe(404);
    const e = await made(owner, { name: 'To delete blindly' });
    expect((await del(owner, e.id)).statusCode).toBe(204);
    expect((await del(owner, e.id)).json().code).toBe('resource.not_found');
  });

  it('links a company and a contact of the same tenant, and unlinks them when they are deleted', async () => {
    const company = await post<{ id: string }>(owner, '/api/v1/companies', { name: 'Buyer' });
    const contact = await post<{ id: string }>(owner, '/api/v1/contacts', { firstName: 'Buyer' });
    const d = await made(owner, { name: 'Linked', companyId: company.id, contactId: contact.id });
    expect(d).toMatchObject({ companyId: company.id, contactId: contact.id });
    for (const path of [`/api/v1/companies/${company.id}`, `/api/v1/contacts/${contact.id}`]) {
      const res = await ctx.app.inject({ method: 'DELETE', url: path, headers: owner.headers });
      expect(res.statusCode).toBe(204);
    }
    expect((await get(owner, d.id)).json()).toMatchObject({ companyId: null, contactId: null });
  });
});

describe('deals: list', () => {
  let s: Session;
  let member: Session;
  let company: { id: string };
  let contact: { id: string };
  const byName: Record<string, Deal> = {};
  const order: string[] = [];

  beforeAll(async () => {
    s = await ctx.tenant();
    member = await ctx.user(s, 'agent');
    // Owned by the agent, so both may link to them (an agent links only records it may read).
    company = await post(s, '/api/v1/companies', { name: 'Co', ownerId: member.userId });
    contact = await post(s, '/api/v1/contacts', { firstName: 'Cont', ownerId: member.userId });
    const rows = [
      {
        as: s,
        name: 'Delta',
        stage: 'won',
        expectedCloseDate: '2026-03-01',
        companyId: company.id,
      },
      { as: member, name: 'Alpha', stage: 'lead', expectedCloseDate: null, contactId: contact.id },
      { as: s, name: 'Charlie', stage: 'won', expectedCloseDate: '2026-01-15' },
      {
        as: member,
        name: 'Bravo',
        stage: 'lost',
        expectedCloseDate: null,
        companyId: company.id,
        contactId: contact.id,
      },
      { as: s, name: 'Echo', stage: 'proposal', expectedCloseDate: '2026-02-01' },
    ];
    for (const { as, ...payload } of rows) {
      ctx.clock.advance(1000);
      const d = await made(as, payload);
      byName[d.name] = d;
      order.push(d.id);
    }
  });
  const ids = (...names: string[]) => names.map((n) => byName[n]!.id);

  it('pages by createdAt and updatedAt in both directions', async () => {
    expect(await listAll(s, '')).toEqual(order);
    expect(await listAll(s, 'sort=-createdAt')).toEqual([...order].reverse());
    ctx.clock.advance(1000);
    const alpha = byName.Alpha!;
    expect((await patch(s, alpha.id, { amountMinor: 5 }, '"1"')).statusCode).toBe(200);
    const updated = [...order.filter((id) => id !== alpha.id), alpha.id];
    expect(await listAll(s, 'sort=updatedAt')).toEqual(updated);
    expect(await listAll(s, 'sort=-updatedAt')).toEqual([...updated].reverse());
  });

  it('pages by name in both directions', async () => {
    const asc = ids('Alpha', 'Bravo', 'Charlie', 'Delta', 'Echo');
    expect(await listAll(s, 'sort=name')).toEqual(asc);
    expect(await listAll(s, 'sort=-name')).toEqual([...asc].reverse());
  });

  it('pages by expected close date with deals without one last (first when descending)', async () => {
    // Alpha and Bravo have no date: they tie, and the id (creation order) breaks the tie.
    const asc = ids('Charlie', 'Echo', 'Delta', 'Alpha', 'Bravo');
    for (const limit of [1, 2, 3, 200]) {
      expect(await listAll(s, 'sort=expectedCloseDate', limit)).toEqual(asc);
      expect(await listAll(s, 'sort=-expectedCloseDate', limit)).toEqual([...asc].reverse());
    }
  });

  it('filters by stage, company, contact and owner', async () => {
    expect(await listAll(s, 'stage=won')).toEqual(ids('Delta', 'Charlie'));
    expect(await listAll(s, 'stage=negotiation')).toEqual([]);
    expect(await listAll(s, `companyId=${company.id}`)).toEqual(ids('Delta', 'Bravo'));
    expect(await listAll(s, `contactId=${contact.id}`)).toEqual(ids('Alpha', 'Bravo'));
    expect(await listAll(s, `ownerId=${member.userId}`)).toEqual(ids('Alpha', 'Bravo'));
    expect(await listAll(s, `stage=won&companyId=${company.id}`)).toEqual(ids('Delta'));
  });

  it('refuses an unknown stage filter, sort or malformed id filter', async () => {
    for (const q of ['stage=closed', 'sort=amountMinor', 'companyId=1', 'contactId=x']) {
      const res = await ctx.app.inject({ url: `${BASE}?${q}`, headers: s.headers });
      expect(res.statusCode, q).toBe(400);
      expect(res.json().code).toBe('request.invalid');
    }
  });
});

describe('deals: access', () => {
  it('answers 401 on every route without a session', async () => {
    const d = await made(owner, { name: 'Private' });
    for (const [method, url] of [
      ['GET', BASE],
      ['POST', BASE],
      ['GET', `${BASE}/${d.id}`],
      ['PATCH', `${BASE}/${d.id}`],
      ['DELETE', `${BASE}/${d.id}`],
    ] as const) {
      const payload = method === 'POST' || method === 'PATCH' ? { name: 'x' } : undefined;
      const res = await ctx.app.inject({ method, url, payload });
      expect(res.statusCode, `${method} ${url}`).toBe(401);
      expect(res.json().code).toBe('auth.unauthenticated');
    }
  });

  it('lets a viewer read but not write, and an agent write their own deals', async () => {
    const viewer = await ctx.user(owner, 'viewer');
    const member = await ctx.user(owner, 'agent');
    const d = await made(owner, { name: 'Shared' });
    expect((await get(viewer, d.id)).statusCode).toBe(200);
    for (const res of [
      await create(viewer, { name: 'No' }),
      await patch(viewer, d.id, { stage: 'won' }, '"1"'),
      await del(viewer, d.id),
    ]) {
      expect(res.statusCode).toBe(403);
      expect(res.json().code).toBe('policy.forbidden');
    }
    const mine = await made(member, { name: 'Member deal', amountMinor: 100, currency: 'GBP' });
    expect(mine.ownerId).toBe(member.userId);
    // The owner's deal is out of an agent's scope: as if it did not exist.
    expect((await patch(member, d.id, { stage: 'won' }, '"1"')).statusCode).toBe(404);
    expect((await patch(member, mine.id, { stage: 'won' }, '"1"')).statusCode).toBe(200);
    expect((await del(member, mine.id, '"2"')).statusCode).toBe(204);
  });

  it("hides another tenant's deal: 404 on every route and absent from lists", async () => {
    const other = await ctx.tenant();
    const theirs = await made(other, { name: 'Theirs', stage: 'negotiation' });
    for (const res of [
      await get(owner, theirs.id),
      await patch(owner, theirs.id, { stage: 'lost' }, '"1"'),
      await del(owner, theirs.id, '"1"'),
      await del(owner, theirs.id),
    ]) {
      expect(res.statusCode).toBe(404);
      expect(res.json()).toMatchObject({
        code: 'resource.not_found',
        detail: 'No deal with this id.',
      });
    }
    expect(await listAll(owner, '', 200)).not.toContain(theirs.id);
    expect(await listAll(owner, 'stage=negotiation')).not.toContain(theirs.id);
    expect((await get(other, theirs.id)).json()).toMatchObject({
      stage: 'negotiation',
      version: 1,
    });
  });

  it("refuses another tenant's company, contact or user exactly like missing ones", async () => {
    const other = await ctx.tenant();
    const theirCompany = await post<{ id: string }>(other, '/api/v1/companies', {
      name: 'TheirCo',
    });
    const theirContact = await post<{ id: string }>(other, '/api/v1/contacts', { firstName: 'T' });
    for (const [field, foreignId] of [
      ['companyId', theirCompany.id],
      ['contactId', theirContact.id],
      ['ownerId', other.userId],
    ] as const) {
      const foreign = await create(owner, { name: 'X', [field]: foreignId });
      const missing = await create(owner, { name: 'X', [field]: MISSING_ID });
      expect(foreign.statusCode, field).toBe(400);
      expect(foreign.json().code).toBe('resource.invalid_reference');
      expect(missing.statusCode).toBe(400);
      expect(missing.json()).toMatchObject({
        code: 'resource.invalid_reference',
        detail: foreign.json().detail,
        errors: [{ field: `body/${field}`, reason: 'does not refer to an existing record' }],
      });
      expect(foreign.json().errors).toEqual(missing.json().errors);
      const d = await made(owner, { name: `Patch ${field}` });
      const res = await patch(owner, d.id, { [field]: foreignId }, '"1"');
      expect(res.statusCode).toBe(400);
      expect(res.json().code).toBe('resource.invalid_reference');
      expect((await get(owner, d.id)).json().version).toBe(1);
    }
  });
});
