import fs from 'node:fs';
import path from 'node:path';
import { randomBytes } from 'node:crypto';
import { Readable } from 'node:stream';
import pg from 'pg';
import { sql } from 'kysely';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createTestContext, PASSWORD, type Session, type TestContext } from '../helpers/context.ts';
import { testDatabaseUrl } from '../helpers/database.ts';
import { encryptField, importAesKey } from '../../src/core/crypto/index.ts';
import type { Actor } from '../../src/core/policy/index.ts';
import { openDatabase } from '../../src/db/database.ts';
import { contactSpec } from '../../src/modules/contacts/spec.ts';
import { activitySpec } from '../../src/modules/activities/spec.ts';
import { createRecordService } from '../../src/modules/records/service.ts';
import { AppError } from '../../src/errors.ts';
import { createProtectedValueCounter } from '../../src/modules/records/protected-values.ts';

let ctx: TestContext;
let owner: Session;

beforeAll(async () => {
  ctx = await createTestContext();
  owner = await ctx.tenant();
});
afterAll(async () => ctx?.close());

const marker = () => `mk${randomBytes(6).toString('hex')}`;
const post = async (s: Session, url: string, payload: object) => {
  const res = await ctx.app.inject({ method: 'POST', url, headers: s.headers, payload });
  if (res.statusCode !== 201) throw new Error(`${url}: ${res.statusCode} ${res.body}`);
  return res.json<Record<string, unknown> & { id: string }>();
};
const getContact = (id: string) =>
  ctx.app.inject({ url: `/api/v1/contacts/${id}`, headers: owner.headers });
const db = () => ctx.database.handle.db;
const systemActor = (tenantId: string): Actor => ({
  kind: 'system',
  tenantId,
  job: 'test',
  role: 'owner',
  request: { requestId: 'test', ip: null, userAgent: null },
});

/** A contact with a unique marker in every protected field, and the markers to look for. */
async function markedContact() {
  const m = marker();
  const phoneDigits = String(1000 + (parseInt(m.slice(2, 8), 16) % 9000));
  const input = {
    firstName: `${m}first`,
    lastName: `${m}last`,
    email: `${m}@Example.com`,
    phone: `+1 415 555 ${phoneDigits}`,
    dateOfBirth: '1901-02-03',
    nationalId: `${m}-NAT-ID`,
    address: `${m} Marker Street 1`,
    notes: `${m} notes about health`,
    title: 'Engineer',
  };
  const contact = await post(owner, '/api/v1/contacts', input);
  const activity = await post(owner, '/api/v1/activities', {
    type: 'call',
    subject: `${m}subject`,
    body: `${m}body text`,
    contactId: contact.id,
  });
  const markers = [
    m,
    `${m}@example.com`,
    `+1415555${phoneDigits}`,
    `415 555 ${phoneDigits}`,
    `${m.toUpperCase()}NATID`,
  ];
  return { m, input, contact, activity, markers };
}

/**
 * Every byte the data and key stores hold, as text to search: the files of the data directory
 * (SQLite's database and WAL, the key store `keys.db` and its WAL) and, on PostgreSQL, every row
 * of every table (the key store's schema `custos_keys` included) read with a plain pg client,
 * not the application's code.
 */
async function rawStorage(): Promise<{ sources: string[]; text: string }> {
  const dir = ctx.database.dataDir;
  const files = fs.readdirSync(dir).filter((f) => fs.statSync(path.join(dir, f)).isFile());
  const parts = files.map((f) => fs.readFileSync(path.join(dir, f)).toString('latin1'));
  const sources = [...files];
  if (testDatabaseUrl) {
    const client = new pg.Client({ connectionString: ctx.database.url });
    await client.connect();
    try {
      const tables = await client.query<{ table_schema: string; table_name: string }>(
        `select table_schema, table_name from information_schema.tables
          where table_schema not in ('pg_catalog', 'information_schema') and table_type = 'BASE TABLE'`,
      );
      for (const t of tables.rows) {
        const rows = await client.query<{ r: string }>(
          `select t::text as r from "${t.table_schema}"."${t.table_name}" t`,
        );
        parts.push(...rows.rows.map((r) => r.r));
        sources.push(`${t.table_schema}.${t.table_name}`);
      }
    } finally {
      await client.end();
    }
  }
  return { sources, text: parts.join('\n') };
}

