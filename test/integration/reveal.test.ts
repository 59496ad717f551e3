import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { FRESH_AUTH_MS } from '../../src/core/policy/fresh-auth.ts';
import { PASSWORD, createTestContext, type Session, type TestContext } from '../helpers/context.ts';
import { expectCode } from '../helpers/problem.ts';

/**
 * Against the real permission model: an agent sees a contact's sensitive fields masked and may
 * reveal them, on their own records only; a viewer or an auditor may not reveal; an owner sees
 * everything in full and has nothing to reveal.
 */
let ctx: TestContext;
beforeAll(async () => {
  ctx = await createTestContext();
});
afterAll(async () => ctx?.close());

const SECRET = { nationalId: '987-65-4321', dateOfBirth: '1979-09-19', email: 'r@example.org' };
const REASON = 'Customer called to verify identity, ticket 4711';

const reveal = (s: Session, id: string, payload: object) =>
  ctx.app.inject({
    method: 'POST',
    url: `/api/v1/contacts/${id}/reveal`,
    headers: s.headers,
    payload,
  });

/** A tenant, an agent in it, and a contact the owner made for the agent. */
async function seeded() {
  const owner = await ctx.tenant();
  const agent = await ctx.user(owner, 'agent');
  const res = await ctx.app.inject({
    method: 'POST',
    url: '/api/v1/contacts',
    headers: owner.headers,
    payload: { ...SECRET, firstName: 'Ron', ownerId: agent.userId },
  });
  expect(res.statusCode, res.body).toBe(201);
  return { owner, agent, id: res.json<{ id: string }>().id };
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
    const { owner, agent, id } = await seeded();
    expect(
      (await ctx.app.inject({ url: `/api/v1/contacts/${id}`, headers: agent.headers })).json(),
    ).toMatchObject({ nationalId: '***-**-4321', dateOfBirth: '1979' });

    const res = await reveal(agent, id, { fields: ['nationalId', 'dateOfBirth'], reason: REASON });
    expect(res.statusCode, res.body).toBe(200);
    expect(res.json()).toEqual({
      id,
      values: { nationalId: SECRET.nationalId, dateOfBirth: SECRET.dateOfBirth },
    });
    expect(res.headers['cache-control']).toBe('no-store');

    const events = await revealEvents(owner);
    expect(events).toEqual([
      expect.objectContaining({
        actor: expect.objectContaining({ id: agent.userId }),
        target: { type: 'contact', id },
        reason: REASON,
        fields: ['dateOfBirth', 'nationalId'],
      }),
    ]);
    expect(events[0]!.canonical).not.toContain('987-65');
    expect(events[0]!.canonical).not.toContain('1979-09-19');
  });

  it('refuses a role without the reveal permission (403), naming the fields, and records nothing', async () => {
    const { owner, agent, id } = await seeded();
    for (const role of ['viewer', 'auditor'] as const) {
      const reader = await ctx.user(owner, role);
      const res = await reveal(reader, id, { fields: ['nationalId'], reason: REASON });
      expectCode(res, 403, 'policy.reveal_forbidden');
      expect(res.json<{ detail: string }>().detail).toContain('nationalId');
      expect(res.body).not.toContain('987-65');
    }

    // One field refused refuses the whole request: the agent may reveal the date of birth, but
    // the e-mail is no masked field of theirs to reveal.
    const mixed = await reveal(agent, id, {
      fields: ['dateOfBirth', 'email'],
      reason: REASON,
    });
    expectCode(mixed, 403, 'policy.reveal_forbidden');
    expect(mixed.json<{ errors: { field: string }[] }>().errors).toEqual([
      expect.objectContaining({ field: 'body/fields/email' }),
    ]);
    expect(mixed.body).not.toContain('1979-09-19');
    expect(await revealEvents(owner)).toEqual([]);
  });

  it('needs a fresh authentication: 401 step-up when stale, then works after step-up', async () => {
    const { owner, agent, id } = await seeded();
    ctx.clock.advance(FRESH_AUTH_MS + 1_000);
    const stale = await reveal(agent, id, { fields: ['nationalId'], reason: REASON });
    expectCode(stale, 401, 'auth.step_up_required');
    expect(stale.body).not.toContain('987-65');
    expect(await revealEvents(owner)).toEqual([]);

    // Step-up gives the session a new token (the helper goes on with it).
    const stepped = await ctx.stepUp(agent, PASSWORD);
    expect(stepped.statusCode, stepped.body).toBe(200);
    const fresh = await reveal(agent, id, { fields: ['nationalId'], reason: REASON });
    expect(fresh.statusCode, fresh.body).toBe(200);
    expect(fresh.json()).toEqual({ id, values: { nationalId: SECRET.nationalId } });
  });

  it('answers 404 for another tenant’s contact and for an unknown id, revealing nothing', async () => {
    const { id } = await seeded();
    const stranger = await ctx.tenant();
    // An agent of the other tenant: a role that could reveal, so only the record decides.
    const strangerAgent = await ctx.user(stranger, 'agent');
    const res = await reveal(strangerAgent, id, { fields: ['nationalId'], reason: REASON });
    expectCode(res, 404, 'resource.not_found');
    expect(res.body).not.toContain('987-65');
    const unknown = await reveal(strangerAgent, '01900000-0000-7000-8000-000000000000', {
      fields: ['nationalId'],
      reason: REASON,
    });
    expectCode(unknown, 404, 'resource.not_found');
    expect(await revealEvents(stranger)).toEqual([]);
  });

  it('answers 404 for a colleague’s contact: reveal keeps to the record scope', async () => {
    const { owner, id } = await seeded();
    const colleague = await ctx.user(owner, 'agent');
    const res = await reveal(colleague, id, { fields: ['nationalId'], reason: REASON });
    expectCode(res, 404, 'resource.not_found');
    expect(res.body).not.toContain('987-65');
    expect(res.body).not.toContain('1979-09-19');
    expect(await revealEvents(owner)).toEqual([]);
    // The colleague's own record, same fields, same reason: revealed.
    const own = await ctx.app.inject({
      method: 'POST',
      url: '/api/v1/contacts',
      headers: colleague.headers,
      payload: { nationalId: '123-45-6789' },
    });
    expect(own.statusCode, own.body).toBe(201);
    const ownId = own.json<{ id: string }>().id;
    const revealed = await reveal(colleague, ownId, { fields: ['nationalId'], reason: REASON });
    expect(revealed.statusCode, revealed.body).toBe(200);
    expect(revealed.json()).toEqual({ id: ownId, values: { nationalId: '123-45-6789' } });
  });

  it('has nothing to reveal for a role that reads in full (owner): 403, not a second path', async () => {
    const { owner, id } = await seeded();
    const res = await reveal(owner, id, { fields: ['nationalId'], reason: REASON });
    expectCode(res, 403, 'policy.reveal_forbidden');
    expect(await revealEvents(owner)).toEqual([]);
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
