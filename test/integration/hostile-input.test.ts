import fs from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import type { LightMyRequestResponse } from 'fastify';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createTestContext, type Session, type TestContext } from '../helpers/context.ts';

const fixtures = path.join(path.dirname(fileURLToPath(import.meta.url)), '..', 'fixtures');
const BLNS = JSON.parse(
  fs.readFileSync(path.join(fixtures, 'blns', 'blns.from-txt.json'), 'utf8'),
) as string[];

function lines(file: string): string[] {
  return fs
    .readFileSync(path.join(fixtures, file), 'utf8')
    .split(/\r?\n/)
    .filter((l) => l.trim() !== '');
}
const SQL_FILES = [
  'fuzzdb/sql-injection/detect/GenericBlind.txt',
  'fuzzdb/sql-injection/detect/MSSQL.txt',
  'fuzzdb/sql-injection/detect/MySQL.txt',
  'fuzzdb/sql-injection/detect/MySQL_MSSQL.txt',
  'fuzzdb/sql-injection/detect/xplatform.txt',
  'fuzzdb/sql-injection/exploit/mysql-injection-login-bypass.txt',
  'seclists/NoSQL.txt',
];
const INJECTIONS = [...new Set(SQL_FILES.flatMap(lines))];

/** NUL or a UTF-16 surrogate without its partner: what the Text pattern refuses. */
// eslint-disable-next-line no-control-regex -- NUL is exactly what this finds
const UNSTORABLE = /\u0000|[\uD800-\uDBFF](?![\uDC00-\uDFFF])|(?<![\uD800-\uDBFF])[\uDC00-\uDFFF]/;

/** Driver, SQL and stack text that must never reach a client. */
const LEAKS =
  /SQLITE_|sqlite|postgres|kysely|syntax error|unrecognized token|near "|relation "|column "|tenant_id|email_normalized|\bat .+:\d+:\d+/i;

let ctx: TestContext;
let owner: Session;
let other: Session;
/** The tenant the injection probes run as; it holds only the rows seeded below. */
let probe: Session;
const ownContacts = new Set<string>();
const theirIds: string[] = [];
const SECRET = 'OTHER-TENANT-SECRET';

beforeAll(async () => {
  ctx = await createTestContext();
  owner = await ctx.tenant();
  other = await ctx.tenant();
  probe = await ctx.tenant();
  for (const [s, payload] of [
    [probe, { firstName: 'Mine', email: 'mine@own.example', phone: '+14155550100' }],
    [probe, { firstName: 'Mine too', email: 'admin@own.example', phone: '1' }],
    [other, { firstName: SECRET, email: 'secret@other.example', phone: '+14155550199' }],
    [other, { firstName: SECRET, email: 'admin@other.example', phone: '1' }],
  ] as const) {
    const res = await ctx.app.inject({
      method: 'POST',
      url: '/api/v1/contacts',
      headers: s.headers,
      payload,
    });
    expect(res.statusCode).toBe(201);
    if (s === probe) ownContacts.add(res.json().id);
    else theirIds.push(res.json().id);
  }
});
afterAll(async () => ctx?.close());

const post = (url: string, payload: unknown, s = owner) =>
  ctx.app.inject({ method: 'POST', url, headers: s.headers, payload: payload as object });

function expectNotFromElsewhere(res: LightMyRequestResponse) {
  expect(res.statusCode, res.body).toBeLessThan(500);
  expect(res.body).not.toMatch(LEAKS);
  expect(res.body).not.toContain(SECRET);
  for (const id of theirIds) expect(res.body).not.toContain(id);
}

