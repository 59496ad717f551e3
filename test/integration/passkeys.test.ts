import fs from 'node:fs';
import path from 'node:path';
import { generateKeyPairSync } from 'node:crypto';
import { fileURLToPath } from 'node:url';
import { Secret, TOTP } from 'otpauth';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { FRESH_AUTH_MS } from '../../src/core/policy/index.ts';
import { createCollectingSink, type IdentityEvent } from '../../src/modules/auth/events.ts';
import { userHasPasskey } from '../../src/modules/passkeys/repository.ts';
import {
  createTestContext,
  PASSWORD,
  renewSession,
  sessionCookie,
  type Session,
  type TestContext,
} from '../helpers/context.ts';
import { FLAG_UP, SoftwareAuthenticator, type Bend } from '../helpers/webauthn-authenticator.ts';

const sink = createCollectingSink();
let ctx: TestContext;
let owner: Session;
let address = 0;
/** Each test signs in from its own address, so the per-address budget stays out of the way. */
const nextAddress = () => `198.51.100.${++address}`;

beforeAll(async () => {
  ctx = await createTestContext({}, { audit: sink });
  owner = await ctx.tenant();
});
afterAll(async () => ctx?.close());

type Res = {
  statusCode: number;
  headers: Record<string, unknown>;
  body: string;
  json<T = { code: string }>(): T;
};
type Creation = { challenge: string; rp: { id: string }; user: { id: string } };
type Request = {
  challenge: string;
  rpId: string;
  allowCredentials: Array<{ id: string }>;
  userVerification: string;
};
type PasskeyView = {
  id: string;
  name: string;
  disabled: boolean;
  disabledReason: string | null;
  lastUsedAt: string | null;
};

function expectProblem(res: Res, status: number, code: string) {
  expect(res.statusCode, res.body).toBe(status);
  expect(String(res.headers['content-type'])).toContain('application/problem+json');
  expect(res.json().code).toBe(code);
}

async function eventsOf(run: () => Promise<unknown>): Promise<IdentityEvent[]> {
  const start = sink.events.length;
  await run();
  return sink.events.slice(start);
}

const post = (url: string, payload?: object, headers?: Record<string, string>, ip?: string) =>
  ctx.app.inject({
    method: 'POST',
    url,
    ...(payload ? { payload } : {}),
    ...(headers ? { headers } : {}),
    remoteAddress: ip ?? nextAddress(),
  });

const registrationOptions = (user: Session) =>
  post('/api/v1/auth/passkeys/registration/options', undefined, user.headers);

async function register(
  user: Session,
  auth = SoftwareAuthenticator.create(),
  name?: string,
): Promise<{ auth: SoftwareAuthenticator; passkey: PasskeyView }> {
  const options = await registrationOptions(user);
  expect(options.statusCode, options.body).toBe(200);
  const credential = auth.register(options.json<Creation>());
  const res = await post(
    '/api/v1/auth/passkeys/registration',
    { credential, ...(name ? { name } : {}) },
    user.headers,
  );
  expect(res.statusCode, res.body).toBe(201);
  return { auth, passkey: res.json<PasskeyView>() };
}

async function passwordlessOptions(tenant: string): Promise<Request> {
  const res = await post('/api/v1/auth/passkeys/login/options', { tenant });
  expect(res.statusCode, res.body).toBe(200);
  return res.json<Request>();
}

async function passwordless(
  tenant: string,
  auth: SoftwareAuthenticator,
  bend: Bend = {},
  ip = nextAddress(),
) {
  const options = await passwordlessOptions(tenant);
  return post(
    '/api/v1/auth/passkeys/login',
    { tenant, credential: auth.assert(options, bend) },
    undefined,
    ip,
  );
}

async function list(user: Session): Promise<PasskeyView[]> {
  const res = await ctx.app.inject({
    method: 'GET',
    url: '/api/v1/auth/passkeys',
    headers: user.headers,
  });
  expect(res.statusCode).toBe(200);
  return res.json<{ items: PasskeyView[] }>().items;
}

async function mfaToken(user: Session, ip = nextAddress()): Promise<string> {
  const res = await post(
    '/api/v1/auth/login',
    { tenant: user.tenant, email: user.email, password: PASSWORD },
    undefined,
    ip,
  );
  expect(res.statusCode, res.body).toBe(200);
  const body = res.json<{ mfaRequired: boolean; mfaToken: string }>();
  expect(body.mfaRequired).toBe(true);
  expect(res.headers['set-cookie']).toBeUndefined();
  return body.mfaToken;
}

const me = (cookie: string) =>
  ctx.app.inject({ method: 'GET', url: '/api/v1/auth/me', headers: { cookie } });

/** Steps `user` up with `auth`; when it works, the session goes on under its new token. */
const stepUpWithPasskey = (user: Session, auth: SoftwareAuthenticator) =>
  ctx.stepUp(user, { authenticator: auth }, { remoteAddress: nextAddress() });

/** Moves the clock past the step-up window; the session must then step up again. */
function staleAuthentication() {
  ctx.clock.advance(FRESH_AUTH_MS + 1000);
}

