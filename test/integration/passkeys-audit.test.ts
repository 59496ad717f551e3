import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createTestContext, type Session, type TestContext } from '../helpers/context.ts';
import { SoftwareAuthenticator } from '../helpers/webauthn-authenticator.ts';

/** Passkey events through the real identity sink: leaves of the tenant's audit log. */
let ctx: TestContext;
let owner: Session;

beforeAll(async () => {
  ctx = await createTestContext();
  owner = await ctx.tenant();
});
afterAll(async () => ctx?.close());

const post = (url: string, payload?: object, headers?: Record<string, string>) =>
  ctx.app.inject({
    method: 'POST',
    url,
    ...(payload ? { payload } : {}),
    ...(headers ? { headers } : {}),
  });

async function signIn(auth: SoftwareAuthenticator, tenant: string) {
  const options = await post('/api/v1/auth/passkeys/login/options', { tenant });
  const credential = auth.assert(options.json<{ challenge: string; rpId: string }>());
  return post('/api/v1/auth/passkeys/login', { tenant, credential });
}

describe('passkey events in the audit log', () => {
  it('records enrolment, sign-in, clone detection, refusal and removal as leaves', async () => {
    const user = await ctx.user(owner, 'agent');
    const options = await post(
      '/api/v1/auth/passkeys/registration/options',
      undefined,
      user.headers,
    );
    const auth = SoftwareAuthenticator.create();
    const created = await post(
      '/api/v1/auth/passkeys/registration',
      { credential: auth.register(options.json()) },
      user.headers,
    );
    expect(created.statusCode).toBe(201);
    const passkeyId = created.json<{ id: string }>().id;
    expect((await signIn(auth, user.tenant)).statusCode).toBe(200);
    const clone = auth.clone();
    expect((await signIn(auth, user.tenant)).statusCode).toBe(200);
    expect((await signIn(clone, user.tenant)).statusCode).toBe(401);
    const removed = await ctx.app.inject({
      method: 'DELETE',
      url: `/api/v1/auth/passkeys/${passkeyId}`,
      headers: user.headers,
    });
    expect(removed.statusCode).toBe(204);

    const rows = await ctx.database.handle.db
      .selectFrom('audit_events')
      .select(['type', 'reason', 'outcome', 'target_type', 'target_id', 'fields'])
      .where('tenant_id', '=', user.tenantId)
      .orderBy('leaf_index')
      .execute();
    const ours = rows.filter(
      (r) => r.target_id === passkeyId || r.target_id === user.userId || r.reason === 'passkey',
    );
    const seen = ours.map((r) => [r.type, r.reason]);
    expect(seen).toContainEqual(['auth.mfa.enrolled', 'passkey']);
    expect(seen).toContainEqual(['auth.passkey.clone_detected', 'cloned']);
    expect(seen).toContainEqual(['auth.passkey.failed', 'passwordless.cloned']);
    expect(seen).toContainEqual(['auth.mfa.removed', 'step_up']);
    const signIns = rows.filter((r) => r.type === 'auth.login.succeeded' && r.reason === 'passkey');
    expect(signIns).toHaveLength(2);
    const clone_ = rows.find((r) => r.type === 'auth.passkey.clone_detected');
    expect(clone_).toMatchObject({
      outcome: 'failure',
      target_type: 'passkey',
      target_id: passkeyId,
    });
    expect(JSON.parse(clone_?.fields ?? '[]')).toEqual(['disabledAt']);
  });
});
