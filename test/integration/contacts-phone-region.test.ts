import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { runInTenant } from '../../src/db/tenant-scope.ts';
import { newId } from '../../src/ids.ts';
import { contactSpec } from '../../src/modules/contacts/spec.ts';
import { createReencryptionJob } from '../../src/modules/records/reencrypt.ts';
import { setupTenant } from '../../src/modules/tenants/service.ts';
import { readPhoneRegion } from '../../src/modules/tenant-settings/phone-region.ts';
import {
  createTestContext,
  PASSWORD,
  tenantSettings,
  type Session,
  type TestContext,
} from '../helpers/context.ts';
import { expectCode } from '../helpers/problem.ts';

/**
 * National phone numbers ("(415) 555-2671", "0171 1234567") are indexed and filtered in the
 * tenant's phone region, and a change of the region re-indexes the tenant's contacts at once.
 */
let ctx: TestContext;

beforeAll(async () => {
  ctx = await createTestContext();
});
afterAll(async () => ctx?.close());

const settings = (s: Session, payload?: object) => tenantSettings(ctx, s, payload);

async function setRegion(s: Session, phoneRegion: string | null) {
  const res = await settings(s, { phoneRegion });
  expect(res.statusCode, res.body).toBe(200);
  expect(res.json()).toMatchObject({ phoneRegion });
}

async function createContact(s: Session, payload: Record<string, unknown>): Promise<string> {
  const res = await ctx.app.inject({
    method: 'POST',
    url: '/api/v1/contacts',
    headers: s.headers,
    payload: { firstName: 'A', ...payload },
  });
  expect(res.statusCode, res.body).toBe(201);
  return res.json<{ id: string }>().id;
}

/** Ids of the contacts the phone filter finds for `phone`. */
async function byPhone(s: Session, phone: string): Promise<string[]> {
  const res = await ctx.app.inject({
    url: `/api/v1/contacts?phone=${encodeURIComponent(phone)}`,
    headers: s.headers,
  });
  expect(res.statusCode, res.body).toBe(200);
  return res.json<{ items: { id: string }[] }>().items.map((c) => c.id);
}

async function settingsEvents(tenantId: string) {
  return ctx.database.handle.db
    .selectFrom('audit_events')
    .select(['fields'])
    .where('tenant_id', '=', tenantId)
    .where('type', '=', 'tenant.settings.updated')
    .orderBy('leaf_index')
    .execute();
}