describe('registration', () => {
  it('lets a viewer register their own passkey and lists it without key material', async () => {
    const viewer = await ctx.user(owner, 'viewer');
    const events = await eventsOf(() => register(viewer, undefined, 'Laptop'));
    const items = await list(viewer);
    expect(items).toHaveLength(1);
    expect(items[0]).toMatchObject({ name: 'Laptop', disabled: false, lastUsedAt: null });
    expect(Object.keys(items[0] ?? {}).sort()).toEqual(
      ['createdAt', 'disabled', 'disabledReason', 'id', 'lastUsedAt', 'name', 'transports'].sort(),
    );
    expect(events).toContainEqual(
      expect.objectContaining({
        type: 'auth.mfa.enrolled',
        method: 'passkey',
        userId: viewer.userId,
        passkeyId: items[0]?.id,
      }),
    );
    expect(await userHasPasskey(ctx.database.handle.db, viewer.tenantId, viewer.userId)).toBe(true);
    expect(await userHasPasskey(ctx.database.handle.db, owner.tenantId, owner.userId)).toBe(false);
  });

  it('asks for a discoverable, user-verifying credential bound to the configured RP id', async () => {
    const user = await ctx.user(owner, 'agent');
    const first = await register(user);
    const res = await registrationOptions(user);
    const options = res.json<
      Creation & {
        authenticatorSelection: { residentKey: string; userVerification: string };
        excludeCredentials: Array<{ id: string }>;
        attestation: string;
      }
    >();
    expect(options.rp.id).toBe('localhost');
    expect(options.authenticatorSelection).toMatchObject({
      residentKey: 'required',
      userVerification: 'required',
    });
    expect(options.attestation).toBe('none');
    // The same user handle for every passkey of a user; the one already there is excluded.
    expect(options.user.id).toBe(first.auth.userHandle);
    expect(options.excludeCredentials.map((c) => c.id)).toEqual([first.auth.id]);
  });

  it('refuses a response from another origin, for another RP id, or without user verification', async () => {
    const user = await ctx.user(owner, 'agent');
    const bends: Bend[] = [
      { origin: 'https://evil.example' },
      { rpId: 'evil.example' },
      { flags: FLAG_UP | 0x40 },
      { type: 'webauthn.get' },
    ];
    for (const bend of bends) {
      const options = (await registrationOptions(user)).json<Creation>();
      const credential = SoftwareAuthenticator.create().register(options, bend);
      const events = await eventsOf(async () => {
        const res = await post('/api/v1/auth/passkeys/registration', { credential }, user.headers);
        expectProblem(res, 400, 'auth.passkey_invalid');
      });
      expect(events).toContainEqual(
        expect.objectContaining({
          type: 'auth.passkey.failed',
          stage: 'register',
          reason: 'bad_response',
        }),
      );
    }
    expect(await list(user)).toEqual([]);
  });

  it("refuses a replayed challenge, a made-up one and another session's", async () => {
    const user = await ctx.user(owner, 'agent');
    const other = await ctx.login(user.tenant, user.email);
    const options = (await registrationOptions(user)).json<Creation>();
    const auth = SoftwareAuthenticator.create();
    const first = await post(
      '/api/v1/auth/passkeys/registration',
      { credential: auth.register(options) },
      user.headers,
    );
    expect(first.statusCode).toBe(201);
    // The same challenge again, even with another authenticator.
    const again = await post(
      '/api/v1/auth/passkeys/registration',
      { credential: SoftwareAuthenticator.create().register(options) },
      user.headers,
    );
    expectProblem(again, 400, 'auth.passkey_invalid');
    const madeUp = await post(
      '/api/v1/auth/passkeys/registration',
      {
        credential: SoftwareAuthenticator.create().register({
          ...options,
          challenge: Buffer.alloc(32, 7).toString('base64url'),
        }),
      },
      user.headers,
    );
    expectProblem(madeUp, 400, 'auth.passkey_invalid');
    // Options asked for by another session of the same user do not serve this one.
    const otherOptions = (await registrationOptions(other)).json<Creation>();
    const events = await eventsOf(async () => {
      const res = await post(
        '/api/v1/auth/passkeys/registration',
        { credential: SoftwareAuthenticator.create().register(otherOptions) },
        user.headers,
      );
      expectProblem(res, 400, 'auth.passkey_invalid');
    });
    expect(events).toContainEqual(
      expect.objectContaining({ type: 'auth.passkey.failed', reason: 'challenge_invalid' }),
    );
    expect(await list(user)).toHaveLength(1);
  });

  it('refuses a credential already registered (to anyone)', async () => {
    const user = await ctx.user(owner, 'agent');
    const { auth } = await register(user);
    const otherTenant = await ctx.tenant();
    const options = (await registrationOptions(otherTenant)).json<Creation>();
    const res = await post(
      '/api/v1/auth/passkeys/registration',
      { credential: auth.register(options) },
      otherTenant.headers,
    );
    expectProblem(res, 409, 'auth.passkey_exists');
  });

  it('expires a challenge after two minutes', async () => {
    const user = await ctx.user(owner, 'agent');
    const options = (await registrationOptions(user)).json<Creation>();
    ctx.clock.advance(2 * 60_000 + 1);
    const res = await post(
      '/api/v1/auth/passkeys/registration',
      { credential: SoftwareAuthenticator.create().register(options) },
      user.headers,
    );
    expectProblem(res, 400, 'auth.passkey_invalid');
  });
});

