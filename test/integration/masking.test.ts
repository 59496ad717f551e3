import { createPrivateKey, generateKeyPairSync } from 'node:crypto';
import { compactDecrypt } from 'jose';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createTestContext, type Session, type TestContext } from '../helpers/context.ts';
import { expectCode } from '../helpers/problem.ts';

/**
 * Against the real permission model (src/core/policy/roles.ts): a viewer and an agent see the
 * sensitive contact fields masked, an auditor also the personal ones; an agent reaches only their
 * own records. Custom roles (POST /api/v1/roles) stand for the tenants' own: an agent who sees
 * personal data masked too, a manager who may not read notes at all.
 */
let ctx: TestContext;
beforeAll(async () => {
  ctx = await createTestContext();
});
afterAll(async () => ctx?.close());

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
/** Substrings of the clear sensitive values (masked for agents and viewers). */
const SENSITIVE_LEAKS = ['09-19', '987-65', '98765', 'penicillin'];
/** Substrings of the clear values that no answer masking personal data may carry. */
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
const expectNoLeak = (text: string, leaks: readonly string[] = LEAKS) => {
  for (const leak of leaks) expect(text, `leaked ${leak}`).not.toContain(leak);
};

const call = (s: Session, method: 'POST' | 'PUT', url: string, payload: object) =>
  ctx.app.inject({ method, url, headers: s.headers, payload });

/** A user holding a new custom role of the owner's tenant, signed in. */
async function withCustomRole(owner: Session, name: string, spec: object): Promise<Session> {
  const role = await call(owner, 'POST', '/api/v1/roles', { name, spec });
  expect(role.statusCode, role.body).toBe(201);
  const user = await ctx.user(owner, 'agent');
  const assigned = await call(owner, 'PUT', `/api/v1/users/${user.userId}/custom-role`, {
    roleId: role.json<{ id: string }>().id,
  });
  expect(assigned.statusCode, assigned.body).toBe(200);
  return user;
}

/** An agent (own records) who also sees personal data masked, and may reveal it. */
const personalMaskedAgent = (owner: Session) =>
  withCustomRole(owner, 'masked-agent', {
    base: 'agent',
    classes: { personal: { read: 'masked', write: true } },
  });

const create = (s: Session, payload: object) =>
  ctx.app.inject({ method: 'POST', url: '/api/v1/contacts', headers: s.headers, payload });
const get = (s: Session, url: string) => ctx.app.inject({ url, headers: s.headers });

/** A tenant with one contact holding SECRET, owned by the owner or given to `holder`. */
async function seeded(holder?: (owner: Session) => Promise<Session>) {
  const owner = await ctx.tenant();
  const user = holder ? await holder(owner) : owner;
  const res = await create(owner, { ...SECRET, title: 'Prefect', ownerId: user.userId });
  expect(res.statusCode, res.body).toBe(201);
  return { owner, user, id: res.json<{ id: string }>().id };
}

