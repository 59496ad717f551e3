import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { FRESH_AUTH_MS } from '../../src/core/policy/index.ts';
import { createCollectingSink, type IdentityEvent } from '../../src/modules/auth/events.ts';
import {
  createTestContext,
  PASSWORD,
  type Session,
  type StepUpProof,
  type TestContext,
} from '../helpers/context.ts';
import { expectCode } from '../helpers/problem.ts';
import { enrolTotp, TOTP_STEP } from '../helpers/totp.ts';

const sink = createCollectingSink();
let ctx: TestContext;
let owner: Session;
let address = 0;
const nextAddress = () => `198.51.100.${++address}`;

beforeAll(async () => {
  ctx = await createTestContext({}, { audit: sink });
  owner = await ctx.tenant();
});
afterAll(async () => ctx?.close());

async function eventsOf(run: () => Promise<unknown>): Promise<IdentityEvent[]> {
  const start = sink.events.length;
  await run();
  return sink.events.slice(start);
}

async function enrolled() {
  const user = await ctx.user(owner, 'agent');
  const { secret, recoveryCodes } = await enrolTotp(ctx, user);
  ctx.clock.advance(TOTP_STEP);
  return { user, secret, recoveryCodes };
}

const regenerate = (s: Session) =>
  ctx.app.inject({ method: 'POST', url: '/api/v1/auth/mfa/recovery-codes', headers: s.headers });

/** A step-up from a new address; when it succeeds, the session goes on under its new token. */
const stepUp = (s: Session, proof: StepUpProof) =>
  ctx.stepUp(s, proof, { remoteAddress: nextAddress() });

/** Password then recovery code: the sign-in's answer. */
async function signInWithRecoveryCode(user: Session, recoveryCode: string) {
  const first = await ctx.app.inject({
    method: 'POST',
    url: '/api/v1/auth/login',
    remoteAddress: nextAddress(),
    payload: { tenant: user.tenant, email: user.email, password: PASSWORD },
  });
  const { mfaToken } = first.json<{ mfaToken: string }>();
  return ctx.app.inject({
    method: 'POST',
    url: '/api/v1/auth/login/mfa',
    remoteAddress: nextAddress(),
    payload: { mfaToken, recoveryCode },
  });
}

describe('recovery codes', () => {
  it('regenerates a new set, invalidating every old code, with an event', async () => {
    const { user, recoveryCodes: old } = await enrolled();
    let res!: Awaited<ReturnType<typeof regenerate>>;
    const events = await eventsOf(async () => {
      res = await regenerate(user);
    });
    expect(res.statusCode).toBe(200);
    const fresh = res.json<{ recoveryCodes: string[] }>().recoveryCodes;
    expect(fresh).toHaveLength(10);
    expect(fresh.some((c) => old.includes(c))).toBe(false);
    expect(events).toEqual([
      expect.objectContaining({
        type: 'auth.mfa.recovery_codes_regenerated',
        userId: user.userId,
        sessionId: expect.any(String) as string,
        count: 10,
      }),
    ]);
    expectCode(await signInWithRecoveryCode(user, old[0] ?? ''), 401, 'auth.mfa_invalid_code');
    expect((await signInWithRecoveryCode(user, fresh[0] ?? '')).statusCode).toBe(200);
    const rows = await ctx.database.handle.db
      .selectFrom('user_recovery_codes')
      .select(['code_hash'])
      .where('user_id', '=', user.userId)
      .execute();
    expect(rows).toHaveLength(10);
  });

  it('needs a fresh sign-in, TOTP on and a session', async () => {
    const { user } = await enrolled();
    ctx.clock.advance(FRESH_AUTH_MS);
    expectCode(await regenerate(user), 401, 'auth.step_up_required');
    const plain = await ctx.user(owner, 'agent');
    expectCode(await regenerate(plain), 409, 'auth.mfa_not_enrolled');
    const other = await ctx.tenant();
    const key = await ctx.app.inject({
      method: 'POST',
      url: '/api/v1/api-keys',
      headers: other.headers,
      payload: { name: 'k', role: 'agent' },
    });
    expect(key.statusCode).toBe(201);
    const bearer = { authorization: `Bearer ${key.json<{ key: string }>().key}` };
    expectCode(
      await ctx.app.inject({
        method: 'POST',
        url: '/api/v1/auth/mfa/recovery-codes',
        headers: bearer,
      }),
      403,
      'policy.forbidden',
    );
  });

  it('steps up with an unused recovery code once, and refuses it the second time', async () => {
    const { user, recoveryCodes } = await enrolled();
    ctx.clock.advance(FRESH_AUTH_MS);
    expectCode(await regenerate(user), 401, 'auth.step_up_required');
    const code = recoveryCodes[3] ?? '';
    let res!: Awaited<ReturnType<typeof stepUp>>;
    const events = await eventsOf(async () => {
      res = await stepUp(user, { recoveryCode: code });
    });
    expect(res.statusCode).toBe(200);
    expect(events.map((e) => e.type)).toEqual([
      'auth.mfa.recovery_code_used',
      'auth.step_up.succeeded',
    ]);
    expect(events[1]).toMatchObject({ method: 'recovery_code' });
    expect(events[0]).toMatchObject({ remaining: 9 });
    expect((await regenerate(user)).statusCode).toBe(200);
    ctx.clock.advance(FRESH_AUTH_MS);
    const replay = await eventsOf(async () => {
      res = await stepUp(user, { recoveryCode: code });
    });
    expectCode(res, 400, 'auth.step_up_failed');
    expect(replay[0]).toMatchObject({ type: 'auth.step_up.failed', reason: 'bad_recovery_code' });
  });

  it('refuses a recovery code for step-up without TOTP, and the password with TOTP', async () => {
    const plain = await ctx.user(owner, 'agent');
    expectCode(await stepUp(plain, { recoveryCode: 'abcd-efgh' }), 400, 'auth.step_up_failed');
    const { user } = await enrolled();
    expectCode(await stepUp(user, { password: PASSWORD }), 400, 'auth.step_up_code_required');
  });
});
