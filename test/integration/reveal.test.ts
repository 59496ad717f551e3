import { afterAll, afterEach, beforeAll, describe, expect, it, vi } from 'vitest';
import type * as Fields from '../../src/core/policy/fields.ts';
import type { FieldAccess } from '../../src/core/policy/fields.ts';
import type { Actor } from '../../src/core/policy/actor.ts';
import { FRESH_AUTH_MS } from '../../src/core/policy/fresh-auth.ts';
import { PASSWORD, createTestContext, type Session, type TestContext } from '../helpers/context.ts';
import { expectCode } from '../helpers/problem.ts';

/** Members answered by the test (as the permission model will answer for e.g. an agent). */
const seam = vi.hoisted(() => ({
  member: undefined as undefined | ((field: string) => FieldAccess | undefined),
}));
vi.mock('../../src/core/policy/fields.ts', async (importOriginal) => {
  const original = await importOriginal<typeof Fields>();
  return {
    ...original,
    fieldAccess(actor: Actor, resource: 'contact', field: string): FieldAccess {
      const decided = original.fieldAccess(actor, resource, field);
      if (actor.role !== 'member' || seam.member === undefined) return decided;
      return seam.member(field) ?? decided;
    },
  };
});

let ctx: TestContext;
beforeAll(async () => {
  ctx = await createTestContext();
});
afterAll(async () => ctx?.close());
afterEach(() => {
  seam.member = undefined;
});

const SECRET = { nationalId: '987-65-4321', dateOfBirth: '1979-09-19', email: 'r@example.org' };
const REASON = 'Customer called to verify identity, ticket 4711';

const reveal = (s: Session, id: string, payload: object) =>
  ctx.app.inject({
    method: 'POST',
    url: `/api/v1/contacts/${id}/reveal`,
    headers: s.headers,
    payload,
  });

async function seeded() {
  const owner = await ctx.tenant();
  const res = await ctx.app.inject({
    method: 'POST',
    url: '/api/v1/contacts',
    headers: owner.headers,
    payload: { ...SECRET, firstName: 'Ron' },
  });
  expect(res.statusCode, res.body).toBe(201);
  return { owner, id: res.json<{ id: string }>().id };
}

async function revealEvents(s: Session) {
  const res = await ctx.app.inject({
    url: '/api/v1/audit/events?type=record.revealed&limit=200',
    headers: s.headers,
  });
  expect(res.statusCode).toBe(200);
  return res.json<{
    items: {
      actor: { id: string };
      target: { type: string; id: string };
      reason: string;
      fields: string[];
      canonical: string;
    }[];
  }>().items;
}

describe('POST /api/v1/contacts/{id}/reveal', () => {
  it('returns the clear values to a role that may reveal, audited with names and reason only', async () => {
    const { owner, id } = await seeded();
    const member = await ctx.user(owner, 'member');
    seam.member = (f) =>
      ['nationalId', 'dateOfBirth'].includes(f)
        ? { read: 'masked', write: true, reveal: true, rule: 'test-masked' }
        : undefined;
    expect(
      (await ctx.app.inject({ url: `/api/v1/contacts/${id}`, headers: member.headers })).json(),
    ).toMatchObject({ nationalId: '***-**-4321', dateOfBirth: '1979' });

    const res = await reveal(member, id, { fields: ['nationalId', 'dateOfBirth'], reason: REASON });
    expect(res.statusCode, res.body).toBe(200);
    expect(res.json()).toEqual({
      id,
      values: { nationalId: SECRET.nationalId, dateOfBirth: SECRET.dateOfBirth },
    });
    expect(res.headers['cache-control']).toBe('no-store');

    const events = await revealEvents(owner);
    expect(events).toEqual([
      expect.objectContaining({
        actor: expect.objectContaining({ id: member.userId }),
        target: { type: 'contact', id },
        reason: REASON,
        fields: ['dateOfBirth', 'nationalId'],
      }),
    ]);
    expect(events[0]!.canonical).not.toContain('987-65');
    expect(events[0]!.canonical).not.toContain('1979-09-19');
  });

  it('refuses a role without the reveal permission (403), naming the fields, and records nothing', async () => {
    const { owner, id } = await seeded();
    const viewer = await ctx.user(owner, 'viewer');
    const res = await reveal(viewer, id, { fields: ['nationalId'], reason: REASON });
    expectCode(res, 403, 'policy.reveal_forbidden');
    expect(res.json<{ detail: string }>().detail).toContain('nationalId');
    expect(res.body).not.toContain('987-65');

    // One field refused refuses the whole request.
    const member = await ctx.user(owner, 'member');
    seam.member = (f) =>
      f === 'nationalId' ? { read: 'masked', write: false, reveal: false, rule: 't' } : undefined;
    const mixed = await reveal(member, id, {
      fields: ['dateOfBirth', 'nationalId'],
      reason: REASON,
    });
    expectCode(mixed, 403, 'policy.reveal_forbidden');
    expect(mixed.body).not.toContain('1979-09-19');
    expect(await revealEvents(owner)).toEqual([]);
  });

  it('needs a fresh authentication: 401 step-up when stale, then works after step-up', async () => {
    const { owner, id } = await seeded();
    ctx.clock.advance(FRESH_AUTH_MS + 1_000);
    const stale = await reveal(owner, id, { fields: ['nationalId'], reason: REASON });
    expectCode(stale, 401, 'auth.step_up_required');
    expect(stale.body).not.toContain('987-65');
    expect(await revealEvents(owner)).toEqual([]);

    const stepped = await ctx.app.inject({
      method: 'POST',
      url: '/api/v1/auth/step-up',
      headers: owner.headers,
      payload: { password: PASSWORD },
    });
    expect(stepped.statusCode, stepped.body).toBe(200);
    const fresh = await reveal(owner, id, { fields: ['nationalId'], reason: REASON });
    expect(fresh.statusCode, fresh.body).toBe(200);
    expect(fresh.json()).toEqual({ id, values: { nationalId: SECRET.nationalId } });
  });

  it('answers 404 for another tenant’s contact and for an unknown id, revealing nothing', async () => {
    const { id } = await seeded();
    const stranger = await ctx.tenant();
    const res = await reveal(stranger, id, { fields: ['nationalId'], reason: REASON });
    expectCode(res, 404, 'resource.not_found');
    expect(res.body).not.toContain('987-65');
    const unknown = await reveal(stranger, '01900000-0000-7000-8000-000000000000', {
      fields: ['nationalId'],
      reason: REASON,
    });
    expectCode(unknown, 404, 'resource.not_found');
    expect(await revealEvents(stranger)).toEqual([]);
  });

  it('refuses a short reason, an unknown field and extra properties (400)', async () => {
    const { owner, id } = await seeded();
    expectCode(
      await reveal(owner, id, { fields: ['nationalId'], reason: 'because' }),
      400,
      'request.invalid',
    );
    expectCode(
      await reveal(owner, id, { fields: ['nationalId'], reason: '          x         ' }),
      400,
      'request.invalid',
    );
    const unknown = await reveal(owner, id, { fields: ['password'], reason: REASON });
    expectCode(unknown, 400, 'request.invalid');
    expect(unknown.json<{ detail: string }>().detail).toContain('password');
    expectCode(await reveal(owner, id, { fields: [], reason: REASON }), 400, 'request.invalid');
    expectCode(
      await reveal(owner, id, { fields: ['nationalId'], reason: REASON, tenantId: 'x' }),
      400,
      'request.invalid',
    );
    expect(await revealEvents(owner)).toEqual([]);
  });
});
