import { execFileSync } from 'node:child_process';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { decryptFieldText, parseEnvelope } from '../../src/core/crypto/index.ts';
import { createCollectingSink, type IdentityEvent } from '../../src/modules/auth/events.ts';
import { hashToken } from '../../src/modules/identity/tokens.ts';
import { createTestContext, PASSWORD, type Session, type TestContext } from '../helpers/context.ts';
import { sessionCookie } from '../helpers/context.ts';
import { expectCode } from '../helpers/problem.ts';
import { enrolTotp, TOTP_STEP as STEP, totpCode } from '../helpers/totp.ts';

const sink = createCollectingSink();
let ctx: TestContext;
let owner: Session;
let address = 0;
/** Each test signs in from its own address, so the per-address budget stays out of the way. */
const nextAddress = () => `192.0.2.${++address}`;

beforeAll(async () => {
  ctx = await createTestContext({}, { audit: sink });
  owner = await ctx.tenant();
});
afterAll(async () => ctx?.close());

const codeFor = (secret: string, offsetSteps = 0) => totpCode(ctx.clock, secret, offsetSteps);

function hasOathtool(): boolean {
  try {
    execFileSync('oathtool', ['--version'], { stdio: 'ignore' });
    return true;
  } catch {
    return false;
  }
}

async function eventsOf(run: () => Promise<unknown>): Promise<IdentityEvent[]> {
  const start = sink.events.length;
  await run();
  return sink.events.slice(start);
}

/** A member with TOTP on; the clock is moved past the confirming code's step. */
async function enrolled() {
  const user = await ctx.user(owner, 'agent');
  const { secret, recoveryCodes } = await enrolTotp(ctx, user);
  ctx.clock.advance(STEP);
  return { user, secret, recoveryCodes };
}

function password(user: Session, remoteAddress: string, pw = PASSWORD) {
  return ctx.app.inject({
    method: 'POST',
    url: '/api/v1/auth/login',
    remoteAddress,
    payload: { tenant: user.tenant, email: user.email, password: pw },
  });
}

function second(
  mfaToken: string,
  factor: { code: string } | { recoveryCode: string },
  remoteAddress: string,
) {
  return ctx.app.inject({
    method: 'POST',
    url: '/api/v1/auth/login/mfa',
    remoteAddress,
    payload: { mfaToken, ...factor },
  });
}

async function challenge(user: Session, ip: string): Promise<string> {
  const res = await password(user, ip);
  expect(res.statusCode).toBe(200);
  expect(res.headers['set-cookie']).toBeUndefined();
  const body = res.json<{ mfaRequired: boolean; mfaToken: string; user?: unknown }>();
  expect(body.mfaRequired).toBe(true);
  expect(body.user).toBeUndefined();
  return body.mfaToken;
}

async function sessionCount(userId: string): Promise<number> {
  const rows = await ctx.database.handle.db
    .selectFrom('sessions')
    .select('id')
    .where('user_id', '=', userId)
    .execute();
  return rows.length;
}