describe('step-up', () => {
  it('is required to register and to remove a passkey, not to list or rename', async () => {
    const user = await ctx.user(owner, 'agent');
    const { passkey, auth: first } = await register(user);
    const options = (await registrationOptions(user)).json<Creation>();
    staleAuthentication();
    expectProblem(await registrationOptions(user), 401, 'auth.step_up_required');
    const finish = await post(
      '/api/v1/auth/passkeys/registration',
      { credential: SoftwareAuthenticator.create().register(options) },
      user.headers,
    );
    expectProblem(finish, 401, 'auth.step_up_required');
    const remove = await ctx.app.inject({
      method: 'DELETE',
      url: `/api/v1/auth/passkeys/${passkey.id}`,
      headers: user.headers,
    });
    expectProblem(remove, 401, 'auth.step_up_required');
    expect(await list(user)).toHaveLength(1);
    const rename = await ctx.app.inject({
      method: 'PATCH',
      url: `/api/v1/auth/passkeys/${passkey.id}`,
      headers: user.headers,
      payload: { name: 'Phone' },
    });
    expect(rename.statusCode).toBe(200);

    // With a passkey on, the password alone no longer steps up: the passkey does.
    expectProblem(
      await ctx.stepUp(user, PASSWORD, { remoteAddress: nextAddress() }),
      400,
      'auth.step_up_code_required',
    );
    expect((await stepUpWithPasskey(user, first)).statusCode).toBe(200);
    expect((await registrationOptions(user)).statusCode).toBe(200);
  });

  it('steps up with a passkey: a new token, fresh for five minutes, recorded with method passkey', async () => {
    const user = await ctx.user(owner, 'agent');
    const { auth } = await register(user);
    staleAuthentication();
    const before = { ...user.headers };
    const events = await eventsOf(async () => {
      const res = await stepUpWithPasskey(user, auth);
      expect(res.statusCode, res.body).toBe(200);
      expect(res.json()).toMatchObject({ freshUntil: expect.any(String) });
    });
    expect(events).toContainEqual(
      expect.objectContaining({
        type: 'auth.step_up.succeeded',
        userId: user.userId,
        method: 'passkey',
      }),
    );
    expect(user.headers.cookie).not.toBe(before.cookie);
    expectProblem(await me(String(before.cookie)), 401, 'auth.unauthenticated');
    expect((await registrationOptions(user)).statusCode).toBe(200);
  });

  it("refuses a step-up with another session's challenge, another user's passkey or a replay", async () => {
    const user = await ctx.user(owner, 'agent');
    const other = await ctx.user(owner, 'agent');
    const elsewhere = await ctx.login(user.tenant, user.email);
    const { auth } = await register(user);
    const stranger = (await register(other)).auth;
    staleAuthentication();
    const options = async (s: Session) => {
      const res = await post('/api/v1/auth/step-up/passkey-options', undefined, s.headers);
      expect(res.statusCode, res.body).toBe(200);
      return res.json<Request>();
    };
    const attempt = (s: Session, credential: object) =>
      ctx.stepUp(s, { passkey: credential }, { remoteAddress: nextAddress() });

    const events = await eventsOf(async () => {
      // Options of another session of the same user.
      const foreign = await options(elsewhere);
      expectProblem(await attempt(user, auth.assert(foreign)), 400, 'auth.step_up_failed');
      // Another user's passkey.
      const mine = await options(user);
      expectProblem(await attempt(user, stranger.assert(mine)), 400, 'auth.step_up_failed');
      // A challenge answers once: the right passkey on a spent challenge is refused.
      expectProblem(await attempt(user, auth.assert(mine)), 400, 'auth.step_up_failed');
    });
    const failures = events.filter((e) => e.type === 'auth.passkey.failed');
    expect(failures.map((e) => 'reason' in e && e.reason)).toEqual([
      'challenge_invalid',
      'unknown_credential',
      'challenge_invalid',
    ]);
    expect(failures.every((e) => 'stage' in e && e.stage === 'step_up')).toBe(true);
    expect(events).toContainEqual(
      expect.objectContaining({ type: 'auth.step_up.failed', reason: 'bad_passkey' }),
    );
    expectProblem(await registrationOptions(user), 401, 'auth.step_up_required');
  });

  it('gives a session held by the MFA rule a new token once a passkey is its first factor', async () => {
    const boss = await ctx.tenant();
    const member = await ctx.user(boss, 'agent');
    const set = await ctx.app.inject({
      method: 'PATCH',
      url: '/api/v1/tenant/settings',
      headers: boss.headers,
      payload: { mfaRequired: 'all' },
    });
    expect(set.statusCode).toBe(200);
    const contacts = (headers: Record<string, string>) =>
      ctx.app.inject({ method: 'GET', url: '/api/v1/contacts', headers });
    expectProblem(await contacts(member.headers), 403, 'auth.mfa_enrolment_required');
    const before = { ...member.headers };
    const options = await registrationOptions(member);
    expect(options.statusCode, options.body).toBe(200);
    const res = await post(
      '/api/v1/auth/passkeys/registration',
      { credential: SoftwareAuthenticator.create().register(options.json<Creation>()) },
      member.headers,
    );
    expect(res.statusCode, res.body).toBe(201);
    expect(res.json<{ csrfToken?: string }>().csrfToken).toEqual(expect.any(String));
    renewSession(member, res);
    expect(member.headers.cookie).not.toBe(before.cookie);
    expectProblem(await me(String(before.cookie)), 401, 'auth.unauthenticated');
    expect((await contacts(member.headers)).statusCode).toBe(200);

    // A session that was not held keeps its token when a passkey is added.
    const free = await ctx.user(owner, 'agent');
    const again = await registrationOptions(free);
    const plain = await post(
      '/api/v1/auth/passkeys/registration',
      { credential: SoftwareAuthenticator.create().register(again.json<Creation>()) },
      free.headers,
    );
    expect(plain.statusCode).toBe(201);
    expect(plain.json<{ csrfToken?: string }>().csrfToken).toBeUndefined();
    expect(plain.headers['set-cookie']).toBeUndefined();
    expect((await me(free.cookie)).statusCode).toBe(200);
  });

  it('is refused to API keys (passkeys belong to a person)', async () => {
    const fresh = await ctx.tenant();
    const key = await post('/api/v1/api-keys', { name: 'script', role: 'agent' }, fresh.headers);
    expect(key.statusCode, key.body).toBe(201);
    const { key: secret } = key.json<{ key: string }>();
    const res = await ctx.app.inject({
      method: 'POST',
      url: '/api/v1/auth/passkeys/registration/options',
      headers: { authorization: `Bearer ${secret}` },
    });
    expectProblem(res, 403, 'policy.forbidden');
  });
});