describe('masking by role (the real model)', () => {
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
        // Personal but not sensitive: a viewer reads them.
        email: SECRET.email,
        title: 'Prefect',
      });
      expect((item.maskedFields as string[]).sort()).toEqual([
        'dateOfBirth',
        'nationalId',
        'notes',
      ]);
      expectNoLeak(res.body, SENSITIVE_LEAKS);
    }
    const clear = (await get(owner, `/api/v1/contacts/${id}`)).json<Record<string, unknown>>();
    expect(clear).toMatchObject(SECRET);
    expect(clear).not.toHaveProperty('maskedFields');
  });

  it('masks an agent’s sensitive fields on their own record, and hides a colleague’s', async () => {
    const { owner, user: agent, id } = await seeded((o) => ctx.user(o, 'agent'));
    const colleague = await ctx.user(owner, 'agent');
    for (const url of ['/api/v1/contacts', `/api/v1/contacts/${id}`]) {
      const res = await get(agent, url);
      expect(res.statusCode).toBe(200);
      const body = res.json<{ items?: Record<string, unknown>[] } & Record<string, unknown>>();
      const item = body.items?.[0] ?? body;
      expect(item).toMatchObject({
        id,
        nationalId: '***-**-4321',
        dateOfBirth: '1979',
        notes: '[redacted]',
        email: SECRET.email,
        firstName: SECRET.firstName,
      });
      expect((item.maskedFields as string[]).sort()).toEqual([
        'dateOfBirth',
        'nationalId',
        'notes',
      ]);
      expectNoLeak(res.body, SENSITIVE_LEAKS);
    }
    // Own scope: the colleague neither lists nor reads it, not even masked.
    const listed = await get(colleague, '/api/v1/contacts');
    expect(listed.json<{ items: unknown[] }>().items).toEqual([]);
    expectCode(await get(colleague, `/api/v1/contacts/${id}`), 404, 'resource.not_found');
  });

  it('masks an auditor’s personal and sensitive fields', async () => {
    const { owner, id } = await seeded();
    const auditor = await ctx.user(owner, 'auditor');
    for (const url of ['/api/v1/contacts', `/api/v1/contacts/${id}`]) {
      const res = await get(auditor, url);
      expect(res.statusCode).toBe(200);
      const body = res.json<{ items?: Record<string, unknown>[] } & Record<string, unknown>>();
      const item = body.items?.[0] ?? body;
      expect(item).toMatchObject({
        email: 'h***@example.org',
        nationalId: '***-**-4321',
        dateOfBirth: '1979',
        title: 'Prefect',
      });
      expect((item.maskedFields as string[]).sort()).toEqual([
        'address',
        'dateOfBirth',
        'email',
        'firstName',
        'lastName',
        'nationalId',
        'notes',
        'phone',
      ]);
      expectNoLeak(res.body);
    }
    // Nor may it reveal them: the auditor's role has no reveal.
    const reveal = await ctx.app.inject({
      method: 'POST',
      url: `/api/v1/contacts/${id}/reveal`,
      headers: auditor.headers,
      payload: { fields: ['email'], reason: 'Checking the audit trail against it' },
    });
    expectCode(reveal, 403, 'policy.reveal_forbidden');
    expectNoLeak(reveal.body);
  });
});