describe('TOTP enrolment', () => {
  it('returns a URI and a QR code, stores the secret encrypted, and never shows it again', async () => {
    const user = await ctx.user(owner, 'agent');
    const res = await ctx.app.inject({
      method: 'POST',
      url: '/api/v1/auth/mfa/totp',
      headers: user.headers,
    });
    expect(res.statusCode).toBe(200);
    const body = res.json<{ uri: string; qrCode: string; secret: string }>();
    expect(body.uri).toMatch(/^otpauth:\/\/totp\/Custos:/);
    expect(new URL(body.uri).searchParams.get('secret')).toBe(body.secret);
    expect(body.qrCode).toMatch(/^data:image\/png;base64,/);
    const row = await ctx.database.handle.db
      .selectFrom('user_totp')
      .select(['secret', 'status', 'tenant_id'])
      .where('user_id', '=', user.userId)
      .executeTakeFirstOrThrow();
    expect(row.status).toBe('pending');
    expect(row.secret).toMatch(/^cv1\./);
    expect(row.secret).not.toContain(body.secret);
    const ref = parseEnvelope(row.secret);
    const key = await ctx.services.keys.keyFor(user.tenantId, ref);
    const ad = {
      tenantId: user.tenantId,
      object: 'user',
      field: 'totpSecret',
      recordId: user.userId,
    };
    expect(decryptFieldText({ key, ...ref }, ad, row.secret)).toBe(body.secret);
    // Bound to this user: the same ciphertext under another user's id does not decrypt.
    expect(() =>
      decryptFieldText({ key, ...ref }, { ...ad, recordId: owner.userId }, row.secret),
    ).toThrow();

    // Until confirmed, the password alone still signs in.
    expect((await password(user, nextAddress())).json()).toHaveProperty('user');
  });

  it('refuses a wrong confirming code and turns TOTP on with the right one, with ten recovery codes', async () => {
    const user = await ctx.user(owner, 'agent');
    const { secret } = (
      await ctx.app.inject({ method: 'POST', url: '/api/v1/auth/mfa/totp', headers: user.headers })
    ).json<{ secret: string }>();
    const confirm = (code: string) =>
      ctx.app.inject({
        method: 'POST',
        url: '/api/v1/auth/mfa/totp/confirm',
        headers: user.headers,
        payload: { code },
      });
    const wrong = String((Number(codeFor(secret)) + 1) % 1_000_000).padStart(6, '0');
    expectCode(await confirm(wrong), 400, 'auth.mfa_invalid_code');
    const events = await eventsOf(async () => {
      const res = await confirm(codeFor(secret));
      expect(res.statusCode).toBe(200);
      const codes = res.json<{ recoveryCodes: string[] }>().recoveryCodes;
      expect(codes).toHaveLength(10);
      const stored = await ctx.database.handle.db
        .selectFrom('user_recovery_codes')
        .select('code_hash')
        .where('user_id', '=', user.userId)
        .execute();
      expect(stored).toHaveLength(10);
      for (const s of stored) expect(codes.some((c) => s.code_hash.includes(c))).toBe(false);
    });
    expect(events.map((e) => e.type)).toEqual(['auth.mfa.enrolled']);
    // A second enrolment is refused while one is on.
    expectCode(
      await ctx.app.inject({ method: 'POST', url: '/api/v1/auth/mfa/totp', headers: user.headers }),
      409,
      'auth.mfa_already_enabled',
    );
    expectCode(await confirm(codeFor(secret, 1)), 409, 'auth.mfa_not_enrolled');
  });
});