describe('passwordless sign-in', () => {
  it('starts a session that works, advances the counter and records the sign-in', async () => {
    const user = await ctx.user(owner, 'agent');
    const { auth, passkey } = await register(user);
    const events = await eventsOf(async () => {
      const res = await passwordless(user.tenant, auth);
      expect(res.statusCode, res.body).toBe(200);
      const cookie = sessionCookie(res);
      expect(cookie).not.toBe(user.cookie);
      const who = await me(cookie);
      expect(who.statusCode).toBe(200);
      expect(who.json<{ id: string }>().id).toBe(user.userId);
      // The new session counts as freshly authenticated: it may register another passkey.
      const headers = { cookie, 'x-csrf-token': res.json<{ csrfToken: string }>().csrfToken };
      expect(
        (await post('/api/v1/auth/passkeys/registration/options', undefined, headers)).statusCode,
      ).toBe(200);
    });
    expect(events).toContainEqual(
      expect.objectContaining({
        type: 'auth.login.succeeded',
        userId: user.userId,
        passkey: 'passwordless',
        mfa: true,
      }),
    );
    const row = await ctx.database.handle.db
      .selectFrom('user_passkeys')
      .select(['counter', 'last_used_at', 'public_key'])
      .where('id', '=', passkey.id)
      .executeTakeFirstOrThrow();
    expect(Number(row.counter)).toBe(1);
    expect(row.last_used_at).not.toBeNull();
  });

  it('asks for user verification and any discoverable credential', async () => {
    const options = await passwordlessOptions(owner.tenant);
    expect(options.userVerification).toBe('required');
    expect(options.allowCredentials).toEqual([]);
    expect(options.rpId).toBe('localhost');
    // An unknown tenant gets options all the same, which then lead nowhere.
    const unknown = await passwordlessOptions('no-such-tenant');
    expect(unknown.challenge).toMatch(/^[A-Za-z0-9_-]{43}$/);
  });

  it('refuses wrong origin, RP id, challenge, signature, type and missing verification alike', async () => {
    const user = await ctx.user(owner, 'agent');
    const { auth } = await register(user);
    const stranger = generateKeyPairSync('ec', { namedCurve: 'P-256' }).privateKey;
    const bends: Array<[Bend, string]> = [
      [{ origin: 'https://evil.example' }, 'bad_response'],
      [{ origin: 'http://localhost:8081' }, 'bad_response'],
      [{ rpId: 'evil.example' }, 'bad_response'],
      [{ challenge: Buffer.alloc(32, 1).toString('base64url') }, 'challenge_invalid'],
      [{ signWith: stranger }, 'bad_response'],
      [{ type: 'webauthn.create' }, 'bad_response'],
      [{ flags: FLAG_UP }, 'bad_response'],
      [{ userHandle: Buffer.alloc(32, 9).toString('base64url') }, 'bad_response'],
      [{ userHandle: null }, 'bad_response'],
    ];
    for (const [bend, reason] of bends) {
      const events = await eventsOf(async () => {
        const res = await passwordless(user.tenant, auth, bend);
        expectProblem(res, 401, 'auth.passkey_invalid');
        expect(res.headers['set-cookie']).toBeUndefined();
      });
      expect(events, JSON.stringify(bend)).toContainEqual(
        expect.objectContaining({
          type: 'auth.passkey.failed',
          stage: 'passwordless',
          reason,
          userId: user.userId,
        }),
      );
      // Reset the counters between attempts: this test is about the answers, not the throttle.
      await ctx.database.handle.db.deleteFrom('auth_throttle').execute();
    }
    // None of those refusals touched the credential.
    expect((await list(user))[0]?.disabled).toBe(false);
    expect((await passwordless(user.tenant, auth)).statusCode).toBe(200);
  });

  it('refuses a replayed response and a spent challenge', async () => {
    const user = await ctx.user(owner, 'agent');
    const { auth } = await register(user);
    const options = await passwordlessOptions(user.tenant);
    const credential = auth.assert(options);
    const first = await post('/api/v1/auth/passkeys/login', { tenant: user.tenant, credential });
    expect(first.statusCode).toBe(200);
    const replay = await post('/api/v1/auth/passkeys/login', { tenant: user.tenant, credential });
    expectProblem(replay, 401, 'auth.passkey_invalid');
    // A new signature over the spent challenge is refused too.
    const again = await post('/api/v1/auth/passkeys/login', {
      tenant: user.tenant,
      credential: auth.assert(options),
    });
    expectProblem(again, 401, 'auth.passkey_invalid');
  });

  it("refuses an unknown credential and another tenant's", async () => {
    const user = await ctx.user(owner, 'agent');
    await register(user);
    const unknown = SoftwareAuthenticator.create();
    unknown.userHandle = Buffer.alloc(32, 3).toString('base64url');
    const events = await eventsOf(async () => {
      expectProblem(await passwordless(user.tenant, unknown), 401, 'auth.passkey_invalid');
    });
    expect(events).toContainEqual(
      expect.objectContaining({ type: 'auth.passkey.failed', reason: 'unknown_credential' }),
    );

    const elsewhere = await ctx.tenant();
    const { auth } = await register(elsewhere);
    // Options from our tenant, a credential of the other one: not found here.
    expectProblem(await passwordless(owner.tenant, auth), 401, 'auth.passkey_invalid');
    // Options from the other tenant, presented to ours: the challenge is not ours.
    const theirs = await passwordlessOptions(elsewhere.tenant);
    const res = await post('/api/v1/auth/passkeys/login', {
      tenant: owner.tenant,
      credential: auth.assert(theirs),
    });
    expectProblem(res, 401, 'auth.passkey_invalid');
    // And an unknown tenant.
    expectProblem(await passwordless('no-such-tenant', auth), 401, 'auth.passkey_invalid');
    // Still works at home.
    expect((await passwordless(elsewhere.tenant, auth)).statusCode).toBe(200);
  });

  it('refuses a disabled user', async () => {
    const user = await ctx.user(owner, 'agent');
    const { auth } = await register(user);
    await ctx.database.handle.db
      .updateTable('users')
      .set({ status: 'disabled' })
      .where('id', '=', user.userId)
      .execute();
    const events = await eventsOf(async () => {
      expectProblem(await passwordless(user.tenant, auth), 401, 'auth.passkey_invalid');
    });
    expect(events).toContainEqual(
      expect.objectContaining({ type: 'auth.passkey.failed', reason: 'disabled' }),
    );
  });

  it('is throttled as password sign-in is: failures lock the account', async () => {
    const user = await ctx.user(owner, 'agent');
    const { auth } = await register(user);
    const ip = nextAddress();
    const events = await eventsOf(async () => {
      for (let i = 0; i < 5; i++) {
        const res = await passwordless(user.tenant, auth, { origin: 'https://evil.example' }, ip);
        expectProblem(res, 401, 'auth.passkey_invalid');
      }
      // Locked now: even a right assertion is refused, with the same answer.
      expectProblem(await passwordless(user.tenant, auth, {}, ip), 401, 'auth.passkey_invalid');
    });
    expect(events).toContainEqual(
      expect.objectContaining({ type: 'auth.account.locked', userId: user.userId }),
    );
    expect(events).toContainEqual(
      expect.objectContaining({ type: 'auth.passkey.failed', reason: 'locked' }),
    );
    ctx.clock.advance(61_000);
    expect((await passwordless(user.tenant, auth, {}, ip)).statusCode).toBe(200);
  });

  it('accepts authenticators without a counter (zero on both sides)', async () => {
    const user = await ctx.user(owner, 'agent');
    const { auth } = await register(user);
    for (let i = 0; i < 3; i++) {
      expect((await passwordless(user.tenant, auth, { counter: 0 })).statusCode).toBe(200);
    }
  });
});

