import fs from 'node:fs';
import path from 'node:path';
import { Readable } from 'node:stream';
import { fileURLToPath } from 'node:url';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createTestContext, type Session, type TestContext } from '../helpers/context.ts';

const fixtures = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../fixtures');

let ctx: TestContext;
let owner: Session;

beforeAll(async () => {
  ctx = await createTestContext({ CUSTOS_IMPORT_LIMIT: String(2 * 1024 * 1024) });
  owner = await ctx.tenant();
});
afterAll(async () => ctx?.close());

const importCsv = (s: Session, csv: string | Buffer, query = '') =>
  ctx.app.inject({
    method: 'POST',
    url: `/api/v1/contacts/import${query}`,
    headers: { ...s.headers, 'content-type': 'text/csv' },
    payload: csv,
  });

async function contacts(s: Session) {
  const all: Record<string, unknown>[] = [];
  let cursor: string | null = null;
  do {
    const url: string = `/api/v1/contacts?limit=200${cursor ? `&cursor=${cursor}` : ''}`;
    const page = (await ctx.app.inject({ url, headers: s.headers })).json();
    all.push(...page.items);
    cursor = page.nextCursor;
  } while (cursor);
  return all;
}

describe('contact import', () => {
  it('imports the 500 atomic-crm sample contacts with their e-mail, phone and company', async () => {
    const s = await ctx.tenant();
    const csv = fs.readFileSync(path.join(fixtures, 'atomic-crm/contacts.csv'));
    const res = await importCsv(s, csv);
    expect(res.statusCode).toBe(200);
    const report = res.json();
    expect(report).toMatchObject({ total: 500, created: 500, failed: 0, committed: true });
    expect(report.companiesCreated).toBe(55);
    expect(report.ignoredColumns).toEqual(
      expect.arrayContaining(['id', 'gender', 'company_id', 'linkedin_url', 'sales']),
    );
    expect(report.ignoredColumns).not.toContain('email_work');
    const all = await contacts(s);
    expect(all).toHaveLength(500);
    const shelley = all.find((c) => c.email === 'Shelley_Kerluke47@hotmail.com');
    expect(shelley).toMatchObject({
      firstName: 'Shelley',
      lastName: 'Kerluke',
      title: 'Ubiquitous',
      phone: '1-955-371-0847 x371',
      notes: 'Eaque ipsa velit.',
    });
    const leah = all.find((c) => c.email === 'Leah93@yahoo.com');
    expect(leah).toMatchObject({ firstName: 'Leah', lastName: 'Boehm', phone: '(415) 293-3313' });
    const company = (
      await ctx.app.inject({
        url: `/api/v1/companies/${String(shelley!.companyId)}`,
        headers: s.headers,
      })
    ).json();
    expect(company.name).toBe('Gottlieb and Sons');
    expect(leah!.companyId).toBe(shelley!.companyId);
  });

  it('skips or merges rows whose e-mail exists, in the tenant or earlier in the file', async () => {
    const s = await ctx.tenant();
    const made = await ctx.app.inject({
      method: 'POST',
      url: '/api/v1/contacts',
      headers: s.headers,
      payload: { firstName: 'Old', lastName: 'Name', email: 'dup@example.com', title: 'Keep' },
    });
    const id = made.json().id;
    const csv =
      'First Name,Email,Phone\nNew,DUP@example.com,+1 415 555 2671\nA,a@x.example,\nA2,a@x.example,+44 20 7946 0958\n';
    const skip = (await importCsv(s, csv, '?mode=best-effort&onDuplicate=skip')).json();
    expect(skip).toMatchObject({ total: 3, created: 1, skipped: 2, updated: 0, failed: 0 });
    const kept = (
      await ctx.app.inject({ url: `/api/v1/contacts/${id}`, headers: s.headers })
    ).json();
    expect(kept).toMatchObject({ firstName: 'Old', version: 1, phone: null });

    const merge = (await importCsv(s, csv, '?mode=best-effort&onDuplicate=merge')).json();
    expect(merge).toMatchObject({ total: 3, created: 0, updated: 3, skipped: 0, failed: 0 });
    const merged = (
      await ctx.app.inject({ url: `/api/v1/contacts/${id}`, headers: s.headers })
    ).json();
    // Non-empty CSV values overwrite; fields the CSV lacks stay.
    expect(merged).toMatchObject({
      firstName: 'New',
      lastName: 'Name',
      title: 'Keep',
      email: 'DUP@example.com',
      phone: '+1 415 555 2671',
      version: 2,
    });
    const byPhone = await ctx.app.inject({
      url: `/api/v1/contacts?phone=${encodeURIComponent('+14155552671')}`,
      headers: s.headers,
    });
    expect(byPhone.json().items.map((c: { id: string }) => c.id)).toEqual([id]);
    const a = (await contacts(s)).filter((c) => c.email === 'a@x.example');
    expect(a).toHaveLength(1);
    expect(a[0]).toMatchObject({ firstName: 'A2', phone: '+44 20 7946 0958' });
  });

  it('creates nothing in all-or-nothing mode when one row is bad, and names the row', async () => {
    const s = await ctx.tenant();
    const csv =
      'first_name,email,date_of_birth\nAda,ada@x.example,1815-12-10\nBad,not-an-email,\nCy,cy@x.example,10/12/1815\n';
    const res = await importCsv(s, csv);
    expect(res.statusCode).toBe(400);
    const problem = res.json();
    expect(problem.code).toBe('import.rejected');
    expect(problem.errors).toEqual([
      { field: 'row/3/email', reason: 'is not a valid e-mail address' },
      { field: 'row/4/date_of_birth', reason: 'is not a date in the form YYYY-MM-DD' },
    ]);
    expect(JSON.stringify(problem)).not.toContain('not-an-email');
    expect(await contacts(s)).toEqual([]);
  });

  it('commits the good rows in best-effort mode and reports spreadsheet row numbers', async () => {
    const s = await ctx.tenant();
    const csv = [
      'first_name,email,notes',
      'Ada,ada@x.example,"two',
      'lines"',
      '',
      'Nul,nul@x.example,bad\u0000value',
      'Bob,bob@x.example,fine',
      'Extra,extra@x.example,x,surplus',
    ].join('\r\n');
    const res = await importCsv(s, csv, '?mode=best-effort');
    expect(res.statusCode).toBe(200);
    const report = res.json();
    expect(report).toMatchObject({ total: 4, created: 2, failed: 2, committed: true });
    expect(report.errors).toEqual([
      {
        row: 4,
        field: 'notes',
        reason: 'contains characters that are not accepted (NUL or unpaired surrogates)',
      },
      { row: 6, field: null, reason: 'has 4 values but the header names 3 columns' },
    ]);
    const names = (await contacts(s)).map((c) => c.firstName).sort();
    expect(names).toEqual(['Ada', 'Bob']);
    expect((await contacts(s)).find((c) => c.firstName === 'Ada')!.notes).toBe('two\r\nlines');
  });

  it('follows an explicit mapping and fails rows naming unknown companies with companies=match', async () => {
    const s = await ctx.tenant();
    const mapping = encodeURIComponent(JSON.stringify({ Col1: 'lastName', Org: 'company' }));
    const csv = 'Col1,Org,Mail\nLovelace,Nowhere Ltd,ada@x.example\nHopper,,grace@x.example\n';
    const report = (
      await importCsv(s, csv, `?mode=best-effort&companies=match&mapping=${mapping}`)
    ).json();
    expect(report).toMatchObject({ created: 1, failed: 1, companiesCreated: 0 });
    expect(report.errors[0]).toMatchObject({ row: 2, field: 'Org' });
    expect((await contacts(s))[0]).toMatchObject({ lastName: 'Hopper', email: 'grace@x.example' });
    const bad = await importCsv(s, csv, `?mapping=${encodeURIComponent('{"Col1":"tenantId"}')}`);
    expect(bad.statusCode).toBe(400);
    expect(bad.json().code).toBe('import.invalid_mapping');
  });

  it("never touches another tenant's contacts with the same e-mail", async () => {
    const a = await ctx.tenant();
    const b = await ctx.tenant();
    const theirs = (
      await ctx.app.inject({
        method: 'POST',
        url: '/api/v1/contacts',
        headers: b.headers,
        payload: { firstName: 'Theirs', email: 'shared@x.example' },
      })
    ).json();
    const report = (
      await importCsv(a, 'first_name,email\nMine,shared@x.example\n', '?onDuplicate=merge')
    ).json();
    expect(report).toMatchObject({ created: 1, updated: 0 });
    const after = (
      await ctx.app.inject({ url: `/api/v1/contacts/${theirs.id}`, headers: b.headers })
    ).json();
    expect(after).toMatchObject({ firstName: 'Theirs', version: 1 });
    expect(await contacts(b)).toHaveLength(1);
  });

  it('refuses viewers (403), non-CSV bodies (415), Latin-1 files and empty headers (400)', async () => {
    const viewer = await ctx.user(owner, 'viewer');
    const denied = await importCsv(viewer, 'first_name\nX\n');
    expect(denied.statusCode).toBe(403);
    expect(denied.json().code).toBe('policy.forbidden');

    const json = await ctx.app.inject({
      method: 'POST',
      url: '/api/v1/contacts/import',
      headers: owner.headers,
      payload: { firstName: 'X' },
    });
    expect(json.statusCode).toBe(415);

    const latin = fs.readFileSync(path.join(fixtures, 'csv-parser-suites/mafintosh/latin.csv'));
    const enc = await importCsv(owner, latin);
    expect(enc.statusCode).toBe(400);
    expect(enc.json().code).toBe('import.unsupported_encoding');

    const header = await importCsv(owner, 'foo,bar\n1,2\n');
    expect(header.json().code).toBe('import.invalid_header');
    expect((await importCsv(owner, '')).json().code).toBe('import.invalid_header');
  });

  it('imports UTF-16 files with a byte order mark', async () => {
    const s = await ctx.tenant();
    const text = '\uFEFFfirst_name,email\nZoë,zoe@x.example\n';
    const res = await importCsv(s, Buffer.from(text, 'utf16le'));
    expect(res.json()).toMatchObject({ created: 1 });
    expect((await contacts(s))[0]).toMatchObject({ firstName: 'Zoë' });
  });

  it('answers 413 over the import limit, declared or streamed, and writes nothing', async () => {
    const s = await ctx.tenant();
    const big = `first_name,email\n${Array.from({ length: 120_000 }, (_, i) => `N${i},n${i}@x.example`).join('\n')}\n`;
    expect(big.length).toBeGreaterThan(2 * 1024 * 1024);
    const declared = await importCsv(s, big, '?mode=best-effort');
    expect(declared.statusCode).toBe(413);
    expect(declared.json().code).toBe('request.too_large');

    const streamed = await ctx.app.inject({
      method: 'POST',
      url: '/api/v1/contacts/import',
      headers: { ...s.headers, 'content-type': 'text/csv' },
      payload: Readable.from([Buffer.from(big)]),
    });
    expect(streamed.statusCode).toBe(413);
    expect(streamed.json().code).toBe('request.too_large');
    expect(await contacts(s)).toEqual([]);
  });
});