/**
 * A user with a marker in e-mail and name, renamed to another marker, who asks to change the
 * e-mail to a third (the address waits sealed in its link); the markers to look for.
 */
async function markedUser() {
  const m = marker();
  const res = await ctx.app.inject({
    method: 'POST',
    url: '/api/v1/users',
    headers: owner.headers,
    payload: { email: `${m}@Example.com`, name: `${m} Staff`, role: 'agent', password: PASSWORD },
  });
  if (res.statusCode !== 201) throw new Error(`user: ${res.statusCode} ${res.body}`);
  const { id } = res.json<{ id: string }>();
  const renamed = await ctx.app.inject({
    method: 'PATCH',
    url: `/api/v1/users/${id}`,
    headers: owner.headers,
    payload: { name: `${m}renamed Staff` },
  });
  if (renamed.statusCode !== 200) throw new Error(`rename: ${renamed.statusCode}`);
  const user = await ctx.login(owner.tenant, `${m}@example.com`);
  const asked = await ctx.app.inject({
    method: 'POST',
    url: '/api/v1/auth/email',
    headers: user.headers,
    payload: { email: `${m}new@example.com` },
  });
  if (asked.statusCode !== 202) throw new Error(`e-mail change: ${asked.statusCode}`);
  return { id, markers: [m, `${m}@example.com`, `${m.toUpperCase()}`] };
}

describe('encryption at rest', () => {
  it('stores no protected value of contacts, activities and users in clear, in any file or row', async () => {
    const contacts = [await markedContact(), await markedContact()];
    const staff = await markedUser();
    const made = [...contacts, staff];
    // The API still answers with the clear values.
    const got = await getContact(contacts[0]!.contact.id);
    expect(got.statusCode).toBe(200);
    expect(got.json()).toMatchObject(contacts[0]!.input);
    const user = await ctx.app.inject({
      url: `/api/v1/users/${staff.id}`,
      headers: owner.headers,
    });
    expect(user.json<{ name: string }>().name).toMatch(/renamed Staff$/);
    const { sources, text } = await rawStorage();
    if (!testDatabaseUrl) {
      expect(sources).toEqual(expect.arrayContaining(['custos.db', 'custos.db-wal', 'keys.db']));
    } else {
      expect(sources).toEqual(
        expect.arrayContaining([
          'public.contacts',
          'public.activities',
          'public.users',
          'public.auth_links',
          'custos_keys.tenant_keys',
          'custos_keys.subject_keys',
        ]),
      );
    }
    // The search would see a clear value: the internal title is stored as sent.
    expect(text).toContain('Engineer');
    for (const { markers } of made) {
      for (const m of markers) expect(text.includes(m), m).toBe(false);
    }
  });

  it('keys each contact by its own subject key and activities by their contact, else the tenant', async () => {
    const { contact, activity } = await markedContact();
    const company = await post(owner, '/api/v1/companies', { name: 'Acme' });
    const loose = await post(owner, '/api/v1/activities', {
      type: 'note',
      subject: 'about the company',
      body: 'text',
      companyId: company.id,
    });
    const keyIdOf = (stored: string) => {
      const bytes = Buffer.from(stored.slice(4), 'base64url');
      return bytes.subarray(2, 2 + bytes[1]!).toString('utf8');
    };
    const c = await db()
      .selectFrom('contacts')
      .select(['email', 'notes'])
      .where('id', '=', contact.id)
      .executeTakeFirstOrThrow();
    expect(keyIdOf(c.email!)).toBe(`subject:${contact.id}`);
    expect(keyIdOf(c.notes!)).toBe(`subject:${contact.id}`);
    const bodyOf = async (id: string) =>
      (
        await db()
          .selectFrom('activities')
          .select(['body', 'subject'])
          .where('id', '=', id)
          .executeTakeFirstOrThrow()
      ).body!;
    expect(keyIdOf(await bodyOf(activity.id))).toBe(`subject:${contact.id}`);
    expect(keyIdOf(await bodyOf(loose.id))).toBe(`tenant:${owner.tenantId}`);
    // Linked to a contact later: sealed again whole under the contact's key.
    const res = await ctx.app.inject({
      method: 'PATCH',
      url: `/api/v1/activities/${loose.id}`,
      headers: { ...owner.headers, 'if-match': '"1"' },
      payload: { contactId: contact.id },
    });
    expect(res.statusCode).toBe(200);
    expect(res.json()).toMatchObject({ subject: 'about the company', body: 'text' });
    expect(keyIdOf(await bodyOf(loose.id))).toBe(`subject:${contact.id}`);
  });
});