describe('cloned authenticators', () => {
  it('refuses a counter that did not move forward and disables the credential', async () => {
    const user = await ctx.user(owner, 'agent');
    const { auth, passkey } = await register(user);
    expect((await passwordless(user.tenant, auth)).statusCode).toBe(200);
    const clone = auth.clone();
    expect((await passwordless(user.tenant, auth)).statusCode).toBe(200);
    const events = await eventsOf(async () => {
      // The clone's counter (2) is not above the stored one (2).
      expectProblem(await passwordless(user.tenant, clone), 401, 'auth.passkey_invalid');
    });
    expect(events).toContainEqual(
      expect.objectContaining({
        type: 'auth.passkey.clone_detected',
        passkeyId: passkey.id,
        userId: user.userId,
        storedCounter: 2,
        presentedCounter: 2,
      }),
    );
    expect(events).toContainEqual(
      expect.objectContaining({ type: 'auth.passkey.failed', reason: 'cloned' }),
    );
    expect((await list(user))[0]).toMatchObject({ disabled: true, disabledReason: 'cloned' });
    // Which one is the original cannot be told: neither signs in any more.
    const after = await eventsOf(async () => {
      expectProblem(await passwordless(user.tenant, auth), 401, 'auth.passkey_invalid');
    });
    expect(after).toContainEqual(
      expect.objectContaining({ type: 'auth.passkey.failed', reason: 'credential_disabled' }),
    );
    expect(await userHasPasskey(ctx.database.handle.db, user.tenantId, user.userId)).toBe(false);
  });

  it('does not let a forged low-counter response disable a credential', async () => {
    const user = await ctx.user(owner, 'agent');
    const { auth } = await register(user);
    expect((await passwordless(user.tenant, auth)).statusCode).toBe(200);
    const forger = generateKeyPairSync('ec', { namedCurve: 'P-256' }).privateKey;
    const res = await passwordless(user.tenant, auth, { counter: 0, signWith: forger });
    expectProblem(res, 401, 'auth.passkey_invalid');
    expect((await list(user))[0]?.disabled).toBe(false);
    expect((await passwordless(user.tenant, auth)).statusCode).toBe(200);
  });
});

