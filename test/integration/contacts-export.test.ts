import fs from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { parse } from 'csv-parse/sync';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { runCli } from '../../src/cli/main.ts';
import { createTestContext, type Session, type TestContext } from '../helpers/context.ts';

const fixtures = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../fixtures');

let ctx: TestContext;

beforeAll(async () => {
  ctx = await createTestContext();
});
afterAll(async () => ctx?.close());

const create = (s: Session, payload: object) =>
  ctx.app.inject({ method: 'POST', url: '/api/v1/contacts', headers: s.headers, payload });

const exportCsv = (s: Session) =>
  ctx.app.inject({ url: '/api/v1/contacts/export', headers: s.headers });

const cells = (csv: string): string[][] => parse(csv.replace(/^\uFEFF/, ''), { bom: false });

/** Would Excel, LibreOffice or Sheets evaluate this cell as a formula? */
const evaluated = (cell: string) => /^\s*[=+\-@]/.test(cell) || /^[\t\r]/.test(cell);

describe('contact export', () => {
  it('neutralises every csv-injection payload so no cell is evaluated', async () => {
    const s = await ctx.tenant();
    const payloads = fs
      .readFileSync(path.join(fixtures, 'csv-injection/csv-payload.txt'), 'utf8')
      .split('\n')
      .filter((l) => l.trim() !== '');
    expect(payloads.length).toBeGreaterThan(3);
    const extra = ['+1 415 555 2671', '-2+3', '@SUM(A1:A2)', '\t=1+1', '\r=1+1', ' =1+1'];
    for (const p of [...payloads, ...extra]) {
      const res = await create(s, { firstName: p.slice(0, 200), notes: p, title: p.slice(0, 200) });
      expect(res.statusCode).toBe(201);
    }
    const res = await exportCsv(s);
    expect(res.statusCode).toBe(200);
    expect(res.headers['content-type']).toBe('text/csv; charset=utf-8');
    const rows = cells(res.body);
    expect(rows).toHaveLength(payloads.length + extra.length + 1);
    const all = rows.flat();
    expect(all.filter(evaluated)).toEqual([]);
    // The dangerous ones are present, escaped, not dropped.
    expect(all).toContain("'=10+20+cmd|' /C calc'!A0");
    expect(all).toContain("'+1 415 555 2671");
  });

  it('round-trips normal data through export and import into another tenant without loss', async () => {
    const a = await ctx.tenant();
    const company = (
      await ctx.app.inject({
        method: 'POST',
        url: '/api/v1/companies',
        headers: a.headers,
        payload: { name: 'Analytical Engines, Ltd' },
      })
    ).json();
    const people = [
      {
        firstName: 'Ada',
        lastName: 'Lovelace',
        email: 'ada@engines.example',
        phone: '+44 20 7946 0958',
        title: 'Analyst',
        companyId: company.id,
        dateOfBirth: '1815-12-10',
        nationalId: 'QQ 12 34 56 C',
        address: "12 St James's Square, London",
        notes: 'Said: "the engine weaves algebraic patterns",\nsecond line; -1 debt @ 0%',
      },
      {
        firstName: 'Zoë',
        lastName: 'Ñúñez 山田',
        email: 'zoe@x.example',
        phone: '-',
        notes: '=cmd',
      },
      { firstName: 'Only' },
    ];
    for (const p of people) expect((await create(a, p)).statusCode).toBe(201);
    const exported = await exportCsv(a);

    const b = await ctx.tenant();
    const imported = await ctx.app.inject({
      method: 'POST',
      url: '/api/v1/contacts/import',
      headers: { ...b.headers, 'content-type': 'text/csv; charset=utf-8' },
      payload: exported.rawPayload,
    });
    expect(imported.json()).toMatchObject({ created: 3, failed: 0, companiesCreated: 1 });
    expect(imported.json().ignoredColumns).toEqual(['id', 'ownerId', 'createdAt', 'updatedAt']);

    const again = cells((await exportCsv(b)).body);
    const before = cells(exported.body);
    const fieldsOnly = (rows: string[][]) => {
      const header = rows[0]!;
      const keep = header.map((h, i) =>
        ['id', 'ownerId', 'createdAt', 'updatedAt'].includes(h) ? -1 : i,
      );
      return rows
        .map((r) => keep.filter((i) => i >= 0).map((i) => r[i]))
        .sort((x, y) => String(x[0]).localeCompare(String(y[0])));
    };
    expect(fieldsOnly(again)).toEqual(fieldsOnly(before));
    const list = (await ctx.app.inject({ url: '/api/v1/contacts', headers: b.headers })).json();
    const ada = list.items.find((c: { firstName: string }) => c.firstName === 'Ada');
    const adaFields = { ...people[0]! } as Record<string, unknown>;
    delete adaFields.companyId;
    expect(ada).toMatchObject(adaFields);
  });

  it('exports only the caller tenant, pages through large tenants, and refuses viewers', async () => {
    const s = await ctx.tenant();
    const other = await ctx.tenant();
    await create(other, { firstName: 'Secret', email: 'secret@other.example' });
    const csv = `first_name,email\n${Array.from({ length: 1205 }, (_, i) => `P${i},p${i}@x.example`).join('\n')}\n`;
    const res = await ctx.app.inject({
      method: 'POST',
      url: '/api/v1/contacts/import',
      headers: { ...s.headers, 'content-type': 'text/csv' },
      payload: csv,
    });
    expect(res.json().created).toBe(1205);
    const body = (await exportCsv(s)).body;
    expect(cells(body)).toHaveLength(1206);
    expect(new Set(cells(body).map((r) => r[0])).size).toBe(1206);
    expect(body).not.toContain('secret@other.example');

    const viewer = await ctx.user(s, 'viewer');
    const denied = await exportCsv(viewer);
    expect(denied.statusCode).toBe(403);
    expect(denied.json().code).toBe('policy.forbidden');
  });
});

