import { createPrivateKey, generateKeyPairSync } from 'node:crypto';
import { compactDecrypt } from 'jose';
import { afterAll, afterEach, beforeAll, describe, expect, it, vi } from 'vitest';
import type * as Fields from '../../src/core/policy/fields.ts';
import type { FieldAccess } from '../../src/core/policy/fields.ts';
import type { Actor } from '../../src/core/policy/actor.ts';
import { createTestContext, type Session, type TestContext } from '../helpers/context.ts';
import { expectCode } from '../helpers/problem.ts';

/**
 * Today's roles mask only a viewer's sensitive fields, and a viewer may not export, import or
 * write. To show that every path shapes by `fieldAccess` (not by role names), some tests answer
 * the seam themselves for members, as the permission model will for e.g. an agent: the rest of
 * the application is the real one.
 */
const seam = vi.hoisted(() => ({
  member: undefined as undefined | ((field: string) => FieldAccess | undefined),
}));
vi.mock('../../src/core/policy/fields.ts', async (importOriginal) => {
  const original = await importOriginal<typeof Fields>();
  return {
    ...original,
    fieldAccess(actor: Actor, resource: 'contact', field: string): FieldAccess {
      const decided = original.fieldAccess(actor, resource, field);
      if (actor.role !== 'member' || seam.member === undefined || decided.rule === 'break-glass') {
        return decided;
      }
      return seam.member(field) ?? decided;
    },
  };
});

const masked = (write = true): FieldAccess => ({
  read: 'masked',
  write,
  reveal: true,
  rule: 'test-masked',
});
/** Personal and sensitive contact fields masked, as for an agent. */
const maskPersonal = (field: string) =>
  [
    'firstName',
    'lastName',
    'email',
    'phone',
    'dateOfBirth',
    'nationalId',
    'address',
    'notes',
  ].includes(field)
    ? masked()
    : undefined;

let ctx: TestContext;
beforeAll(async () => {
  ctx = await createTestContext();
});
afterAll(async () => ctx?.close());
afterEach(() => {
  seam.member = undefined;
});

const SECRET = {
  firstName: 'Hermione',
  lastName: 'Grangerly',
  email: 'hermione.grangerly@example.org',
  phone: '+14155552671',
  dateOfBirth: '1979-09-19',
  nationalId: '987-65-4321',
  address: '12 Grimmauld Place',
  notes: 'Allergic to penicillin, treated at St Mungo',
};
/** Substrings of the clear values that no masked answer may carry. */
const LEAKS = [
  'Hermione',
  'Grangerly',
  'hermione.grangerly',
  '5552671',
  '09-19',
  '987-65',
  '98765',
  'Grimmauld',
  'penicillin',
];
const expectNoLeak = (text: string) => {
  for (const leak of LEAKS) expect(text, `leaked ${leak}`).not.toContain(leak);
};

const create = (s: Session, payload: object) =>
  ctx.app.inject({ method: 'POST', url: '/api/v1/contacts', headers: s.headers, payload });
const get = (s: Session, url: string) => ctx.app.inject({ url, headers: s.headers });

async function seeded() {
  const owner = await ctx.tenant();
  const res = await create(owner, { ...SECRET, title: 'Prefect' });
  expect(res.statusCode, res.body).toBe(201);
  return { owner, id: res.json<{ id: string }>().id };
}

describe('masking by role (the real seam: a viewer sees sensitive fields masked)', () => {
  it('masks a viewer’s sensitive fields in list and get, and leaves the owner’s clear', async () => {
    const { owner, id } = await seeded();
    const viewer = await ctx.user(owner, 'viewer');
    for (const url of ['/api/v1/contacts', `/api/v1/contacts/${id}`]) {
      const res = await get(viewer, url);
      expect(res.statusCode).toBe(200);
      const body = res.json<{ items?: Record<string, unknown>[] } & Record<string, unknown>>();
      const item = body.items?.[0] ?? body;
      expect(item).toMatchObject({
        nationalId: '***-**-4321',
        dateOfBirth: '1979',
        notes: '[redacted]',
        // Personal but not sensitive: a viewer reads them today.
        email: SECRET.email,
        title: 'Prefect',
      });
      expect((item.maskedFields as string[]).sort()).toEqual([
        'dateOfBirth',
        'nationalId',
        'notes',
      ]);
      expect(res.body).not.toContain('987-65');
      expect(res.body).not.toContain('penicillin');
      expect(res.body).not.toContain('1979-09-19');
    }
    const clear = (await get(owner, `/api/v1/contacts/${id}`)).json<Record<string, unknown>>();
    expect(clear).toMatchObject(SECRET);
    expect(clear).not.toHaveProperty('maskedFields');
  });
});