describe('passkey as the second step of a password sign-in', () => {
  it('completes the sign-in the password started', async () => {
    const user = await ctx.user(owner, 'agent');
    const { auth } = await register(user);
    const token = await mfaToken(user);
    const options = await post('/api/v1/auth/passkeys/login/mfa/options', { mfaToken: token });
    expect(options.statusCode, options.body).toBe(200);
    const request = options.json<Request>();
    expect(request.allowCredentials.map((c) => c.id)).toEqual([auth.id]);
    const events = await eventsOf(async () => {
      // As a browser's own toJSON() may send it: nulls for unknown values.
      const assertion = auth.assert(request, { userHandle: null });
      const res = await post('/api/v1/auth/passkeys/login/mfa', {
        mfaToken: token,
        credential: {
          ...assertion,
          authenticatorAttachment: null,
          response: { ...assertion.response, userHandle: null },
        },
      });
      expect(res.statusCode, res.body).toBe(200);
      expect((await me(sessionCookie(res))).statusCode).toBe(200);
    });
    expect(events).toContainEqual(
      expect.objectContaining({
        type: 'auth.login.succeeded',
        userId: user.userId,
        mfa: true,
        passkey: 'second_factor',
      }),
    );
    // The mfaToken is spent.
    const again = await post('/api/v1/auth/passkeys/login/mfa/options', { mfaToken: token });
    expectProblem(again, 401, 'auth.mfa_challenge_invalid');
  });

  it("refuses another user's passkey, a challenge of another sign-in and a clone", async () => {
    const user = await ctx.user(owner, 'agent');
    const { auth } = await register(user);
    const colleague = await ctx.user(owner, 'agent');
    const { auth: theirs } = await register(colleague);
    const token = await mfaToken(user);
    const options = (
      await post('/api/v1/auth/passkeys/login/mfa/options', { mfaToken: token })
    ).json<Request>();
    const events = await eventsOf(async () => {
      const res = await post('/api/v1/auth/passkeys/login/mfa', {
        mfaToken: token,
        credential: theirs.assert(options),
      });
      expectProblem(res, 401, 'auth.passkey_invalid');
    });
    expect(events).toContainEqual(
      expect.objectContaining({
        type: 'auth.passkey.failed',
        stage: 'second_factor',
        reason: 'unknown_credential',
      }),
    );
    expect(events).toContainEqual(
      expect.objectContaining({ type: 'auth.mfa.failed', reason: 'bad_passkey', stage: 'login' }),
    );
    // Options issued for one password sign-in do not serve another.
    const otherToken = await mfaToken(user);
    const otherOptions = (
      await post('/api/v1/auth/passkeys/login/mfa/options', { mfaToken: otherToken })
    ).json<Request>();
    const crossed = await post('/api/v1/auth/passkeys/login/mfa', {
      mfaToken: token,
      credential: auth.assert(otherOptions),
    });
    expectProblem(crossed, 401, 'auth.passkey_invalid');
    // Passwordless options do not complete a second step either.
    const passwordlessOnes = await passwordlessOptions(user.tenant);
    const wrongPurpose = await post('/api/v1/auth/passkeys/login/mfa', {
      mfaToken: token,
      credential: auth.assert(passwordlessOnes),
    });
    expectProblem(wrongPurpose, 401, 'auth.passkey_invalid');
    // Five refusals (the password steps count until a second factor succeeds) locked the
    // account; that is the throttle's business, tested elsewhere: start afresh.
    await ctx.database.handle.db.deleteFrom('auth_throttle').execute();
    // A clone with a stale counter is refused and the credential disabled.
    const clone = auth.clone();
    const fresh = (
      await post('/api/v1/auth/passkeys/login/mfa/options', { mfaToken: token })
    ).json<Request>();
    expect(
      (
        await post('/api/v1/auth/passkeys/login/mfa', {
          mfaToken: token,
          credential: auth.assert(fresh),
        })
      ).statusCode,
    ).toBe(200);
    const token3 = await mfaToken(user);
    const cloneOptions = (
      await post('/api/v1/auth/passkeys/login/mfa/options', { mfaToken: token3 })
    ).json<Request>();
    const cloneEvents = await eventsOf(async () => {
      const res = await post('/api/v1/auth/passkeys/login/mfa', {
        mfaToken: token3,
        credential: clone.assert(cloneOptions),
      });
      expectProblem(res, 401, 'auth.passkey_invalid');
    });
    expect(cloneEvents).toContainEqual(
      expect.objectContaining({ type: 'auth.passkey.clone_detected', userId: user.userId }),
    );
  });

  it('answers 409 for options when the account has no passkey, 401 for a bad token', async () => {
    const user = await ctx.user(owner, 'agent');
    const start = await post('/api/v1/auth/mfa/totp', undefined, user.headers);
    const { secret } = start.json<{ secret: string }>();
    const code = TOTP.generate({
      secret: Secret.fromBase32(secret),
      timestamp: ctx.clock.now().getTime(),
    });
    expect((await post('/api/v1/auth/mfa/totp/confirm', { code }, user.headers)).statusCode).toBe(
      200,
    );
    const token = await mfaToken(user);
    expectProblem(
      await post('/api/v1/auth/passkeys/login/mfa/options', { mfaToken: token }),
      409,
      'auth.passkey_not_registered',
    );
    expectProblem(
      await post('/api/v1/auth/passkeys/login/mfa/options', { mfaToken: 'nope' }),
      401,
      'auth.mfa_challenge_invalid',
    );
  });
});

