import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { FRESH_AUTH_MS } from '../../src/core/policy/fresh-auth.ts';
import { AuditIntegrityError } from '../../src/core/audit/index.ts';
import { verifyTenantLog } from '../../src/modules/audit/verify.ts';
import { editEventBytes } from '../helpers/audit-rewrite.ts';
import { createTestContext, type Session, type TestContext } from '../helpers/context.ts';
import { expectCode } from '../helpers/problem.ts';

/**
 * Against the real permission model. Of the built-in roles only owners and admins hold the
 * `break_glass` capability, and they read everything already; the realistic holder is a custom
 * role: a clinician who works as an agent (own records, sensitive fields masked) and may open
 * emergency access, which lifts both the masking and the record scope for reading.
 */
let ctx: TestContext;
beforeAll(async () => {
  ctx = await createTestContext();
});
afterAll(async () => ctx?.close());

const REASON = 'Patient unconscious in ER, need allergy notes now';

interface Grant {
  id: string;
  userId: string;
  reason: string;
  openedAt: string;
  expiresAt: string;
  endedAt: string | null;
  endedBy: string | null;
  status: 'open' | 'expired' | 'ended';
}

const open = (s: Session | { headers: Record<string, string> }, payload: object) =>
  ctx.app.inject({ method: 'POST', url: '/api/v1/break-glass', headers: s.headers, payload });
const grants = async (s: Session) => {
  const res = await ctx.app.inject({ url: '/api/v1/break-glass', headers: s.headers });
  expect(res.statusCode, res.body).toBe(200);
  return res.json<{ items: Grant[] }>().items;
};
const end = (s: Session, id: string) =>
  ctx.app.inject({ method: 'DELETE', url: `/api/v1/break-glass/${id}`, headers: s.headers });
const read = (s: Session, id: string) =>
  ctx.app.inject({ url: `/api/v1/contacts/${id}`, headers: s.headers });
const contact = async (s: Session, id: string) => {
  const res = await read(s, id);
  expect(res.statusCode, res.body).toBe(200);
  return res.json<Record<string, unknown>>();
};

async function events(owner: Session, type: string) {
  const res = await ctx.app.inject({
    url: `/api/v1/audit/events?type=${type}&limit=200`,
    headers: owner.headers,
  });
  expect(res.statusCode).toBe(200);
  return res.json<{
    items: {
      id: string;
      leafIndex: number;
      actor: { id: string };
      target: { type: string; id: string } | null;
      reason: string | null;
      breakGlassId?: string;
      canonical: string;
    }[];
  }>().items;
}

/**
 * A tenant with an admin and a clinician (custom role: an agent with the break_glass capability),
 * a patient of the clinician's (`id`) and one of a colleague's (`elsewhere`, made by the owner).
 */
async function seeded() {
  const owner = await ctx.tenant();
  const admin = await ctx.user(owner, 'admin');
  const role = await ctx.app.inject({
    method: 'POST',
    url: '/api/v1/roles',
    headers: owner.headers,
    payload: {
      name: 'clinician',
      spec: { base: 'agent', capabilities: { break_glass: 'manage' } },
    },
  });
  expect(role.statusCode, role.body).toBe(201);
  const clinician = await ctx.user(owner, 'agent');
  const assigned = await ctx.app.inject({
    method: 'PUT',
    url: `/api/v1/users/${clinician.userId}/custom-role`,
    headers: owner.headers,
    payload: { roleId: role.json<{ id: string }>().id },
  });
  expect(assigned.statusCode, assigned.body).toBe(200);
  const made = async (payload: object) => {
    const res = await ctx.app.inject({
      method: 'POST',
      url: '/api/v1/contacts',
      headers: owner.headers,
      payload,
    });
    expect(res.statusCode, res.body).toBe(201);
    return res.json<{ id: string }>().id;
  };
  const id = await made({
    firstName: 'Ada',
    nationalId: '987-65-4321',
    notes: 'allergic to penicillin',
    ownerId: clinician.userId,
  });
  const elsewhere = await made({ firstName: 'Bob', nationalId: '123-45-6789' });
  return { owner, admin, clinician, id, elsewhere };
}