describe('stored formats', () => {
  it('seals the protected fields of a record as one group, and reads values of the older per-field format', async () => {
    const { contact, input } = await markedContact();
    const columns = ['email', 'phone', 'notes', 'first_name', 'national_id'] as const;
    const row = await db()
      .selectFrom('contacts')
      .select(columns)
      .where('id', '=', contact.id)
      .executeTakeFirstOrThrow();
    // One seal: every value starts with the same header, nonce and tag.
    const prefixOf = (v: string) => Buffer.from(v.slice(4), 'base64url').subarray(0, 34 + 44);
    for (const c of columns) {
      expect(row[c]).toMatch(/^cv2\./);
      expect(prefixOf(row[c]!).equals(prefixOf(row.email!))).toBe(true);
    }
    // Values written one AEAD per field (format 1, before record groups) still read...
    const key = await ctx.services.keys.subjectKey(owner.tenantId, contact.id, { create: false });
    const old = (field: string, value: string) =>
      encryptField(
        key.key,
        key,
        { tenantId: owner.tenantId, object: 'contact', field, recordId: contact.id },
        value,
      );
    await db()
      .updateTable('contacts')
      .set({
        email: old('email', 'old@example.com'),
        phone: old('phone', '+14155550199'),
        notes: old('notes', 'old notes'),
        first_name: old('firstName', 'Old'),
        last_name: old('lastName', 'Name'),
        national_id: old('nationalId', 'OLD-1'),
        address: old('address', 'Old Street 1'),
        date_of_birth: old('dateOfBirth', '1950-01-01'),
      })
      .where('id', '=', contact.id)
      .execute();
    const got = await getContact(contact.id);
    expect(got.statusCode).toBe(200);
    expect(got.json()).toMatchObject({
      email: 'old@example.com',
      notes: 'old notes',
      firstName: 'Old',
    });
    // ...and the next write seals the whole record as a group again.
    const res = await ctx.app.inject({
      method: 'PATCH',
      url: `/api/v1/contacts/${contact.id}`,
      headers: { ...owner.headers, 'if-match': `"${got.json<{ version: number }>().version}"` },
      payload: { notes: null, title: input.title },
    });
    expect(res.statusCode).toBe(200);
    const after = await db()
      .selectFrom('contacts')
      .select(['email', 'notes', 'first_name', 'address'])
      .where('id', '=', contact.id)
      .executeTakeFirstOrThrow();
    expect(after.notes).toBeNull();
    expect(after.email).toMatch(/^cv2\./);
    expect(after.address).toMatch(/^cv2\./);
    const again = await getContact(contact.id);
    expect(again.json()).toMatchObject({
      email: 'old@example.com',
      phone: '+14155550199',
      notes: null,
      firstName: 'Old',
      address: 'Old Street 1',
      dateOfBirth: '1950-01-01',
    });
  });
});