describe('sign-in with TOTP', () => {
  it('gives no session for the password alone, and a new one after the code', async () => {
    const { user, secret } = await enrolled();
    const ip = nextAddress();
    const before = await sessionCount(user.userId);
    const token = await challenge(user, ip);
    expect(await sessionCount(user.userId)).toBe(before);
    const stored = await ctx.database.handle.db
      .selectFrom('mfa_challenges')
      .select('token_hash')
      .where('user_id', '=', user.userId)
      .execute();
    expect(stored.map((s) => s.token_hash)).toContain(hashToken(token));
    expect(stored.map((s) => s.token_hash)).not.toContain(token);

    const events = await eventsOf(async () => {
      const res = await second(token, { code: codeFor(secret) }, ip);
      expect(res.statusCode).toBe(200);
      const cookie = sessionCookie(res);
      expect(cookie).not.toBe(user.cookie);
      const me = await ctx.app.inject({ url: '/api/v1/auth/me', headers: { cookie } });
      expect(me.json()).toMatchObject({ id: user.userId });
    });
    expect(events).toEqual([
      expect.objectContaining({ type: 'auth.login.succeeded', userId: user.userId, mfa: true }),
    ]);
    expect(await sessionCount(user.userId)).toBe(before + 1);
  });

  it.skipIf(!hasOathtool())(
    'accepts a code made by oathtool as an independent authenticator (skipped when oathtool is not installed)',
    async () => {
      const { user, secret } = await enrolled();
      const ip = nextAddress();
      const token = await challenge(user, ip);
      const seconds = String(Math.floor(ctx.clock.now().getTime() / 1000));
      const code = execFileSync('oathtool', ['--totp', '-b', secret, '-N', `@${seconds}`])
        .toString()
        .trim();
      expect((await second(token, { code }, ip)).statusCode).toBe(200);
    },
  );

  it('accepts a code one step off and refuses two steps off', async () => {
    const { user, secret } = await enrolled();
    // The step before now must not be the one that confirmed the enrolment (that is a replay).
    ctx.clock.advance(STEP);
    const ip = nextAddress();
    let token = await challenge(user, ip);
    expectCode(
      await second(token, { code: codeFor(secret, -2) }, ip),
      401,
      'auth.mfa_invalid_code',
    );
    expectCode(await second(token, { code: codeFor(secret, 2) }, ip), 401, 'auth.mfa_invalid_code');
    expect((await second(token, { code: codeFor(secret, -1) }, ip)).statusCode).toBe(200);
    token = await challenge(user, ip);
    expect((await second(token, { code: codeFor(secret, 1) }, ip)).statusCode).toBe(200);
  });

  it('refuses a replayed code exactly like a wrong one, and records why', async () => {
    const { user, secret } = await enrolled();
    const ip = nextAddress();
    const code = codeFor(secret);
    expect((await second(await challenge(user, ip), { code }, ip)).statusCode).toBe(200);
    const token = await challenge(user, ip);
    const wrongCode = String((Number(code) + 1) % 1_000_000).padStart(6, '0');
    let replayed: { statusCode: number; body: string } | undefined;
    const events = await eventsOf(async () => {
      replayed = await second(token, { code }, ip);
    });
    const wrong = await second(token, { code: wrongCode }, ip);
    expect(replayed?.statusCode).toBe(401);
    expect(JSON.parse(replayed?.body ?? '{}')).toMatchObject({
      code: 'auth.mfa_invalid_code',
      detail: wrong.json<{ detail: string }>().detail,
    });
    expect(wrong.json().code).toBe('auth.mfa_invalid_code');
    expect(events).toEqual([
      expect.objectContaining({ type: 'auth.mfa.failed', reason: 'replayed', stage: 'login' }),
    ]);
    // An earlier step is a replay too, once a later one was used.
    expectCode(
      await second(token, { code: codeFor(secret, -1) }, ip),
      401,
      'auth.mfa_invalid_code',
    );
    ctx.clock.advance(STEP);
    expect((await second(token, { code: codeFor(secret) }, ip)).statusCode).toBe(200);
  });

  it('accepts each recovery code once', async () => {
    const { user, recoveryCodes } = await enrolled();
    const ip = nextAddress();
    const recoveryCode = recoveryCodes[3] ?? '';
    const events = await eventsOf(async () => {
      const res = await second(
        await challenge(user, ip),
        { recoveryCode: recoveryCode.toLowerCase() },
        ip,
      );
      expect(res.statusCode).toBe(200);
    });
    expect(events.map((e) => e.type)).toEqual([
      'auth.mfa.recovery_code_used',
      'auth.login.succeeded',
    ]);
    expect(events[0]).toMatchObject({ remaining: 9 });
    expectCode(
      await second(await challenge(user, ip), { recoveryCode }, ip),
      401,
      'auth.mfa_invalid_code',
    );
  });

  it('lets an mfaToken be used once only', async () => {
    const { user, secret } = await enrolled();
    const ip = nextAddress();
    const token = await challenge(user, ip);
    expect((await second(token, { code: codeFor(secret) }, ip)).statusCode).toBe(200);
    ctx.clock.advance(STEP);
    expectCode(
      await second(token, { code: codeFor(secret) }, ip),
      401,
      'auth.mfa_challenge_invalid',
    );
  });

  it('expires an mfaToken after five minutes', async () => {
    const { user, secret } = await enrolled();
    const ip = nextAddress();
    const token = await challenge(user, ip);
    ctx.clock.advance(5 * 60_000 - 1);
    const early = await challenge(user, ip);
    expect((await second(early, { code: codeFor(secret) }, ip)).statusCode).toBe(200);
    ctx.clock.advance(STEP);
    expectCode(
      await second(token, { code: codeFor(secret) }, ip),
      401,
      'auth.mfa_challenge_invalid',
    );
    expectCode(
      await second('not-a-token', { code: '123456' }, ip),
      401,
      'auth.mfa_challenge_invalid',
    );
  });

  it('counts wrong codes in the account throttle, so codes cannot be brute-forced', async () => {
    const { user, secret } = await enrolled();
    const ip = nextAddress();
    const token = await challenge(user, ip);
    const wrong = String((Number(codeFor(secret)) + 5) % 1_000_000).padStart(6, '0');
    const events = await eventsOf(async () => {
      // The password step counted one failure; four wrong codes reach the lock.
      for (let i = 0; i < 4; i++)
        expectCode(await second(token, { code: wrong }, ip), 401, 'auth.mfa_invalid_code');
    });
    expect(events.filter((e) => e.type === 'auth.account.locked')).toHaveLength(1);
    // Locked: even the right code is refused, with the same answer.
    expectCode(await second(token, { code: codeFor(secret) }, ip), 401, 'auth.mfa_invalid_code');
    // A right password does not reset the count while the second factor is owed.
    ctx.clock.advance(60_000);
    const again = await challenge(user, ip);
    expectCode(await second(again, { code: wrong }, ip), 401, 'auth.mfa_invalid_code');
    expectCode(await second(again, { code: codeFor(secret) }, ip), 401, 'auth.mfa_invalid_code');
  });
});