describe('Big List of Naughty Strings in text fields', () => {
  it('has the 517 strings of the corpus, none with NUL or unpaired surrogates', () => {
    expect(BLNS).toHaveLength(517);
    expect(BLNS.filter((s) => UNSTORABLE.test(s))).toEqual([]);
  });

  it('round-trips every string through a contact exactly, or refuses it for its length only', async () => {
    const refused: { index: number; fields: string[] }[] = [];
    for (const [index, s] of BLNS.entries()) {
      const fields = { firstName: s, title: s, address: s, notes: s };
      const res = await post('/api/v1/contacts', fields);
      expect(res.statusCode, `#${index} ${JSON.stringify(s)}: ${res.body}`).not.toBe(500);
      if (res.statusCode !== 201) {
        expect(res.statusCode).toBe(400);
        expect(res.json().code).toBe('request.invalid');
        const errors = res.json<{ errors: { field: string; reason: string }[] }>().errors;
        const fields = [...new Set(errors.map((e) => e.field))].sort();
        refused.push({ index, fields });
        // Refused for its length in each field, never for its characters.
        for (const field of fields) {
          expect(errors).toContainEqual({
            field,
            reason: 'must NOT have more than 200 characters',
          });
        }
        expect(errors.some((e) => /not accepted/.test(e.reason))).toBe(false);
        // The fields that allow more take it.
        const retry = await post('/api/v1/contacts', { address: s, notes: s });
        expect(retry.statusCode).toBe(201);
        expect(retry.json()).toMatchObject({ address: s, notes: s });
        continue;
      }
      const id = res.json<{ id: string }>().id;
      const got = await ctx.app.inject({ url: `/api/v1/contacts/${id}`, headers: owner.headers });
      expect(got.statusCode).toBe(200);
      const back = got.json<Record<string, string>>();
      for (const field of Object.keys(fields)) {
        expect(back[field], `#${index} ${field}`).toBe(s);
        expect(Buffer.from(back[field]!, 'utf8').equals(Buffer.from(s, 'utf8'))).toBe(true);
      }
      const row = await ctx.database.handle.db
        .selectFrom('contacts')
        .select(['id', 'first_name', 'address', 'notes', 'title'])
        .where('id', '=', id)
        .executeTakeFirstOrThrow();
      // An internal field is stored as sent; personal ones as one record group of envelopes
      // that opens to them (all of the group's values are needed).
      expect(row.title).toBe(s);
      expect(row.first_name?.startsWith('cv2.')).toBe(true);
      const [opened] = await ctx.services.contacts.crypto.open(owner.tenantId, [row]);
      expect(opened?.first_name).toBe(s);
    }
    // Exactly the strings longer than the 200 characters firstName and title allow (counted in
    // code points, as JSON Schema does: #97 is 200 code points but more UTF-16 units).
    const long = BLNS.flatMap((s, i) => ([...s].length > 200 ? [i] : []));
    expect(long).toEqual([114, 180, 182, 409, 507]);
    expect(refused.map((r) => r.index)).toEqual(long);
    for (const r of refused) expect(r.fields).toEqual(['body/firstName', 'body/title']);
  });

  it('round-trips every string as a company name exactly, refusing only the empty one', async () => {
    const refused: number[] = [];
    for (const [index, s] of BLNS.entries()) {
      const res = await post('/api/v1/companies', { name: s });
      expect(res.statusCode, `#${index} ${res.body}`).not.toBe(500);
      if (res.statusCode !== 201) {
        expect(res.statusCode).toBe(400);
        expect(res.json().code).toBe('request.invalid');
        refused.push(index);
        continue;
      }
      const got = await ctx.app.inject({
        url: `/api/v1/companies/${res.json().id}`,
        headers: owner.headers,
      });
      expect(got.json<{ name: string }>().name, `#${index}`).toBe(s);
    }
    expect(refused.map((i) => BLNS[i])).toEqual(['']);
  });

  it('refuses NUL and unpaired surrogates in every text field with 400 request.invalid', async () => {
    const unstorable = ['\u0000', 'a\u0000b', '\uD800', 'x\uDC00', 'end\uD83D', '\uDE00start'];
    for (const s of unstorable) expect(UNSTORABLE.test(s)).toBe(true);
    for (const s of unstorable) {
      for (const [url, field] of [
        ['/api/v1/contacts', 'firstName'],
        ['/api/v1/contacts', 'notes'],
        ['/api/v1/contacts', 'title'],
        ['/api/v1/contacts', 'address'],
        ['/api/v1/companies', 'name'],
      ] as const) {
        const res = await post(url, { [field]: s });
        expect(res.statusCode, `${field} ${JSON.stringify(s)}`).toBe(400);
        expect(res.json().code).toBe('request.invalid');
        expect(res.json().errors).toContainEqual({
          field: `body/${field}`,
          reason:
            'contains characters that are not accepted (NUL or unpaired surrogates) or has the wrong form',
        });
      }
    }
    // A well-formed pair is ordinary text.
    const ok = await post('/api/v1/contacts', { firstName: '\uD83D\uDE00' });
    expect(ok.statusCode).toBe(201);
    expect(ok.json().firstName).toBe('😀');
  });
});

