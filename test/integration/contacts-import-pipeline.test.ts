import { Readable } from 'node:stream';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { Actor } from '../../src/core/policy/index.ts';
import { importContacts, type ImportOptions } from '../../src/modules/contacts/import.ts';
import type { SealThread } from '../../src/modules/contacts/import-sealer.ts';
import {
  createTestContext,
  tenantSettings,
  type Session,
  type TestContext,
} from '../helpers/context.ts';

/**
 * A large import seals batch N (on its crypto thread) while it writes batch N-1 and reads batch
 * N+1: a row whose e-mail belongs to a row already handed to the sealer can no longer be folded
 * into it. These tests run small batches through that path, on the thread and inline, and
 * compare the outcome with a one-batch import of the same file.
 */

let ctx: TestContext;

beforeAll(async () => {
  ctx = await createTestContext();
});
afterAll(async () => ctx?.close());

function run(
  s: Session,
  csv: string,
  options: ImportOptions,
  tuning: {
    batchRows: number;
    sealThread: SealThread;
    /** In place of the contacts service's own. */
    crypto?: TestContext['services']['contacts']['crypto'];
  },
) {
  const actor: Actor = {
    kind: 'system',
    tenantId: s.tenantId,
    job: 'cli',
    role: 'owner',
    request: { requestId: 'pipeline', ip: null, userAgent: 'custos-cli' },
  };
  const deps = {
    db: ctx.database.handle.db,
    clock: ctx.clock,
    keys: ctx.services.keys,
    crypto: ctx.services.contacts.crypto,
    audit: ctx.services.auditLog,
    ...tuning,
  };
  return importContacts(deps, actor, Readable.from([Buffer.from(csv)]), options);
}

/** Every contact of the tenant as the API shows it (decrypted), without ids and versions. */
async function contacts(s: Session) {
  const res = await ctx.app.inject({ url: '/api/v1/contacts?limit=200', headers: s.headers });
  expect(res.statusCode, res.body).toBe(200);
  const items = res.json<{ items: Record<string, unknown>[] }>().items;
  return items
    .map((c) => ({
      firstName: c.firstName,
      email: c.email,
      phone: c.phone,
      title: c.title,
      notes: c.notes,
      company: c.companyId === null ? null : 'set',
    }))
    .sort((a, b) => String(a.email).localeCompare(String(b.email)));
}

// Ada comes back in every later batch of three rows; the other rows are new people.
const CSV = [
  'first_name,email,phone,title,notes,company',
  'Ada,ada@example.com,+1 415 555 0100,,,',
  'Bob,bob@example.com,,,,Acme',
  'Cy,cy@example.com,+44 20 7946 0958,,,',
  'Di,di@example.com,,,,',
  'Ada,ADA@example.com,,Countess,"met twice, ""really""",',
  'Ed,ed@example.com,,,,',
  'Fay,fay@example.com,,,,',
  'Ada,ada@example.com,+1 415 555 2672,,,Acme',
  'Gus,gus@example.com,,,,',
  'Bob,bob@example.com,+1 415 555 2671,,,',
  'Hal,hal@example.com,,,,',
].join('\n');

