import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { FRESH_AUTH_MS } from '../../src/core/policy/index.ts';
import { hasSecondFactor } from '../../src/modules/mfa/factors.ts';
import {
  createTestContext,
  sessionCookie,
  tenantSettings,
  type Session,
  type TestContext,
} from '../helpers/context.ts';
import { expectCode } from '../helpers/problem.ts';
import { enrolTotp, TOTP_STEP } from '../helpers/totp.ts';

let ctx: TestContext;

beforeAll(async () => {
  ctx = await createTestContext();
});
afterAll(async () => ctx?.close());

const settings = (s: Session, payload: object) => tenantSettings(ctx, s, payload);

const get = (headers: Record<string, string>, url: string) =>
  ctx.app.inject({ method: 'GET', url, headers });

/** Starts and confirms TOTP; returns the confirm answer. */
async function enrol(s: Session) {
  const { confirm } = await enrolTotp(ctx, s);
  ctx.clock.advance(TOTP_STEP);
  return confirm;
}

async function settingsEvents(tenantId: string) {
  return ctx.database.handle.db
    .selectFrom('audit_events')
    .select(['type', 'actor_id', 'fields', 'target_type'])
    .where('tenant_id', '=', tenantId)
    .where('type', '=', 'tenant.settings.updated')
    .orderBy('leaf_index')
    .execute();
}