describe('SQL and NoSQL injection payloads in query strings and paths', () => {
  it(`has the payloads of the corpus (${INJECTIONS.length})`, () => {
    expect(INJECTIONS.length).toBeGreaterThan(250);
    expect(INJECTIONS).toContain("' or 1=1--");
    expect(INJECTIONS).toContain('{"$gt": ""}');
  });

  it('answers every payload as a filter value without a 500, leak or foreign row', async () => {
    const statuses = new Map<string, Set<number>>();
    for (const p of INJECTIONS) {
      const v = encodeURIComponent(p);
      for (const [name, url] of [
        ['email', `/api/v1/contacts?email=${v}`],
        ['phone', `/api/v1/contacts?phone=${v}`],
        ['companyId', `/api/v1/contacts?companyId=${v}`],
        ['ownerId', `/api/v1/contacts?ownerId=${v}`],
        ['sort', `/api/v1/contacts?sort=${v}`],
        ['cursor', `/api/v1/contacts?cursor=${v}`],
        ['limit', `/api/v1/contacts?limit=${v}`],
        ['createdAfter', `/api/v1/contacts?createdAfter=${v}`],
        ['domain', `/api/v1/companies?domain=${v}`],
        ['stage', `/api/v1/deals?stage=${v}`],
      ] as const) {
        const res = await ctx.app.inject({ url, headers: probe.headers });
        expectNotFromElsewhere(res);
        if (!statuses.has(name)) statuses.set(name, new Set());
        statuses.get(name)!.add(res.statusCode);
        if (res.statusCode === 200) {
          for (const item of res.json<{ items: { id: string }[] }>().items) {
            if (url.startsWith('/api/v1/contacts')) expect(ownContacts.has(item.id)).toBe(true);
          }
        } else {
          expect(res.statusCode, `${name}=${p}`).toBe(400);
          expect(['request.invalid', 'request.invalid_cursor']).toContain(res.json().code);
        }
      }
    }
    // Typed parameters refuse every payload; free-text filters answer with an empty list.
    for (const name of ['companyId', 'ownerId', 'sort', 'stage']) {
      expect([...statuses.get(name)!], name).toEqual([400]);
    }
    expect(statuses.get('email')!.has(200)).toBe(true);
  });

  it('finds nothing when a payload equals the normalised value of a row (parameters are bound)', async () => {
    // "admin@..." exists in both tenants; the classic bypass must not widen the match.
    for (const p of ["admin@own.example' --", "admin@own.example' or '1'='1", "' or 1=1--"]) {
      const res = await ctx.app.inject({
        url: `/api/v1/contacts?email=${encodeURIComponent(p)}`,
        headers: probe.headers,
      });
      expectNotFromElsewhere(res);
      expect(res.statusCode).toBe(200);
      expect(res.json().items).toEqual([]);
    }
  });

  it('answers every payload inside a well-formed cursor without a 500 or foreign row', async () => {
    const cursor = (value: unknown, id: unknown) =>
      Buffer.from(JSON.stringify(['createdAt', 'asc', value, id]), 'utf8').toString('base64url');
    const someId = [...ownContacts][0]!;
    for (const p of INJECTIONS) {
      for (const c of [cursor(p, someId), cursor('2000-01-01T00:00:00.000Z', p)]) {
        const res = await ctx.app.inject({
          url: `/api/v1/contacts?limit=200&cursor=${c}`,
          headers: probe.headers,
        });
        expectNotFromElsewhere(res);
        if (res.statusCode === 200) {
          for (const item of res.json<{ items: { id: string }[] }>().items) {
            expect(ownContacts.has(item.id)).toBe(true);
          }
        } else {
          expect(res.statusCode).toBe(400);
          expect(res.json().code).toBe('request.invalid_cursor');
        }
      }
    }
  });

  it('answers every payload as a path id with 400 or 404, never a 500', async () => {
    for (const p of INJECTIONS) {
      for (const resource of ['contacts', 'companies', 'deals', 'activities']) {
        for (const method of ['GET', 'DELETE'] as const) {
          const res = await ctx.app.inject({
            method,
            url: `/api/v1/${resource}/${encodeURIComponent(p)}`,
            headers: probe.headers,
          });
          expectNotFromElsewhere(res);
          expect([400, 404], `${method} ${resource}/${p}`).toContain(res.statusCode);
        }
      }
    }
    // The other tenant's contacts are untouched.
    for (const id of theirIds) {
      const res = await ctx.app.inject({ url: `/api/v1/contacts/${id}`, headers: other.headers });
      expect(res.statusCode).toBe(200);
    }
  });

  it('refuses NoSQL operator syntax in query keys', async () => {
    for (const q of [
      'email[$ne]=1',
      'email[$gt]=',
      'email.$ne=1',
      '$where=1',
      'email[]=a&email[]=b',
    ]) {
      const res = await ctx.app.inject({ url: `/api/v1/contacts?${q}`, headers: probe.headers });
      expectNotFromElsewhere(res);
      expect(res.statusCode, q).toBe(400);
      expect(res.json().code).toBe('request.invalid');
    }
  });
});