describe('break-glass', () => {
  it('elevates reads from the next request, marks every event, raises an alert, ends at expiry', async () => {
    const { owner, clinician, id, elsewhere } = await seeded();
    // Without a grant: the clinician's own patient masked, a colleague's out of reach.
    expect(await contact(clinician, id)).toMatchObject({ nationalId: '***-**-4321' });
    expectCode(await read(clinician, elsewhere), 404, 'resource.not_found');

    const res = await open(clinician, { reason: REASON, minutes: 10 });
    expect(res.statusCode, res.body).toBe(201);
    const grant = res.json<Grant>();
    expect(grant).toMatchObject({ userId: clinician.userId, reason: REASON, status: 'open' });
    expect(Date.parse(grant.expiresAt) - Date.parse(grant.openedAt)).toBe(10 * 60_000);

    // The very next request carries the grant (the SQLite session cache is not stale): masking
    // and record scope are lifted for reading.
    const lifted = await contact(clinician, id);
    expect(lifted).toMatchObject({ nationalId: '987-65-4321', notes: 'allergic to penicillin' });
    expect(lifted).not.toHaveProperty('maskedFields');
    expect(await contact(clinician, elsewhere)).toMatchObject({ nationalId: '123-45-6789' });
    const listed = await ctx.app.inject({ url: '/api/v1/contacts', headers: clinician.headers });
    expect(
      listed
        .json<{ items: { id: string }[] }>()
        .items.map((c) => c.id)
        .sort(),
    ).toEqual([id, elsewhere].sort());
    // Elevated read only: a colleague's patient stays out of reach for writing.
    expectCode(
      await ctx.app.inject({
        method: 'PATCH',
        url: `/api/v1/contacts/${elsewhere}`,
        headers: { ...clinician.headers, 'if-match': '"1"' },
        payload: { title: 'Changed under break-glass' },
      }),
      404,
      'resource.not_found',
    );
    const note = await ctx.app.inject({
      method: 'PATCH',
      url: `/api/v1/contacts/${id}`,
      headers: { ...clinician.headers, 'if-match': '"1"' },
      payload: { title: 'Seen under break-glass' },
    });
    expect(note.statusCode, note.body).toBe(200);

    // Opening, reading (recorded although the tenant did not turn record reads on) and writing
    // under the grant all carry its id; the owner's events do not.
    const [opened] = await events(owner, 'auth.break_glass.opened');
    expect(opened).toMatchObject({
      actor: { id: clinician.userId },
      target: { type: 'break_glass', id: grant.id },
      reason: REASON,
      breakGlassId: grant.id,
    });
    const reads = await events(owner, 'record.read');
    expect(reads.map((e) => e.target?.id)).toEqual(expect.arrayContaining([id, elsewhere]));
    for (const e of reads)
      expect(e).toMatchObject({ actor: { id: clinician.userId }, breakGlassId: grant.id });
    const updates = await events(owner, 'record.updated');
    expect(updates).toEqual([expect.objectContaining({ breakGlassId: grant.id })]);
    expect(JSON.parse(updates[0]!.canonical)).toMatchObject({ breakGlassId: grant.id });
    const created = await events(owner, 'record.created');
    expect(created).toHaveLength(2);
    for (const e of created) {
      expect(e).not.toHaveProperty('breakGlassId');
      expect(JSON.parse(e.canonical)).not.toHaveProperty('breakGlassId');
    }

    // The detection rule raises a critical alert naming the user.
    await ctx.services.detectionWorker.runOnce();
    const alerts = await ctx.app.inject({
      url: '/api/v1/alerts?rule=break_glass',
      headers: owner.headers,
    });
    expect(alerts.json<{ items: unknown[] }>().items).toEqual([
      expect.objectContaining({ severity: 'critical', subjectUserId: clinician.userId }),
    ]);

    // Ends by itself: in force until the last millisecond, gone at expiry, listed as expired.
    ctx.clock.set(new Date(Date.parse(grant.expiresAt) - 1));
    expect(await contact(clinician, id)).toMatchObject({ nationalId: '987-65-4321' });
    ctx.clock.set(new Date(Date.parse(grant.expiresAt)));
    expect(await contact(clinician, id)).toMatchObject({ nationalId: '***-**-4321' });
    expectCode(await read(clinician, elsewhere), 404, 'resource.not_found');
    expect(await grants(owner)).toEqual([
      expect.objectContaining({ id: grant.id, status: 'expired' }),
    ]);
    expectCode(await end(owner, grant.id), 409, 'break_glass.not_open');
    // A new one may be opened (after a step-up: the sign-in is no longer fresh); the old one
    // stays listed as expired.
    expectCode(await open(clinician, { reason: REASON, minutes: 1 }), 401, 'auth.step_up_required');
    const stepped = await ctx.stepUp(clinician);
    expect(stepped.statusCode, stepped.body).toBe(200);
    const again = await open(clinician, { reason: REASON, minutes: 1 });
    expect(again.statusCode, again.body).toBe(201);
    expect((await grants(owner)).map((g) => g.status)).toEqual(['open', 'expired']);

    // The marked events verify: the mark is part of their bytes, and removing it is detected.
    await expect(
      verifyTenantLog(ctx.database.handle.db, owner.tenantId, [
        ctx.services.auditLog.signingKey().publicKey,
      ]),
    ).resolves.toMatchObject({ treeSize: expect.any(Number) });
    await editEventBytes(
      ctx.database.handle.db,
      owner.tenantId,
      updates[0]!.leafIndex,
      `"breakGlassId":"${grant.id}",`,
      '',
    );
    await expect(
      verifyTenantLog(ctx.database.handle.db, owner.tenantId, [
        ctx.services.auditLog.signingKey().publicKey,
      ]),
    ).rejects.toBeInstanceOf(AuditIntegrityError);
  });

  it('ends early on DELETE, from the next request on, audited; one open grant at a time', async () => {
    const { owner, clinician, id, elsewhere } = await seeded();
    const grant = (await open(clinician, { reason: REASON, minutes: 60 })).json<Grant>();
    expectCode(
      await open(clinician, { reason: REASON, minutes: 5 }),
      409,
      'break_glass.already_open',
    );
    expect(await contact(clinician, id)).toMatchObject({ nationalId: '987-65-4321' });
    expect((await read(clinician, elsewhere)).statusCode).toBe(200);

    // An administrator ends it.
    const ended = await end(owner, grant.id);
    expect(ended.statusCode, ended.body).toBe(200);
    expect(ended.json()).toMatchObject({ status: 'ended', endedBy: owner.userId });
    expect(await contact(clinician, id)).toMatchObject({ nationalId: '***-**-4321' });
    expectCode(await read(clinician, elsewhere), 404, 'resource.not_found');
    expect(await grants(clinician)).toEqual([
      expect.objectContaining({ id: grant.id, status: 'ended', endedBy: owner.userId }),
    ]);
    expect(await events(owner, 'auth.break_glass.ended')).toEqual([
      expect.objectContaining({
        actor: expect.objectContaining({ id: owner.userId }),
        target: { type: 'break_glass', id: grant.id },
        reason: 'ended_by_other',
      }),
    ]);
    expectCode(await end(owner, grant.id), 409, 'break_glass.not_open');
    // A new one may be opened once the last is over.
    expect((await open(clinician, { reason: REASON, minutes: 1 })).statusCode).toBe(201);
  });

  it('is refused without the capability, by API keys, with a short reason, past 60 minutes, when stale', async () => {
    const { owner } = await seeded();
    for (const role of ['manager', 'agent', 'viewer', 'auditor'] as const) {
      const user = await ctx.user(owner, role);
      expectCode(await open(user, { reason: REASON, minutes: 5 }), 403, 'policy.forbidden');
      const listed = await ctx.app.inject({ url: '/api/v1/break-glass', headers: user.headers });
      expectCode(listed, 403, 'policy.forbidden');
    }

    const key = await ctx.app.inject({
      method: 'POST',
      url: '/api/v1/api-keys',
      headers: owner.headers,
      payload: { name: 'bg', role: 'owner' },
    });
    expect(key.statusCode, key.body).toBe(201);
    const bearer = { headers: { authorization: `Bearer ${key.json<{ key: string }>().key}` } };
    expectCode(await open(bearer, { reason: REASON, minutes: 5 }), 403, 'policy.forbidden');

    expectCode(await open(owner, { reason: 'short reason', minutes: 5 }), 400, 'request.invalid');
    expectCode(
      await open(owner, { reason: `${' '.repeat(15)}abcdefgh`, minutes: 5 }),
      400,
      'request.invalid',
    );
    expectCode(await open(owner, { reason: REASON, minutes: 61 }), 400, 'request.invalid');
    expectCode(await open(owner, { reason: REASON, minutes: 0 }), 400, 'request.invalid');

    ctx.clock.advance(FRESH_AUTH_MS + 1_000);
    expectCode(await open(owner, { reason: REASON, minutes: 5 }), 401, 'auth.step_up_required');
    expect(await grants(owner)).toEqual([]);
    expect(await events(owner, 'auth.break_glass.opened')).toEqual([]);
  });

  it('lets only one of two concurrent openings through', async () => {
    const { owner } = await seeded();
    const answers = await Promise.all([
      open(owner, { reason: REASON, minutes: 5 }),
      open(owner, { reason: REASON, minutes: 5 }),
    ]);
    expect(answers.map((a) => a.statusCode).sort()).toEqual([201, 409]);
    expect(answers.find((a) => a.statusCode === 409)?.json()).toMatchObject({
      code: 'break_glass.already_open',
    });
    expect(await grants(owner)).toHaveLength(1);
  });

  it('keeps grants inside their tenant', async () => {
    const { admin } = await seeded();
    const grant = (await open(admin, { reason: REASON, minutes: 5 })).json<Grant>();
    const stranger = await ctx.tenant();
    expect(await grants(stranger)).toEqual([]);
    expectCode(await end(stranger, grant.id), 404, 'resource.not_found');
  });
});