describe('custos import/export contacts (CLI)', () => {
  it('imports a file as a system actor and exports it to a private file', async () => {
    const s = await ctx.tenant();
    const file = path.join(ctx.database.dataDir, 'in.csv');
    fs.writeFileSync(file, 'First Name,E-mail\nCli,cli@x.example\nBad,nope\n');
    const previous = process.env.CUSTOS_DATA_DIR;
    const previousUrl = process.env.CUSTOS_DATABASE_URL;
    process.env.CUSTOS_DATA_DIR = ctx.database.dataDir;
    // On PostgreSQL the CLI reaches the same database and its key store (schema custos_keys).
    if (ctx.database.url !== undefined) process.env.CUSTOS_DATABASE_URL = ctx.database.url;
    const lines: string[] = [];
    try {
      const refused = await runCli(['import', 'contacts', file, '--tenant', s.tenant], (l) =>
        lines.push(l),
      );
      expect(refused).toBe(1);
      expect(lines.join('\n')).toContain('row 3 (E-mail): is not a valid e-mail address');
      const ok = await runCli(
        ['import', 'contacts', file, '--tenant', s.tenant, '--mode', 'best-effort'],
        (l) => lines.push(l),
      );
      expect(ok).toBe(0);
      expect(lines.join('\n')).toContain('1 created');
      const out = path.join(ctx.database.dataDir, 'out.csv');
      expect(
        await runCli(['export', 'contacts', '--tenant', s.tenant, '--out', out], () => {}),
      ).toBe(0);
      expect(fs.statSync(out).mode & 0o777).toBe(0o600);
      expect(fs.readFileSync(out, 'utf8')).toContain('cli@x.example');
    } finally {
      if (previous === undefined) delete process.env.CUSTOS_DATA_DIR;
      else process.env.CUSTOS_DATA_DIR = previous;
      if (previousUrl === undefined) delete process.env.CUSTOS_DATABASE_URL;
      else process.env.CUSTOS_DATABASE_URL = previousUrl;
    }
    const list = (await ctx.app.inject({ url: '/api/v1/contacts', headers: s.headers })).json();
    expect(list.items.map((c: { email: string }) => c.email)).toEqual(['cli@x.example']);
    expect(list.items[0].ownerId).toBeNull();
  });
});