describe('stored values that were tampered with', () => {
  async function twoContacts() {
    return [await markedContact(), await markedContact()] as const;
  }
  const setColumn = (table: 'contacts', id: string, column: string, value: string) =>
    db()
      .updateTable(table)
      .set({ [column]: value })
      .where('id', '=', id)
      .execute();
  const stored = async (id: string, column: 'email' | 'notes' | 'phone') =>
    (
      await db()
        .selectFrom('contacts')
        .select([column])
        .where('id', '=', id)
        .executeTakeFirstOrThrow()
    )[column] as string;

  async function expectRefused(id: string, code: string) {
    const res = await getContact(id);
    expect(res.statusCode).toBe(500);
    expect(res.headers['content-type']).toMatch(/^application\/problem\+json/);
    const body = res.json<{ code: string; detail: string }>();
    expect(body.code).toBe(code);
    expect(res.body).not.toMatch(/mk[0-9a-f]{12}/);
    // The reason is logged (field and record, no value).
    expect(ctx.logs.some((l) => l.includes(code) && l.includes(id))).toBe(true);
    return body;
  }

  it('refuses a value copied from another record', async () => {
    const [a, b] = await twoContacts();
    await setColumn('contacts', a.contact.id, 'email', await stored(b.contact.id, 'email'));
    await expectRefused(a.contact.id, 'resource.integrity_failed');
  });

  it('refuses a value copied into another field of the same record', async () => {
    const [a] = await twoContacts();
    await setColumn('contacts', a.contact.id, 'notes', await stored(a.contact.id, 'email'));
    await expectRefused(a.contact.id, 'resource.integrity_failed');
  });

  it('refuses a flipped byte', async () => {
    const [a] = await twoContacts();
    const phone = await stored(a.contact.id, 'phone');
    const bytes = Buffer.from(phone.slice(4), 'base64url');
    bytes[bytes.length - 20]! ^= 0x01;
    await setColumn(
      'contacts',
      a.contact.id,
      'phone',
      `${phone.slice(0, 4)}${bytes.toString('base64url')}`,
    );
    await expectRefused(a.contact.id, 'resource.integrity_failed');
  });

  it('refuses a truncated value: too short to be an envelope, or cut inside the tag', async () => {
    const [a, b] = await twoContacts();
    await setColumn(
      'contacts',
      a.contact.id,
      'email',
      (await stored(a.contact.id, 'email')).slice(0, 16),
    );
    await expectRefused(a.contact.id, 'resource.value_malformed');
    const email = await stored(b.contact.id, 'email');
    const bytes = Buffer.from(email.slice(4), 'base64url');
    const cut = `${email.slice(0, 4)}${bytes.subarray(0, bytes.length - 3).toString('base64url')}`;
    await setColumn('contacts', b.contact.id, 'email', cut);
    await expectRefused(b.contact.id, 'resource.integrity_failed');
  });

  it('refuses a value sealed under another key, and one naming a key that does not exist', async () => {
    const [a, b] = await twoContacts();
    const ad = {
      tenantId: owner.tenantId,
      object: 'contact',
      field: 'email',
      recordId: a.contact.id,
    };
    const wrongKey = importAesKey(randomBytes(32));
    const forged = encryptField(
      wrongKey,
      { keyId: `subject:${a.contact.id}`, keyVersion: 1 },
      ad,
      'mallory@example.com',
    );
    await setColumn('contacts', a.contact.id, 'email', forged);
    await expectRefused(a.contact.id, 'resource.integrity_failed');
    const unknown = encryptField(
      wrongKey,
      { keyId: 'subject:00000000-0000-7000-8000-000000000000', keyVersion: 1 },
      { ...ad, recordId: b.contact.id },
      'mallory@example.com',
    );
    await setColumn('contacts', b.contact.id, 'email', unknown);
    await expectRefused(b.contact.id, 'resource.key_unknown');
  });

  it('refuses a clear value left in a protected column', async () => {
    const [a] = await twoContacts();
    await setColumn('contacts', a.contact.id, 'notes', 'plain text');
    await expectRefused(a.contact.id, 'resource.value_malformed');
  });
});