describe('response shaping on every path', () => {
  it('masks the echo of a create and of an update', async () => {
    const owner = await ctx.tenant();
    const agent = await personalMaskedAgent(owner);
    const res = await create(agent, SECRET);
    expect(res.statusCode, res.body).toBe(201);
    expectNoLeak(res.body);
    const made = res.json<{ id: string; email: string; ownerId: string }>();
    expect(made.email).toBe('h***@example.org');
    expect(made.ownerId).toBe(agent.userId);
    const patched = await ctx.app.inject({
      method: 'PATCH',
      url: `/api/v1/contacts/${made.id}`,
      headers: { ...agent.headers, 'if-match': '"1"' },
      payload: { nationalId: '111-22-3333', title: 'Head Girl' },
    });
    expect(patched.statusCode, patched.body).toBe(200);
    expect(patched.json()).toMatchObject({ nationalId: '***-**-3333', title: 'Head Girl' });
    expect(patched.body).not.toContain('111-22');
    expectNoLeak(patched.body);
    // The values were stored in clear all the same.
    expect((await get(owner, `/api/v1/contacts/${made.id}`)).json()).toMatchObject({
      ...SECRET,
      nationalId: '111-22-3333',
    });
  });

  it('masks the echo of a plain agent’s create: sensitive fields only', async () => {
    const owner = await ctx.tenant();
    const agent = await ctx.user(owner, 'agent');
    const res = await create(agent, SECRET);
    expect(res.statusCode, res.body).toBe(201);
    expect(res.json()).toMatchObject({
      email: SECRET.email,
      nationalId: '***-**-4321',
      notes: '[redacted]',
    });
    expectNoLeak(res.body, SENSITIVE_LEAKS);
  });

  it('keeps the hidden value when a masked form is saved back whole', async () => {
    const { owner, user: agent, id } = await seeded(personalMaskedAgent);
    const shown = (await get(agent, `/api/v1/contacts/${id}`)).json<Record<string, unknown>>();
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
            // Agents may not give records away; sending their own id back is still a write.
            'ownerId',
          ].includes(k),
      ),
    );
    expect(form).toMatchObject({ nationalId: '***-**-4321', notes: '[redacted]' });
    const saved = await ctx.app.inject({
      method: 'PATCH',
      url: `/api/v1/contacts/${id}`,
      headers: { ...agent.headers, 'if-match': '"1"' },
      payload: { ...form, title: 'Minister' },
    });
    expect(saved.statusCode, saved.body).toBe(200);
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
    const { user: reader, id } = await seeded((o) =>
      withCustomRole(o, 'no-notes', {
        base: 'manager',
        fields: { 'contact.notes': { read: 'none', write: false } },
      }),
    );
    const res = await get(reader, `/api/v1/contacts/${id}`);
    expect(res.statusCode).toBe(200);
    expect(res.json()).toMatchObject({ notes: null, nationalId: SECRET.nationalId });
    expect(res.json()).not.toHaveProperty('maskedFields');
    expect(res.body).not.toContain('penicillin');
  });

  it('refuses to filter by a field the caller sees masked: no oracle', async () => {
    const { owner, user: agent } = await seeded(personalMaskedAgent);
    const auditor = await ctx.user(owner, 'auditor');
    for (const s of [agent, auditor]) {
      for (const query of [
        `email=${SECRET.email}`,
        'email=nobody@example.org',
        `phone=${SECRET.phone}`,
      ]) {
        const res = await get(s, `/api/v1/contacts?${query}`);
        expectCode(res, 403, 'policy.field_forbidden');
        expect(res.json<{ detail: string }>().detail).toMatch(/email|phone/);
        // The same answer whether or not the value exists: nothing to count.
        expect(res.json<{ errors: { field: string }[] }>().errors[0]?.field).toMatch(
          /^querystring\/(email|phone)$/,
        );
      }
    }
    // A field it sees in full still filters; the one who sees the e-mail in full finds it.
    const own = await get(agent, `/api/v1/contacts?ownerId=${agent.userId}`);
    expect(own.statusCode).toBe(200);
    expect(own.json<{ items: unknown[] }>().items).toHaveLength(1);
    const found = await get(owner, `/api/v1/contacts?email=${SECRET.email}`);
    expect(found.json<{ items: unknown[] }>().items).toHaveLength(1);
  });

  it('masks the CSV, JSON and encrypted exports of a caller who sees masked values', async () => {
    const { owner, user: agent } = await seeded(personalMaskedAgent);
    // A record of the owner's: out of the agent's scope, absent from its export.
    const other = await create(owner, { firstName: 'Luna', nationalId: '555-44-3333' });
    expect(other.statusCode, other.body).toBe(201);
    const csv = await get(agent, '/api/v1/contacts/export');
    expect(csv.statusCode, csv.body).toBe(200);
    expect(csv.body).toContain('***-**-4321');
    expect(csv.body).toContain('h***@example.org');
    expectNoLeak(csv.body);
    expect(csv.body).not.toContain('3333');
    const json = await get(agent, '/api/v1/contacts/export?format=json');
    expect(json.statusCode).toBe(200);
    expect(json.json<Record<string, unknown>[]>()).toEqual([
      expect.objectContaining({
        nationalId: '***-**-4321',
        dateOfBirth: '1979',
        notes: '[redacted]',
      }),
    ]);
    expectNoLeak(json.body);

    const { publicKey, privateKey } = generateKeyPairSync('rsa', { modulusLength: 2048 });
    const sealed = await ctx.app.inject({
      method: 'POST',
      url: '/api/v1/contacts/export',
      headers: agent.headers,
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