describe('phone region', () => {
  it('indexes only international numbers while the tenant has no region', async () => {
    const s = await ctx.tenant();
    expect((await settings(s)).json()).toMatchObject({ phoneRegion: null });
    const national = await createContact(s, { phone: '(415) 555-2671' });
    const international = await createContact(s, { phone: '+44 20 7946 0958' });
    // Stored (encrypted) and readable, but not indexed: no region to read it in.
    const got = await ctx.app.inject({ url: `/api/v1/contacts/${national}`, headers: s.headers });
    expect(got.json()).toMatchObject({ phone: '(415) 555-2671' });
    expect(await byPhone(s, '+14155552671')).toEqual([]);
    expect(await byPhone(s, '(415) 555-2671')).toEqual([]);
    expect(await byPhone(s, '+442079460958')).toEqual([international]);
  });

  it('finds a contact created with a national number by its E.164 and national forms', async () => {
    const s = await ctx.tenant();
    await setRegion(s, 'US');
    const id = await createContact(s, { phone: '(415) 555-2671' });
    await createContact(s, { phone: '(415) 555-2672' });
    for (const form of ['+14155552671', '(415) 555-2671', '415.555.2671', '+1 415-555-2671']) {
      expect(await byPhone(s, form), form).toEqual([id]);
    }
    // Another tenant's region reads the same digits as its own number, and finds nothing here.
    const other = await ctx.tenant();
    await setRegion(other, 'US');
    expect(await byPhone(other, '(415) 555-2671')).toEqual([]);
  });

  it('indexes a national number written by a change of the phone', async () => {
    const s = await ctx.tenant();
    await setRegion(s, 'DE');
    const id = await createContact(s, { phone: '+1 415 555 2671' });
    const patched = await ctx.app.inject({
      method: 'PATCH',
      url: `/api/v1/contacts/${id}`,
      headers: { ...s.headers, 'if-match': '"1"' },
      payload: { phone: '0171 1234567' },
    });
    expect(patched.statusCode, patched.body).toBe(200);
    expect(await byPhone(s, '+491711234567')).toEqual([id]);
    expect(await byPhone(s, '0171 1234567')).toEqual([id]);
    expect(await byPhone(s, '+14155552671')).toEqual([]);
  });

  it('re-indexes the contacts when the region changes, in the change, and audits it', async () => {
    const s = await ctx.tenant();
    const german = await createContact(s, { phone: '0171 1234567' });
    const american = await createContact(s, { phone: '(415) 555-2671' });
    const british = await createContact(s, { phone: '+44 20 7946 0958' });
    const none = await createContact(s, { email: 'nophone@example.com' });
    const junk = await createContact(s, { phone: 'call the front desk' });
    expect(await byPhone(s, '+491711234567')).toEqual([]);

    await setRegion(s, 'DE');
    expect(await byPhone(s, '+491711234567')).toEqual([german]);
    expect(await byPhone(s, '0171 1234567')).toEqual([german]);
    expect(await byPhone(s, '+14155552671')).toEqual([]);
    expect(await byPhone(s, '+442079460958')).toEqual([british]);

    await setRegion(s, 'US');
    expect(await byPhone(s, '+14155552671')).toEqual([american]);
    expect(await byPhone(s, '(415) 555-2671')).toEqual([american]);
    // The German national number no longer reads as German: its old index is gone.
    expect(await byPhone(s, '+491711234567')).toEqual([]);
    expect(await byPhone(s, '+442079460958')).toEqual([british]);

    await setRegion(s, null);
    expect(await byPhone(s, '+14155552671')).toEqual([]);
    expect(await byPhone(s, '+442079460958')).toEqual([british]);

    // Values, versions and the other contacts are untouched by re-indexing.
    for (const [id, phone] of [
      [german, '0171 1234567'],
      [none, null],
      [junk, 'call the front desk'],
    ] as const) {
      const got = await ctx.app.inject({ url: `/api/v1/contacts/${id}`, headers: s.headers });
      expect(got.json()).toMatchObject({ phone, version: 1 });
    }
    expect((await settingsEvents(s.tenantId)).map((e) => e.fields)).toEqual([
      '["phoneRegion"]',
      '["phoneRegion"]',
      '["phoneRegion"]',
    ]);
    await ctx.services.auditLog.verify(s.tenantId);
  });

  it('clears the index of a phone it cannot decrypt, and still changes the region', async () => {
    const s = await ctx.tenant();
    await setRegion(s, 'US');
    const damaged = await createContact(s, { phone: '(415) 555-2671' });
    const donor = await createContact(s, { phone: '(415) 555-2671' });
    const intact = await createContact(s, { phone: '+1 212 555 0100' });
    expect((await byPhone(s, '+14155552671')).sort()).toEqual([damaged, donor].sort());
    // Another contact's sealed values copied over this one's: they fail authentication here.
    const db = ctx.database.handle.db;
    const from = await db
      .selectFrom('contacts')
      .select(['first_name', 'phone'])
      .where('id', '=', donor)
      .executeTakeFirstOrThrow();
    await db.updateTable('contacts').set(from).where('id', '=', damaged).execute();

    await setRegion(s, 'CA');
    const index = await db
      .selectFrom('contacts')
      .select(['id', 'phone_bidx'])
      .where('id', 'in', [damaged, donor, intact])
      .execute();
    expect(index.find((r) => r.id === damaged)?.phone_bidx).toBeNull();
    expect(index.find((r) => r.id === donor)?.phone_bidx).not.toBeNull();
    expect(await byPhone(s, '+12125550100')).toEqual([intact]);
  });

  it('leaves a phone stored in clear (before encryption) to the encryption job, which indexes it in the region', async () => {
    const s = await ctx.tenant();
    const db = ctx.database.handle.db;
    const now = new Date().toISOString();
    const id = newId();
    await db
      .insertInto('contacts')
      .values({
        id,
        tenant_id: s.tenantId,
        first_name: 'Clara',
        phone: '(415) 555-0199',
        created_at: now,
        updated_at: now,
        version: 1,
      })
      .execute();
    // Not indexed by the change: a filter would find the row, then refuse to read it.
    await setRegion(s, 'US');
    expect(await byPhone(s, '+14155550199')).toEqual([]);
    const bidx = await db
      .selectFrom('contacts')
      .select('phone_bidx')
      .where('id', '=', id)
      .executeTakeFirstOrThrow();
    expect(bidx.phone_bidx).toBeNull();

    const job = createReencryptionJob({ db, keys: ctx.services.keys, specs: [contactSpec] });
    expect(await job.run(s.tenantId, { pauseMs: 0 })).toMatchObject({ done: true, failed: 0 });
    expect(await byPhone(s, '(415) 555-0199')).toEqual([id]);
    expect(await byPhone(s, '+14155550199')).toEqual([id]);
  });

  it('records nothing and re-indexes nothing when the region is set to what it is', async () => {
    const s = await ctx.tenant();
    await setRegion(s, 'GB');
    await setRegion(s, 'GB');
    expect(await settingsEvents(s.tenantId)).toHaveLength(1);
  });

  it('refuses a region that is not a supported ISO 3166-1 alpha-2 code with 400 problem+json', async () => {
    const s = await ctx.tenant();
    await setRegion(s, 'FR');
    for (const phoneRegion of ['ZZ', 'AA', 'de', 'USA', 'U', '', 49, true, {}]) {
      const res = await settings(s, { phoneRegion });
      expectCode(res, 400, 'request.invalid');
      expect(res.headers['content-type']).toMatch(/^application\/problem\+json/);
    }
    const unknown = await settings(s, { phoneRegion: 'ZZ' });
    expect(unknown.json().errors).toEqual([
      { field: 'body/phoneRegion', reason: 'is not a supported region code' },
    ]);
    expect((await settings(s)).json()).toMatchObject({ phoneRegion: 'FR' });
    expect(await settingsEvents(s.tenantId)).toHaveLength(1);
  });

  it('lets only owners and admins change the region', async () => {
    const s = await ctx.tenant();
    const agent = await ctx.user(s, 'agent');
    expectCode(await settings(agent, { phoneRegion: 'US' }), 403, 'policy.forbidden');
    const admin = await ctx.user(s, 'admin');
    await setRegion(admin, 'US');
  });

  it('imports national numbers in the tenant region', async () => {
    const s = await ctx.tenant();
    await setRegion(s, 'US');
    const res = await ctx.app.inject({
      method: 'POST',
      url: '/api/v1/contacts/import',
      headers: { ...s.headers, 'content-type': 'text/csv' },
      payload: 'first_name,email,phone\nAda,ada@example.com,(415) 555-2671\n',
    });
    expect(res.statusCode, res.body).toBe(200);
    const [id] = await byPhone(s, '+14155552671');
    expect(id).toBeDefined();
    // A merge rewrites the phone: indexed in the region too.
    const merge = await ctx.app.inject({
      method: 'POST',
      url: '/api/v1/contacts/import?onDuplicate=merge',
      headers: { ...s.headers, 'content-type': 'text/csv' },
      payload: 'first_name,email,phone\nAda,ada@example.com,(212) 555-0100\n',
    });
    expect(merge.statusCode, merge.body).toBe(200);
    expect(await byPhone(s, '(212) 555-0100')).toEqual([id]);
    expect(await byPhone(s, '+14155552671')).toEqual([]);
  });

  it('keeps every index current when contacts are written while the region changes', async () => {
    const s = await ctx.tenant();
    const numbers = Array.from({ length: 24 }, (_, i) => `(415) 555-${String(2600 + i)}`);
    const writes = numbers.map((phone) => createContact(s, { phone }));
    await new Promise((resolve) => setTimeout(resolve, 5));
    const change = setRegion(s, 'US');
    const ids = await Promise.all(writes);
    await change;
    for (const [i, phone] of numbers.entries()) {
      expect(await byPhone(s, phone), phone).toEqual([ids[i]]);
    }
  });

  it('makes a region change wait for a transaction that read the region to write an index', async () => {
    const s = await ctx.tenant();
    const db = ctx.appDatabase.db;
    let changed = false;
    let release!: () => void;
    const held = new Promise<void>((resolve) => (release = resolve));
    let change: Promise<void> | undefined;
    await runInTenant(s.tenantId, () =>
      db.transaction().execute(async (trx) => {
        expect(await readPhoneRegion(trx, s.tenantId)).toBeNull();
        change = setRegion(s, 'US').then(() => void (changed = true));
        setTimeout(release, 300);
        await held;
        expect(changed).toBe(false);
      }),
    );
    await change;
    expect(changed).toBe(true);
  });
});

describe('phone region at tenant setup', () => {
  it('sets the region given at setup, and refuses an unknown one', async () => {
    const slug = `region-${process.pid}`;
    await setupTenant(
      { db: ctx.database.handle.db, clock: ctx.clock, users: ctx.services.userCrypto },
      {
        slug,
        name: 'Region',
        ownerEmail: `owner@${slug}.example`,
        ownerName: 'Owner',
        password: PASSWORD,
        phoneRegion: 'DE',
      },
    );
    const s = await ctx.login(slug, `owner@${slug}.example`);
    expect((await settings(s)).json()).toMatchObject({ phoneRegion: 'DE' });
    const id = await createContact(s, { phone: '0171 1234567' });
    expect(await byPhone(s, '+491711234567')).toEqual([id]);

    await expect(
      setupTenant(
        { db: ctx.database.handle.db, clock: ctx.clock, users: ctx.services.userCrypto },
        {
          slug: `${slug}-bad`,
          name: 'Region',
          ownerEmail: `owner@${slug}-bad.example`,
          ownerName: 'Owner',
          password: PASSWORD,
          phoneRegion: 'ZZ',
        },
      ),
    ).rejects.toMatchObject({ code: 'request.invalid', kind: 'invalid' });
  });
});