describe('blind indexes', () => {
  it('stores truncated indexes and an untruncated unique hash instead of clear lookup copies', async () => {
    const { contact } = await markedContact();
    const row = await db()
      .selectFrom('contacts')
      .select(['email_bidx', 'email_eq', 'phone_bidx', 'national_id_bidx'])
      .where('id', '=', contact.id)
      .executeTakeFirstOrThrow();
    expect(row.email_bidx).toMatch(/^[0-9a-f]{8}$/);
    expect(row.phone_bidx).toMatch(/^[0-9a-f]{8}$/);
    expect(row.national_id_bidx).toMatch(/^[0-9a-f]{8}$/);
    expect(row.email_eq).toMatch(/^[0-9a-f]{64}$/);
    // A national id written with other separators indexes the same.
    const other = await post(owner, '/api/v1/contacts', { nationalId: 'mk 1234.5678' });
    const same = await post(owner, '/api/v1/contacts', { nationalId: 'MK-1234-5678' });
    const ix = await db()
      .selectFrom('contacts')
      .select(['id', 'national_id_bidx'])
      .where('id', 'in', [other.id, same.id])
      .execute();
    expect(ix[0]!.national_id_bidx).toBe(ix[1]!.national_id_bidx);
  });

  it('confirms candidates after decryption when a truncated index collides', async () => {
    const t = await ctx.tenant();
    const contacts = createRecordService(contactSpec, {
      db: db(),
      clock: ctx.clock,
      keys: ctx.services.keys,
      indexBits: 8,
    });
    const actor = systemActor(t.tenantId);
    // 8 bits: 256 index values, so a few dozen addresses share some (birthday bound).
    const byIndex = new Map<string, string[]>();
    let pair: string[] | undefined;
    for (let i = 0; i < 300 && pair === undefined; i++) {
      const email = `collide${i}@example.com`;
      const c = await contacts.create(actor, { email });
      const row = await db()
        .selectFrom('contacts')
        .select('email_bidx')
        .where('id', '=', c.id)
        .executeTakeFirstOrThrow();
      const list = byIndex.get(row.email_bidx!) ?? [];
      list.push(email);
      byIndex.set(row.email_bidx!, list);
      if (list.length === 2) pair = list;
    }
    expect(pair).toBeDefined();
    for (const email of pair!) {
      const page = await contacts.list(actor, { limit: 10, filters: { email } });
      expect(page.items.map((c) => c.email)).toEqual([email]);
      // A page of one still finds it when the other candidate comes first.
      const one = await contacts.list(actor, { limit: 1, filters: { email: email.toUpperCase() } });
      expect(one.items.map((c) => c.email)).toEqual([email]);
      expect(one.nextCursor).toBeNull();
    }
  });

  it('keeps e-mail unique per tenant through the keyed hash, not across tenants', async () => {
    const t = await ctx.tenant();
    await post(owner, '/api/v1/contacts', { email: 'same@twice.example' });
    const again = await ctx.app.inject({
      method: 'POST',
      url: '/api/v1/contacts',
      headers: owner.headers,
      payload: { email: 'SAME@Twice.example' },
    });
    expect(again.statusCode).toBe(409);
    expect(again.json().code).toBe('contact.email_taken');
    await post(t, '/api/v1/contacts', { email: 'same@twice.example' });
  });
});

describe('crypto-shredding', () => {
  it('makes a copy of the data taken before erasure undecryptable with the live key store', async () => {
    const { contact, activity, input } = await markedContact();
    const contacts = createRecordService(contactSpec, {
      db: db(),
      clock: ctx.clock,
      keys: ctx.services.keys,
    });
    const actor = systemActor(owner.tenantId);
    // The backup: a copy of the data database (SQLite file), or of the rows (PostgreSQL).
    let backup: {
      read: () => Promise<unknown>;
      readActivity: () => Promise<unknown>;
      close: () => Promise<void>;
    };
    if (!testDatabaseUrl) {
      const dir = fs.mkdtempSync(path.join(ctx.database.dataDir, 'backup-'));
      await sql`vacuum into ${path.join(dir, 'custos.db')}`.execute(db());
      const copy = openDatabase({ dataDir: dir });
      const deps = { db: copy.db, clock: ctx.clock, keys: ctx.services.keys };
      const c = createRecordService(contactSpec, deps);
      const a = createRecordService(activitySpec, deps);
      backup = {
        read: () => c.get(actor, contact.id),
        readActivity: () => a.get(actor, activity.id),
        close: () => copy.close(),
      };
    } else {
      const client = new pg.Client({ connectionString: ctx.database.url });
      await client.connect();
      const rows = (await client.query('select * from contacts where id = $1', [contact.id]))
        .rows as Record<string, unknown>[];
      const acts = (await client.query('select * from activities where id = $1', [activity.id]))
        .rows as Record<string, unknown>[];
      await client.end();
      expect(rows).toHaveLength(1);
      backup = {
        read: () => contacts.crypto.open(owner.tenantId, rows),
        readActivity: () =>
          createRecordService(activitySpec, {
            db: db(),
            clock: ctx.clock,
            keys: ctx.services.keys,
          }).crypto.open(owner.tenantId, acts),
        close: async () => undefined,
      };
    }
    try {
      // Before the erasure the backup reads fine.
      expect(await backup.read()).toMatchObject(
        testDatabaseUrl ? [{ email: input.email }] : { email: input.email },
      );
      const bidx = (
        await db()
          .selectFrom('contacts')
          .select('email_bidx')
          .where('id', '=', contact.id)
          .executeTakeFirstOrThrow()
      ).email_bidx;
      const del = await ctx.app.inject({
        method: 'DELETE',
        url: `/api/v1/contacts/${contact.id}`,
        headers: { ...owner.headers, 'if-match': '"1"' },
      });
      expect(del.statusCode).toBe(204);
      // The key is a tombstone in the key store, the index entries are gone with the row.
      const keyRow = await ctx.services.keys.status(owner.tenantId);
      expect(keyRow).toBeDefined();
      await expect(
        ctx.services.keys.subjectKey(owner.tenantId, contact.id, { create: true }),
      ).rejects.toMatchObject({ code: 'keys.key_destroyed' });
      const left = await db()
        .selectFrom('contacts')
        .select('id')
        .where('tenant_id', '=', owner.tenantId)
        .where('email_bidx', '=', bidx)
        .execute();
      expect(left.map((r) => r.id)).not.toContain(contact.id);
      // The live key store no longer opens the backup's values.
      for (const read of [backup.read, backup.readActivity]) {
        const error = await read().then(
          () => undefined,
          (e: unknown) => e,
        );
        expect(error).toBeInstanceOf(AppError);
        expect((error as AppError).code).toBe('keys.key_destroyed');
      }
    } finally {
      await backup.close();
    }
  });
});