describe('rename and removal', () => {
  it('renames and removes only your own passkeys', async () => {
    const user = await ctx.user(owner, 'agent');
    const { passkey } = await register(user);
    const colleague = await ctx.user(owner, 'admin');
    for (const method of ['PATCH', 'DELETE'] as const) {
      const res = await ctx.app.inject({
        method,
        url: `/api/v1/auth/passkeys/${passkey.id}`,
        headers: colleague.headers,
        ...(method === 'PATCH' ? { payload: { name: 'Mine now' } } : {}),
      });
      expectProblem(res, 404, 'resource.not_found');
    }
    const events = await eventsOf(async () => {
      const res = await ctx.app.inject({
        method: 'PATCH',
        url: `/api/v1/auth/passkeys/${passkey.id}`,
        headers: user.headers,
        payload: { name: '  YubiKey 5  ' },
      });
      expect(res.statusCode).toBe(200);
      expect(res.json<PasskeyView>().name).toBe('YubiKey 5');
    });
    expect(events).toContainEqual(
      expect.objectContaining({ type: 'auth.passkey.renamed', passkeyId: passkey.id }),
    );
  });

  it('ends the other sessions whenever a second factor goes, as TOTP removal does', async () => {
    const user = await ctx.user(owner, 'agent');
    const elsewhere = await ctx.login(user.tenant, user.email);
    const first = await register(user);
    const second = await register(user);
    const remove = (id: string) =>
      ctx.app.inject({
        method: 'DELETE',
        url: `/api/v1/auth/passkeys/${id}`,
        headers: user.headers,
      });
    const one = await eventsOf(async () => {
      expect((await remove(first.passkey.id)).statusCode).toBe(204);
    });
    expect(one).toContainEqual(
      expect.objectContaining({
        type: 'auth.mfa.removed',
        method: 'passkey',
        passkeyId: first.passkey.id,
        proof: 'step_up',
      }),
    );
    expect(one).toContainEqual(
      expect.objectContaining({ type: 'auth.session.revoked', reason: 'mfa_removed' }),
    );
    expectProblem(await me(elsewhere.cookie), 401, 'auth.unauthenticated');
    const later = await ctx.login(user.tenant, user.email).catch(() => undefined);
    // Signing in again now needs the remaining passkey (no session from the password alone).
    expect(later).toBeUndefined();

    const last = await eventsOf(async () => {
      expect((await remove(second.passkey.id)).statusCode).toBe(204);
    });
    expect(last).toContainEqual(
      expect.objectContaining({ type: 'auth.mfa.removed', passkeyId: second.passkey.id }),
    );
    expect((await me(user.cookie)).statusCode).toBe(200);
    expect(await list(user)).toEqual([]);
    // Without a second factor the password alone signs in again.
    const res = await post('/api/v1/auth/login', {
      tenant: user.tenant,
      email: user.email,
      password: PASSWORD,
    });
    expect(res.json<{ mfaRequired?: boolean }>().mfaRequired).toBeUndefined();
  });
});

const fixtures = path.join(path.dirname(fileURLToPath(import.meta.url)), '..', 'fixtures');
const BLNS = JSON.parse(
  fs.readFileSync(path.join(fixtures, 'blns', 'blns.from-txt.json'), 'utf8'),
) as string[];
const INJECTIONS = fs
  .readFileSync(path.join(fixtures, 'fuzzdb/sql-injection/detect/xplatform.txt'), 'utf8')
  .split(/\r?\n/)
  .filter((l) => l.trim() !== '');