describe('pipelined import', () => {
  for (const [mode, sealThread] of [
    ['best-effort', 'always'],
    ['best-effort', 'never'],
    ['all-or-nothing', 'always'],
  ] as const) {
    it(`merges later rows into a contact sealed in an earlier batch (${mode}, ${sealThread} thread)`, async () => {
      const one = await ctx.tenant();
      const many = await ctx.tenant();
      const options: ImportOptions = { mode, onDuplicate: 'merge' };
      const whole = await run(one, CSV, options, { batchRows: 1000, sealThread });
      const piped = await run(many, CSV, options, { batchRows: 3, sealThread });
      expect(whole).toMatchObject({ total: 11, created: 8, updated: 3, skipped: 0, failed: 0 });
      expect(piped).toEqual(whole);
      const expected = await contacts(one);
      expect(expected.find((c) => c.email === 'ada@example.com')).toEqual({
        firstName: 'Ada',
        email: 'ada@example.com',
        phone: '+1 415 555 2672',
        title: 'Countess',
        notes: 'met twice, "really"',
        company: 'set',
      });
      expect(await contacts(many)).toEqual(expected);
      // Found by their blind indexes, as contacts the API created: the merged phone numbers.
      for (const [phone, email] of [
        ['+14155552671', 'bob@example.com'],
        ['+14155552672', 'ada@example.com'],
        ['+442079460958', 'cy@example.com'],
      ] as const) {
        const found = await ctx.app.inject({
          url: `/api/v1/contacts?phone=${encodeURIComponent(phone)}`,
          headers: many.headers,
        });
        const items = found.json<{ items: { email: string }[] }>().items;
        expect(items.map((c) => c.email)).toEqual([email]);
      }
    });
  }

  it('skips later rows in skip mode, whatever batch they fall in', async () => {
    const s = await ctx.tenant();
    const report = await run(
      s,
      CSV,
      { mode: 'all-or-nothing' },
      { batchRows: 2, sealThread: 'always' },
    );
    expect(report).toMatchObject({ created: 8, updated: 0, skipped: 3, failed: 0 });
    const ada = (await contacts(s)).find((c) => c.email === 'ada@example.com');
    expect(ada).toMatchObject({ title: null, notes: null, company: null });
  });

  /** National numbers (in the US) of eight people, and the E.164 numbers they index as. */
  const NATIONAL = Array.from({ length: 8 }, (_, i) => ({
    email: `p${i}@example.com`,
    national: `(415) 555-${String(2600 + i)}`,
    e164: `+1415555${String(2600 + i)}`,
  }));
  const NATIONAL_CSV = [
    'first_name,email,phone',
    ...NATIONAL.map((p, i) => `P${i},${p.email},${p.national}`),
  ].join('\n');

  async function setRegion(s: Session, phoneRegion: string) {
    const res = await tenantSettings(ctx, s, { phoneRegion });
    expect(res.statusCode, res.body).toBe(200);
  }

  /** The e-mails of the contacts the phone filter finds for `phone`. */
  async function byPhone(s: Session, phone: string) {
    const res = await ctx.app.inject({
      url: `/api/v1/contacts?phone=${encodeURIComponent(phone)}`,
      headers: s.headers,
    });
    expect(res.statusCode, res.body).toBe(200);
    return res.json<{ items: { email: string }[] }>().items.map((c) => c.email);
  }

  for (const mode of ['best-effort', 'all-or-nothing'] as const) {
    it(`indexes national phone numbers in the tenant's region on the crypto thread (${mode})`, async () => {
      const s = await ctx.tenant();
      await setRegion(s, 'US');
      const report = await run(s, NATIONAL_CSV, { mode }, { batchRows: 3, sealThread: 'always' });
      expect(report).toMatchObject({ created: 8, failed: 0 });
      for (const p of NATIONAL) expect(await byPhone(s, p.e164), p.e164).toEqual([p.email]);
    });
  }

  it('indexes the phones again in the write when the region changed after the batches were sealed', async () => {
    const s = await ctx.tenant();
    await setRegion(s, 'US');
    const crypto = ctx.services.contacts.crypto;
    let before = 0;
    // The batches are sealed with no region (what a reading before a change to US saw); each
    // write reads US in its transaction, and must not store the sealed (null) phone index.
    const stale: typeof crypto = {
      ...crypto,
      async indexKeys(tenantId, conn, values) {
        const indexing = await crypto.indexKeys(tenantId, conn, values);
        if (conn?.isTransaction === true || indexing.context === undefined) return indexing;
        before++;
        return { ...indexing, context: { phoneRegion: null } };
      },
    };
    const report = await run(
      s,
      NATIONAL_CSV,
      { mode: 'best-effort' },
      { batchRows: 3, sealThread: 'always', crypto: stale },
    );
    expect(report).toMatchObject({ created: 8, failed: 0 });
    expect(before).toBe(1);
    for (const p of NATIONAL) expect(await byPhone(s, p.e164), p.e164).toEqual([p.email]);
  });

  it('creates the contact from a later row when the row sealed before it failed', async () => {
    const s = await ctx.tenant();
    const csv = [
      'first_name,email,title,company',
      'Ada,ada@example.com,First,No Such Company',
      'Bob,bob@example.com,,',
      'Cy,cy@example.com,,',
      'Ada,ada@example.com,Second,',
      'Ada,ada@example.com,,',
      'Di,di@example.com,,',
      'Ada,ada@example.com,Third,',
    ].join('\n');
    const report = await run(
      s,
      csv,
      { mode: 'best-effort', onDuplicate: 'merge', companies: 'match' },
      { batchRows: 2, sealThread: 'always' },
    );
    expect(report).toMatchObject({ total: 7, created: 4, updated: 2, failed: 1 });
    expect(report.errors).toEqual([expect.objectContaining({ row: 2, field: 'company' })]);
    const ada = (await contacts(s)).filter((c) => c.email === 'ada@example.com');
    expect(ada).toEqual([expect.objectContaining({ firstName: 'Ada', title: 'Third' })]);
  });
});