describe('CSV import', () => {
  it('imports encrypted contacts with their own subject keys, findable by e-mail and phone', async () => {
    const t = await ctx.tenant();
    const m = marker();
    const csv = [
      'firstName,email,phone,notes',
      ...Array.from(
        { length: 30 },
        (_, i) => `${m}${i},${m}${i}@example.com,+1 415 555 ${String(1000 + i)},${m} note ${i}`,
      ),
    ].join('\n');
    const report = await ctx.services.contactTransfer.import(
      systemActor(t.tenantId),
      Readable.from([Buffer.from(csv)]),
    );
    expect(report.created).toBe(30);
    const found = await ctx.app.inject({
      url: `/api/v1/contacts?email=${m}7@EXAMPLE.com`,
      headers: t.headers,
    });
    expect(found.json().items).toMatchObject([{ firstName: `${m}7`, notes: `${m} note 7` }]);
    const byPhone = await ctx.app.inject({
      url: `/api/v1/contacts?phone=${encodeURIComponent('+14155551007')}`,
      headers: t.headers,
    });
    expect(byPhone.json().items.map((c: { email: string }) => c.email)).toEqual([
      `${m}7@example.com`,
    ]);
    // Merging by e-mail keeps the contact's key and re-encrypts the new values.
    const merge = await ctx.services.contactTransfer.import(
      systemActor(t.tenantId),
      Readable.from([Buffer.from(`email,notes\n${m}7@example.com,${m} merged\n`)]),
      { onDuplicate: 'merge' },
    );
    expect(merge.updated).toBe(1);
    const after = await ctx.app.inject({
      url: `/api/v1/contacts?email=${m}7@example.com`,
      headers: t.headers,
    });
    expect(after.json().items).toMatchObject([{ notes: `${m} merged`, firstName: `${m}7` }]);
    const { text } = await rawStorage();
    expect(text.includes(m)).toBe(false);
  });
});

describe('tenant key rotation', () => {
  it('counts the values a tenant key version still seals, so it is not retired under them', async () => {
    const t = await ctx.tenant();
    const company = await post(t, '/api/v1/companies', { name: 'Rotating' });
    await post(t, '/api/v1/activities', {
      type: 'note',
      subject: 's',
      body: 'b',
      companyId: company.id,
    });
    const count = createProtectedValueCounter(db(), [contactSpec, activitySpec]);
    // Subject and body under the tenant key v1; the contact's values under its own key.
    await post(t, '/api/v1/contacts', { email: 'rot@example.com' });
    expect(await count(t.tenantId, 1)).toBe(2);
    await ctx.services.keys.rotateTenantKey(t.tenantId);
    ctx.clock.advance(60_000);
    await post(t, '/api/v1/activities', { type: 'note', subject: 'new', companyId: company.id });
    expect(await count(t.tenantId, 1)).toBe(2);
    expect(await count(t.tenantId, 2)).toBe(1);
  });
});