describe('second-factor requirement', () => {
  it('holds a member without a second factor to enrolment, then gives a new token and full access', async () => {
    const owner = await ctx.tenant();
    const member = await ctx.user(owner, 'agent');
    expect((await get(member.headers, '/api/v1/contacts')).statusCode).toBe(200);
    const set = await settings(owner, { mfaRequired: 'all' });
    expect(set.statusCode).toBe(200);
    expect(set.json()).toMatchObject({ mfaRequired: 'all', mfaRequiredRoles: [] });

    // Applies to the open session at its next request.
    expectCode(await get(member.headers, '/api/v1/contacts'), 403, 'auth.mfa_enrolment_required');
    const write = await ctx.app.inject({
      method: 'POST',
      url: '/api/v1/contacts',
      headers: member.headers,
      payload: { firstName: 'Ada' },
    });
    expectCode(write, 403, 'auth.mfa_enrolment_required');
    expect(write.headers['content-type']).toContain('application/problem+json');
    expect((await get(member.headers, '/api/v1/auth/me')).statusCode).toBe(200);
    expect((await get(member.headers, '/api/v1/auth/sessions')).statusCode).toBe(200);

    // A new sign-in says so at once.
    const again = await ctx.app.inject({
      method: 'POST',
      url: '/api/v1/auth/login',
      payload: {
        tenant: member.tenant,
        email: member.email,
        password: 'correct horse battery staple',
      },
    });
    expect(again.json()).toMatchObject({ mfaEnrolmentRequired: true });

    const confirm = await enrol(member);
    const body = confirm.json<{ recoveryCodes: string[]; csrfToken?: string }>();
    expect(body.recoveryCodes).toHaveLength(10);
    expect(typeof body.csrfToken).toBe('string');
    const cookie = sessionCookie(confirm);
    expect(cookie).not.toBe(member.cookie);
    // The old token is dead; the new one has full access.
    expectCode(await get(member.headers, '/api/v1/auth/me'), 401, 'auth.unauthenticated');
    const fresh = { cookie, 'x-csrf-token': body.csrfToken ?? '' };
    expect((await get(fresh, '/api/v1/contacts')).statusCode).toBe(200);
    const created = await ctx.app.inject({
      method: 'POST',
      url: '/api/v1/contacts',
      headers: fresh,
      payload: { firstName: 'Ada' },
    });
    expect(created.statusCode).toBe(201);
  });

  it('lets a held session sign out, and keeps a user with a second factor unaffected', async () => {
    const owner = await ctx.tenant();
    const enrolled = await ctx.user(owner, 'agent');
    const confirm = await enrol(enrolled);
    // Not held: no new token.
    expect(confirm.json<{ csrfToken?: string }>().csrfToken).toBeUndefined();
    const held = await ctx.user(owner, 'viewer');
    expect((await settings(owner, { mfaRequired: 'all' })).statusCode).toBe(200);
    expect((await get(enrolled.headers, '/api/v1/contacts')).statusCode).toBe(200);
    const out = await ctx.app.inject({
      method: 'POST',
      url: '/api/v1/auth/logout',
      headers: held.headers,
    });
    expect(out.statusCode).toBe(204);
    expectCode(await get(held.headers, '/api/v1/auth/me'), 401, 'auth.unauthenticated');
  });

  it('covers only the chosen roles', async () => {
    const owner = await ctx.tenant();
    const admin = await ctx.user(owner, 'admin');
    const member = await ctx.user(owner, 'agent');
    const set = await settings(owner, { mfaRequired: 'roles', mfaRequiredRoles: ['admin'] });
    expect(set.statusCode).toBe(200);
    expect(set.json()).toMatchObject({ mfaRequired: 'roles', mfaRequiredRoles: ['admin'] });
    expectCode(await get(admin.headers, '/api/v1/contacts'), 403, 'auth.mfa_enrolment_required');
    expect((await get(member.headers, '/api/v1/contacts')).statusCode).toBe(200);
    expect((await get(owner.headers, '/api/v1/contacts')).statusCode).toBe(200);
    // Back to off: everyone has full access again.
    expect((await settings(owner, { mfaRequired: 'off' })).json()).toMatchObject({
      mfaRequired: 'off',
      mfaRequiredRoles: [],
    });
    expect((await get(admin.headers, '/api/v1/contacts')).statusCode).toBe(200);
  });

  it('refuses the API keys of a user who must enrol and has not', async () => {
    const owner = await ctx.tenant();
    const admin = await ctx.user(owner, 'admin');
    const created = await ctx.app.inject({
      method: 'POST',
      url: '/api/v1/api-keys',
      headers: admin.headers,
      payload: { name: 'script', role: 'agent' },
    });
    expect(created.statusCode).toBe(201);
    const bearer = { authorization: `Bearer ${created.json<{ key: string }>().key}` };
    expect((await get(bearer, '/api/v1/contacts')).statusCode).toBe(200);
    // The key's own role (member) is not covered; its creator's (admin) is.
    await settings(owner, { mfaRequired: 'roles', mfaRequiredRoles: ['admin'] });
    expectCode(await get(bearer, '/api/v1/contacts'), 403, 'auth.mfa_enrolment_required');
    expectCode(await get(bearer, '/api/v1/auth/me'), 403, 'auth.mfa_enrolment_required');
    await enrol(admin);
    expect((await get(bearer, '/api/v1/contacts')).statusCode).toBe(200);
  });

  it('needs an owner or admin, a fresh sign-in and a role list for "roles"', async () => {
    const owner = await ctx.tenant();
    const member = await ctx.user(owner, 'agent');
    expectCode(await settings(member, { mfaRequired: 'all' }), 403, 'policy.forbidden');
    expectCode(await settings(owner, { mfaRequired: 'roles' }), 400, 'request.invalid');
    expectCode(
      await settings(owner, { mfaRequired: 'all', mfaRequiredRoles: ['admin'] }),
      400,
      'request.invalid',
    );
    expectCode(
      await settings(owner, { mfaRequired: 'roles', mfaRequiredRoles: ['root'] }),
      400,
      'request.invalid',
    );
    ctx.clock.advance(FRESH_AUTH_MS + 1);
    expectCode(await settings(owner, { mfaRequired: 'all' }), 401, 'auth.step_up_required');
    // Timeouts alone do not need a step-up (unchanged behaviour).
    expect((await settings(owner, { sessionIdleMinutes: 20 })).statusCode).toBe(200);
    const view = await get(owner.headers, '/api/v1/tenant/settings');
    expect(view.json()).toMatchObject({ mfaRequired: 'off' });
  });

  it('records each change in the audit log with the changed setting names only', async () => {
    const owner = await ctx.tenant();
    expect((await settings(owner, { sessionIdleMinutes: 15, mfaRequired: 'off' })).statusCode).toBe(
      200,
    );
    // No change, no event.
    expect((await settings(owner, { sessionIdleMinutes: 15 })).statusCode).toBe(200);
    expect(
      (await settings(owner, { mfaRequired: 'roles', mfaRequiredRoles: ['owner', 'admin'] }))
        .statusCode,
    ).toBe(200);
    const events = await settingsEvents(owner.tenantId);
    expect(events.map((e) => JSON.parse(e.fields) as string[])).toEqual([
      ['sessionIdleMinutes'],
      ['mfaRequired', 'mfaRequiredRoles'],
    ]);
    expect(events.every((e) => e.actor_id === owner.userId && e.target_type === 'tenant')).toBe(
      true,
    );
    // The owner is now covered and has no second factor: held to enrolment.
    expectCode(
      await get(owner.headers, '/api/v1/audit/events'),
      403,
      'auth.mfa_enrolment_required',
    );
  });

  it('hasSecondFactor is false before TOTP is confirmed and true after', async () => {
    const owner = await ctx.tenant();
    const user = await ctx.user(owner, 'agent');
    const who = { tenantId: owner.tenantId, userId: user.userId };
    const db = ctx.database.handle.db;
    expect(await hasSecondFactor(db, who)).toBe(false);
    await ctx.app.inject({ method: 'POST', url: '/api/v1/auth/mfa/totp', headers: user.headers });
    expect(await hasSecondFactor(db, who)).toBe(false);
    await enrol(user);
    expect(await hasSecondFactor(db, who)).toBe(true);
    expect(await hasSecondFactor(db, { tenantId: 'another', userId: user.userId })).toBe(false);
  });
});