describe('hostile input', () => {
  it('answers 400 problem+json for malformed credentials, never 500', async () => {
    const user = await ctx.user(owner, 'agent');
    const { auth } = await register(user);
    const options = await passwordlessOptions(user.tenant);
    const good = auth.assert(options);
    const variants: unknown[] = [
      null,
      'string',
      [],
      {},
      { ...good, id: "' OR 1=1 --" },
      { ...good, id: 'a'.repeat(5000), rawId: 'a'.repeat(5000) },
      { ...good, type: 'password' },
      { ...good, extra: 1 },
      { ...good, response: { ...good.response, signature: 'not base64!' } },
      { ...good, response: { ...good.response, clientDataJSON: '' } },
      { ...good, response: { ...good.response, authenticatorData: 42 } },
      { ...good, response: { ...good.response, userHandle: '../../etc/passwd' } },
      { ...good, clientExtensionResults: 'x' },
    ];
    for (const credential of variants) {
      const res = await post('/api/v1/auth/passkeys/login', { tenant: user.tenant, credential });
      expectProblem(res, 400, 'request.invalid');
    }
    const poisoned = await ctx.app.inject({
      method: 'POST',
      url: '/api/v1/auth/passkeys/login',
      headers: { 'content-type': 'application/json' },
      payload: `{"tenant":"${user.tenant}","credential":{"__proto__":{"admin":true}}}`,
    });
    expectProblem(poisoned, 400, 'request.malformed_json');
    for (const url of ['/api/v1/auth/passkeys/registration', '/api/v1/auth/passkeys/login/mfa']) {
      const res = await post(url, { credential: { id: '\u0000' }, mfaToken: 'x' }, user.headers);
      expectProblem(res, 400, 'request.invalid');
    }
  });

  it('turns well-formed garbage (random bytes, wrong CBOR) into the same refusal', async () => {
    const user = await ctx.user(owner, 'agent');
    const { auth } = await register(user);
    const garbage = Buffer.from('garbage').toString('base64url');
    const options = await passwordlessOptions(user.tenant);
    const good = auth.assert(options);
    for (const response of [
      { ...good.response, authenticatorData: garbage },
      { ...good.response, signature: garbage },
      { ...good.response, clientDataJSON: garbage },
    ]) {
      const res = await post('/api/v1/auth/passkeys/login', {
        tenant: user.tenant,
        credential: { ...good, response },
      });
      expect(res.statusCode, res.body).toBe(401);
      expect(res.json().code).toBe('auth.passkey_invalid');
    }
    const reg = (await registrationOptions(user)).json<Creation>();
    const registration = SoftwareAuthenticator.create().register(reg);
    const res = await post(
      '/api/v1/auth/passkeys/registration',
      {
        credential: {
          ...registration,
          response: { ...registration.response, attestationObject: garbage },
        },
      },
      user.headers,
    );
    expectProblem(res, 400, 'auth.passkey_invalid');
  });

  it('refuses hostile strings in tenant slugs, tokens and names without leaking', async () => {
    const user = await ctx.user(owner, 'agent');
    const { auth, passkey } = await register(user);
    const samples = [...BLNS.slice(0, 80), ...INJECTIONS.slice(0, 40)];
    for (const value of samples) {
      for (const [url, payload] of [
        ['/api/v1/auth/passkeys/login/options', { tenant: value }],
        ['/api/v1/auth/passkeys/login/mfa/options', { mfaToken: value }],
      ] as const) {
        const res = await post(url, payload);
        expect([200, 400, 401], `${url} ${JSON.stringify(value)}`).toContain(res.statusCode);
        expect(res.body).not.toMatch(/SQLITE_|syntax error|postgres|kysely/i);
      }
      const rename = await ctx.app.inject({
        method: 'PATCH',
        url: `/api/v1/auth/passkeys/${passkey.id}`,
        headers: user.headers,
        payload: { name: value },
      });
      expect([200, 400], JSON.stringify(value)).toContain(rename.statusCode);
    }
    const bad = await ctx.app.inject({
      method: 'PATCH',
      url: `/api/v1/auth/passkeys/${passkey.id}`,
      headers: user.headers,
      payload: { name: 'a\u0000b' },
    });
    expectProblem(bad, 400, 'request.invalid');
    const badId = await ctx.app.inject({
      method: 'DELETE',
      url: "/api/v1/auth/passkeys/1' OR '1'='1",
      headers: user.headers,
    });
    expectProblem(badId, 400, 'request.invalid');
    expect((await passwordless(user.tenant, auth)).statusCode).toBe(200);
  });
});

describe('documentation', () => {
  it('lists the passkey routes in the OpenAPI document', async () => {
    const res = await ctx.app.inject({ method: 'GET', url: '/api/v1/openapi.json' });
    const paths = Object.keys(res.json<{ paths: Record<string, unknown> }>().paths);
    for (const p of [
      '/api/v1/auth/passkeys',
      '/api/v1/auth/passkeys/{id}',
      '/api/v1/auth/passkeys/registration/options',
      '/api/v1/auth/passkeys/registration',
      '/api/v1/auth/passkeys/login/options',
      '/api/v1/auth/passkeys/login',
      '/api/v1/auth/passkeys/login/mfa/options',
      '/api/v1/auth/passkeys/login/mfa',
    ]) {
      expect(paths).toContain(p);
    }
  });
});