describe('TOTP removal', () => {
  const remove = (user: Session, payload: object) =>
    ctx.app.inject({
      method: 'DELETE',
      url: '/api/v1/auth/mfa/totp',
      headers: user.headers,
      payload,
    });

  it('needs a current code or the password, then signs in with the password alone', async () => {
    const { user, secret } = await enrolled();
    expectCode(
      await remove(user, { password: 'not the password at all' }),
      400,
      'auth.mfa_invalid_code',
    );
    expectCode(await remove(user, { code: codeFor(secret, -3) }), 400, 'auth.mfa_invalid_code');
    const events = await eventsOf(async () => {
      expect((await remove(user, { code: codeFor(secret) })).statusCode).toBe(204);
    });
    expect(events).toEqual([
      expect.objectContaining({ type: 'auth.mfa.removed', userId: user.userId, proof: 'code' }),
    ]);
    expect((await password(user, nextAddress())).json()).toHaveProperty('user');
    expectCode(await remove(user, { password: PASSWORD }), 409, 'auth.mfa_not_enrolled');
  });

  it('accepts the password', async () => {
    const { user } = await enrolled();
    expect((await remove(user, { password: PASSWORD })).statusCode).toBe(204);
    const left = await ctx.database.handle.db
      .selectFrom('user_recovery_codes')
      .select('id')
      .where('user_id', '=', user.userId)
      .execute();
    expect(left).toEqual([]);
  });

  it('is refused to API keys', async () => {
    // The clock has moved on since `owner` signed in: creating a key needs a fresh sign-in.
    const fresh = await ctx.login(owner.tenant, owner.email);
    const key = await ctx.app.inject({
      method: 'POST',
      url: '/api/v1/api-keys',
      headers: fresh.headers,
      payload: { name: 'mfa test', role: 'agent' },
    });
    expect(key.statusCode).toBe(201);
    const res = await ctx.app.inject({
      method: 'POST',
      url: '/api/v1/auth/mfa/totp',
      headers: { authorization: `Bearer ${key.json<{ key: string }>().key}` },
    });
    expectCode(res, 403, 'policy.forbidden');
  });
});