describe('response shaping on every path', () => {
  it('masks the echo of a create and of an update', async () => {
    const owner = await ctx.tenant();
    const member = await ctx.user(owner, 'member');
    seam.member = maskPersonal;
    const res = await create(member, SECRET);
    expect(res.statusCode, res.body).toBe(201);
    expectNoLeak(res.body);
    const made = res.json<{ id: string; email: string; maskedFields: string[] }>();
    expect(made.email).toBe('h***@example.org');
    const patched = await ctx.app.inject({
      method: 'PATCH',
      url: `/api/v1/contacts/${made.id}`,
      headers: { ...member.headers, 'if-match': '"1"' },
      payload: { nationalId: '111-22-3333', title: 'Head Girl' },
    });
    expect(patched.statusCode, patched.body).toBe(200);
    expect(patched.json()).toMatchObject({ nationalId: '***-**-3333', title: 'Head Girl' });
    expect(patched.body).not.toContain('111-22');
    expectNoLeak(patched.body);
    // The values were stored in clear all the same.
    seam.member = undefined;
    expect((await get(owner, `/api/v1/contacts/${made.id}`)).json()).toMatchObject({
      ...SECRET,
      nationalId: '111-22-3333',
    });
  });

  it('keeps the hidden value when a masked form is saved back whole', async () => {
    const { owner, id } = await seeded();
    const member = await ctx.user(owner, 'member');
    seam.member = maskPersonal;
    const shown = (await get(member, `/api/v1/contacts/${id}`)).json<Record<string, unknown>>();
    // The masked e-mail and date are not valid values: validation refuses them (400) anyway.
    const form = Object.fromEntries(
      Object.entries(shown).filter(
        ([k]) =>
          ![
            'id',
            'version',
            'createdAt',
            'updatedAt',
            'maskedFields',
            'email',
            'dateOfBirth',
          ].includes(k),
      ),
    );
    expect(form).toMatchObject({ nationalId: '***-**-4321', notes: '[redacted]' });
    const saved = await ctx.app.inject({
      method: 'PATCH',
      url: `/api/v1/contacts/${id}`,
      headers: { ...member.headers, 'if-match': '"1"' },
      payload: { ...form, title: 'Minister' },
    });
    expect(saved.statusCode, saved.body).toBe(200);
    seam.member = undefined;
    expect((await get(owner, `/api/v1/contacts/${id}`)).json()).toMatchObject({
      ...SECRET,
      title: 'Minister',
    });
    const changes = await ctx.app.inject({
      url: `/api/v1/audit/events?type=record.updated&targetId=${id}`,
      headers: owner.headers,
    });
    expect(changes.json<{ items: { fields: string[] }[] }>().items).toEqual([
      expect.objectContaining({ fields: ['title'] }),
    ]);
  });

  it('returns null for a field the role may not read at all, and does not list it as masked', async () => {
    const { owner, id } = await seeded();
    const member = await ctx.user(owner, 'member');
    seam.member = (f) =>
      f === 'notes' ? { read: 'none', write: false, reveal: false, rule: 'test-none' } : undefined;
    const res = await get(member, `/api/v1/contacts/${id}`);
    expect(res.statusCode).toBe(200);
    expect(res.json()).toMatchObject({ notes: null, nationalId: SECRET.nationalId });
    expect(res.json()).not.toHaveProperty('maskedFields');
    expect(res.body).not.toContain('penicillin');
  });

  it('refuses to filter by a field the caller sees masked: no oracle', async () => {
    const { owner } = await seeded();
    const member = await ctx.user(owner, 'member');
    seam.member = maskPersonal;
    for (const query of [
      `email=${SECRET.email}`,
      'email=nobody@example.org',
      `phone=${SECRET.phone}`,
    ]) {
      const res = await get(member, `/api/v1/contacts?${query}`);
      expectCode(res, 403, 'policy.field_forbidden');
      expect(res.json<{ detail: string }>().detail).toMatch(/email|phone/);
      // The same answer whether or not the value exists: nothing to count.
      expect(res.json<{ errors: { field: string }[] }>().errors[0]?.field).toMatch(
        /^querystring\/(email|phone)$/,
      );
    }
    // A field it sees in full still filters; the one who sees the e-mail in full finds it.
    expect((await get(member, `/api/v1/contacts?ownerId=${owner.userId}`)).statusCode).toBe(200);
    const found = await get(owner, `/api/v1/contacts?email=${SECRET.email}`);
    expect(found.json<{ items: unknown[] }>().items).toHaveLength(1);
  });

  it('masks the CSV, JSON and encrypted exports of a caller who sees masked values', async () => {
    const { owner } = await seeded();
    const member = await ctx.user(owner, 'member');
    seam.member = maskPersonal;
    const csv = await get(member, '/api/v1/contacts/export');
    expect(csv.statusCode, csv.body).toBe(200);
    expect(csv.body).toContain('***-**-4321');
    expect(csv.body).toContain('h***@example.org');
    expectNoLeak(csv.body);
    const json = await get(member, '/api/v1/contacts/export?format=json');
    expect(json.statusCode).toBe(200);
    expect(json.json<Record<string, unknown>[]>()[0]).toMatchObject({
      nationalId: '***-**-4321',
      dateOfBirth: '1979',
      notes: '[redacted]',
    });
    expectNoLeak(json.body);

    const { publicKey, privateKey } = generateKeyPairSync('rsa', { modulusLength: 2048 });
    const sealed = await ctx.app.inject({
      method: 'POST',
      url: '/api/v1/contacts/export',
      headers: member.headers,
      payload: {
        format: 'json',
        recipientKey: publicKey.export({ type: 'spki', format: 'pem' }).toString(),
      },
    });
    expect(sealed.statusCode, sealed.body).toBe(200);
    const opened = await compactDecrypt(
      sealed.body,
      createPrivateKey(privateKey.export({ type: 'pkcs8', format: 'pem' })),
    );
    const plaintext = new TextDecoder().decode(opened.plaintext);
    expect(plaintext).toContain('***-**-4321');
    expectNoLeak(plaintext);

    // The owner's export of the same tenant is clear: the masking is the caller's, not the data's.
    seam.member = undefined;
    const ownerCsv = await get(owner, '/api/v1/contacts/export');
    expect(ownerCsv.body).toContain('987-65-4321');
  });

  it('never echoes a value in an error: conflict, validation, stale version, import report', async () => {
    const { owner, id } = await seeded();
    const duplicate = await create(owner, { email: SECRET.email.toUpperCase() });
    expectCode(duplicate, 409, 'contact.email_taken');
    expectNoLeak(duplicate.body.toLowerCase());

    const invalid = await create(owner, {
      email: 'Hermione at Grimmauld',
      dateOfBirth: '987-65-4321',
    });
    expectCode(invalid, 400, 'request.invalid');
    expectNoLeak(invalid.body);

    const stale = await ctx.app.inject({
      method: 'PATCH',
      url: `/api/v1/contacts/${id}`,
      headers: { ...owner.headers, 'if-match': '"7"' },
      payload: { nationalId: '987-65-4321' },
    });
    expectCode(stale, 412, 'resource.version_mismatch');
    expectNoLeak(stale.body);

    const csv = [
      'firstName,email,dateOfBirth,nationalId',
      `Hermione,${SECRET.email},1979-09-19,987-65-4321`,
      'Grangerly,not-an-email-Grimmauld,1979-09-19,987-65-4321',
    ].join('\r\n');
    const report = await ctx.app.inject({
      method: 'POST',
      url: '/api/v1/contacts/import?mode=best-effort',
      headers: { ...owner.headers, 'content-type': 'text/csv' },
      payload: csv,
    });
    expect(report.statusCode, report.body).toBe(200);
    expect(report.json()).toMatchObject({ skipped: 1, failed: 1 });
    expectNoLeak(report.body);
  });
});