describe('hostile JSON bodies', () => {
  const raw = (url: string, payload: string, method: 'POST' | 'PATCH' = 'POST') =>
    ctx.app.inject({
      method,
      url,
      headers: { ...owner.headers, 'content-type': 'application/json', 'if-match': '"1"' },
      payload,
    });

  it('refuses prototype-poisoning keys with 400 and pollutes nothing', async () => {
    const existing = (await post('/api/v1/contacts', { firstName: 'Target' })).json<{
      id: string;
    }>();
    for (const body of [
      '{"__proto__":{"polluted":true}}',
      '{"firstName":"a","__proto__":{"polluted":true}}',
      '{"notes":"x","constructor":{"prototype":{"polluted":true}}}',
      '{"firstName":{"__proto__":{"polluted":true}}}',
      '{"firstName":"a","\\u005f_proto__":{"polluted":true}}',
    ]) {
      for (const [url, method] of [
        ['/api/v1/contacts', 'POST'],
        [`/api/v1/contacts/${existing.id}`, 'PATCH'],
      ] as const) {
        const res = await raw(url, body, method);
        expectNotFromElsewhere(res);
        expect(res.statusCode, body).toBe(400);
        expect(res.json().code).toBe('request.malformed_json');
      }
    }
    expect(({} as Record<string, unknown>).polluted).toBeUndefined();
    expect(Object.prototype).not.toHaveProperty('polluted');
    const after = await ctx.app.inject({
      url: `/api/v1/contacts/${existing.id}`,
      headers: owner.headers,
    });
    expect(after.json()).toMatchObject({ firstName: 'Target', version: 1 });
  });

  it('refuses deeply nested JSON with 400, quickly', async () => {
    const nest = (n: number, open: string, close: string, mid = '1') =>
      open.repeat(n) + mid + close.repeat(n);
    for (const body of [
      nest(400_000, '[', ']'),
      `{"notes":${nest(200_000, '[', ']')}}`,
      `{"notes":${nest(50_000, '{"a":', '}')}}`,
      `{"notes":${nest(50_000, '{"a":', '}', '{"__proto__":{"x":1}}')}}`,
    ]) {
      const started = Date.now();
      const res = await raw('/api/v1/contacts', body);
      expectNotFromElsewhere(res);
      expect(res.statusCode).toBe(400);
      expect(['request.invalid', 'request.malformed_json']).toContain(res.json().code);
      expect(Date.now() - started).toBeLessThan(5000);
    }
  });

  it('refuses huge and non-finite numbers with 400', async () => {
    for (const amount of [
      '1e400',
      '-1e400',
      '123456789012345678901234567890',
      '9007199254740993',
      '1e15000',
    ]) {
      const res = await raw('/api/v1/deals', `{"name":"Big","amountMinor":${amount}}`);
      expectNotFromElsewhere(res);
      expect(res.statusCode, amount).toBe(400);
      expect(res.json().code).toBe('request.invalid');
    }
    for (const q of [
      'limit=1e400',
      'limit=9007199254740993',
      'limit=-0',
      'limit=Infinity',
      'limit=NaN',
    ]) {
      const res = await ctx.app.inject({ url: `/api/v1/contacts?${q}`, headers: owner.headers });
      expectNotFromElsewhere(res);
      expect(res.statusCode, q).toBe(400);
    }
  });

  it('refuses values of the wrong type with 400 request.invalid naming the field', async () => {
    for (const [url, field, value] of [
      ['/api/v1/contacts', 'firstName', 123],
      ['/api/v1/contacts', 'firstName', true],
      ['/api/v1/contacts', 'notes', ['a']],
      ['/api/v1/contacts', 'title', { $gt: '' }],
      ['/api/v1/contacts', 'companyId', 1],
      ['/api/v1/contacts', 'dateOfBirth', 19700101],
      ['/api/v1/contacts', 'email', { $ne: null }],
      ['/api/v1/companies', 'name', null],
      ['/api/v1/companies', 'name', ['Acme']],
      ['/api/v1/deals', 'stage', { $in: ['won'] }],
    ] as const) {
      const base = url === '/api/v1/contacts' ? {} : { name: 'N' };
      const res = await post(url, { ...base, [field]: value });
      expectNotFromElsewhere(res);
      expect(res.statusCode, `${field}=${JSON.stringify(value)}`).toBe(400);
      expect(res.json().code).toBe('request.invalid');
      expect(res.json().errors.map((e: { field: string }) => e.field)).toContain(`body/${field}`);
    }
  });
});
