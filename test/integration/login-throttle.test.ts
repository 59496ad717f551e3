import { hash } from '@node-rs/argon2';
import { Redis } from 'ioredis';
import { afterAll, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import { hashToken } from '../../src/modules/identity/tokens.ts';
import { createCollectingSink, type IdentityEvent } from '../../src/modules/auth/events.ts';
import { createTestContext, PASSWORD, type Session, type TestContext } from '../helpers/context.ts';

const sink = createCollectingSink();
let ctx: TestContext;
let owner: Session;
let address = 0;
/** Each test signs in from its own address, so the per-address budget stays out of the way. */
const nextAddress = () => `203.0.113.${++address}`;

beforeAll(async () => {
  ctx = await createTestContext({}, { audit: sink });
  owner = await ctx.tenant();
});
// The tests move the clock: the owner signs in afresh before each.
beforeEach(async () => {
  owner = await ctx.login(owner.tenant, owner.email);
});
afterAll(async () => ctx?.close());

const MINUTE = 60_000;

function attempt(
  who: { tenant: string; email: string },
  password: string,
  remoteAddress = '198.51.100.7',
) {
  return ctx.app.inject({
    method: 'POST',
    url: '/api/v1/auth/login',
    remoteAddress,
    payload: { tenant: who.tenant, email: who.email, password },
  });
}

/** Events recorded while `run` ran. */
async function eventsOf(run: () => Promise<unknown>): Promise<IdentityEvent[]> {
  const start = sink.events.length;
  await run();
  return sink.events.slice(start);
}

const failures = (events: IdentityEvent[]) =>
  events.flatMap((e) => (e.type === 'auth.login.failed' ? [e.reason] : []));

describe('account lockout', () => {
  it('locks an account for a minute after 5 consecutive failures, even for the right password', async () => {
    const user = await ctx.user(owner, 'agent');
    const ip = nextAddress();
    const events = await eventsOf(async () => {
      for (let i = 0; i < 5; i++)
        expect((await attempt(user, 'wrong guess number x', ip)).statusCode).toBe(401);
    });
    expect(failures(events)).toEqual(Array(5).fill('bad_password'));
    const locked = events.filter((e) => e.type === 'auth.account.locked');
    expect(locked).toEqual([
      expect.objectContaining({
        userId: user.userId,
        failures: 5,
        until: new Date(ctx.clock.now().getTime() + MINUTE).toISOString(),
      }),
    ]);

    const refused = await eventsOf(async () => {
      const res = await attempt(user, PASSWORD, ip);
      expect(res.statusCode).toBe(401);
      expect(res.json().code).toBe('auth.invalid_credentials');
      expect(res.headers['retry-after']).toBeUndefined();
      expect(res.headers['set-cookie']).toBeUndefined();
    });
    expect(failures(refused)).toEqual(['locked']);

    ctx.clock.advance(MINUTE);
    expect((await attempt(user, PASSWORD, ip)).statusCode).toBe(200);
    // The success reset the count: four more failures do not lock.
    for (let i = 0; i < 4; i++) await attempt(user, 'wrong guess number y', ip);
    expect((await attempt(user, PASSWORD, ip)).statusCode).toBe(200);
  });

  it('doubles the lockout with each further failure, up to 15 minutes', async () => {
    const user = await ctx.user(owner, 'agent');
    const ip = nextAddress();
    const events = await eventsOf(async () => {
      for (let i = 0; i < 5; i++) await attempt(user, 'wrong guess number x', ip);
      for (const minutes of [1, 2, 4, 8, 15, 15]) {
        ctx.clock.advance(minutes * MINUTE);
        expect((await attempt(user, 'wrong guess number z', ip)).statusCode).toBe(401);
      }
    });
    const lengths = events.flatMap((e) =>
      e.type === 'auth.account.locked' ? [(Date.parse(e.until!) - Date.parse(e.at)) / MINUTE] : [],
    );
    expect(lengths).toEqual([1, 2, 4, 8, 15, 15, 15]);
    // One second before the lock ends, the right password is still refused.
    ctx.clock.advance(15 * MINUTE - 1000);
    expect((await attempt(user, PASSWORD, ip)).statusCode).toBe(401);
    ctx.clock.advance(1000);
    expect((await attempt(user, PASSWORD, ip)).statusCode).toBe(200);
  });

  it('lets a burst of parallel guesses try no more passwords than the lockout allows', async () => {
    const user = await ctx.user(owner, 'agent');
    const ip = nextAddress();
    const events = await eventsOf(() =>
      Promise.all(
        Array.from({ length: 20 }, (_, i) => attempt(user, `parallel wrong guess ${i}`, ip)),
      ),
    );
    const reasons = failures(events);
    expect(reasons).toHaveLength(20);
    expect(reasons.filter((r) => r === 'bad_password')).toHaveLength(5);
    expect(reasons.filter((r) => r === 'locked')).toHaveLength(15);
  });

  it('locks the account for good after 100 failures, until an owner or admin unlocks it', async () => {
    const user = await ctx.user(owner, 'agent');
    // 99 earlier failures, as if spread over a day of lockouts.
    for (let i = 0; i < 99; i++) {
      ctx.clock.advance(15 * MINUTE);
      const claim = await ctx.services.throttleStore.claimAccount(user.userId, ctx.clock.now(), {
        free: 5,
        baseMs: MINUTE,
        maxMs: 15 * MINUTE,
        permanent: 100,
      });
      expect(claim.admitted).toBe(true);
    }
    ctx.clock.advance(15 * MINUTE);
    const events = await eventsOf(() => attempt(user, 'wrong guess number 100', nextAddress()));
    expect(events.find((e) => e.type === 'auth.account.locked')).toMatchObject({
      failures: 100,
      until: null,
    });
    ctx.clock.advance(7 * 24 * 60 * MINUTE);
    expect((await attempt(user, PASSWORD, nextAddress())).statusCode).toBe(401);

    owner = await ctx.login(owner.tenant, owner.email);
    const admin = await ctx.user(owner, 'admin');
    const member = await ctx.user(owner, 'agent');
    const unlock = (by: Session) =>
      ctx.app.inject({
        method: 'POST',
        url: `/api/v1/users/${user.userId}/unlock`,
        headers: by.headers,
      });
    const denied = await unlock(member);
    expect(denied.statusCode).toBe(403);
    expect(denied.json().code).toBe('policy.forbidden');
    expect((await attempt(user, PASSWORD, nextAddress())).statusCode).toBe(401);

    const unlocked = await eventsOf(async () => expect((await unlock(admin)).statusCode).toBe(200));
    expect(unlocked).toEqual([
      expect.objectContaining({
        type: 'auth.account.unlocked',
        userId: user.userId,
        by: admin.userId,
      }),
    ]);
    expect((await attempt(user, PASSWORD, nextAddress())).statusCode).toBe(200);
  });

  it("answers 404 to unlocking another tenant's user", async () => {
    const other = await ctx.tenant();
    const res = await ctx.app.inject({
      method: 'POST',
      url: `/api/v1/users/${other.userId}/unlock`,
      headers: owner.headers,
    });
    expect(res.statusCode).toBe(404);
    expect(res.json().code).toBe('resource.not_found');
  });

  it('spends the argon2 work on a locked account as on a wrong password', async () => {
    const user = await ctx.user(owner, 'agent');
    const ip = nextAddress();
    for (let i = 0; i < 5; i++) await attempt(user, 'wrong guess number x', ip);
    const median = async (password: string) => {
      const times: number[] = [];
      for (let i = 0; i < 5; i++) {
        const start = performance.now();
        expect((await attempt(user, password, ip)).statusCode).toBe(401);
        times.push(performance.now() - start);
      }
      return times.sort((a, b) => a - b)[2]!;
    };
    const lockedTime = await median(PASSWORD);
    const other = await ctx.user(owner, 'agent');
    const wrongTimes: number[] = [];
    for (let i = 0; i < 3; i++) {
      const start = performance.now();
      await attempt(other, 'wrong guess number q', nextAddress());
      wrongTimes.push(performance.now() - start);
    }
    const wrong = wrongTimes.sort((a, b) => a - b)[1]!;
    // Without the hashing a locked account would answer in about a millisecond.
    expect(lockedTime).toBeGreaterThan(wrong * 0.3);
  });
});

describe('identity events', () => {
  it('records success, each failure reason, logout and session expiry without secrets', async () => {
    const user = await ctx.user(owner, 'agent');
    const disabled = await ctx.user(owner, 'agent');
    await ctx.app.inject({
      method: 'PATCH',
      url: `/api/v1/users/${disabled.userId}`,
      headers: owner.headers,
      payload: { status: 'disabled' },
    });
    const ip = nextAddress();
    const secret = 'an attempted secret that must not leak';
    const nobody = `nobody-here@${owner.tenant}.example`;
    const events = await eventsOf(async () => {
      await attempt({ tenant: owner.tenant, email: nobody }, secret, ip);
      await attempt(user, secret, ip);
      await attempt(disabled, PASSWORD, ip);
      await attempt(user, PASSWORD, ip);
    });
    expect(events.map((e) => (e.type === 'auth.login.failed' ? e.reason : e.type))).toEqual([
      'unknown_user',
      'bad_password',
      'disabled',
      'auth.login.succeeded',
    ]);
    expect(events[0]).toMatchObject({
      userId: null,
      tenantId: owner.tenantId,
      ip,
      at: ctx.clock.now().toISOString(),
    });
    expect(events[1]).toMatchObject({ userId: user.userId, tenantId: owner.tenantId });
    const dump = JSON.stringify(events);
    expect(dump).not.toContain(secret);
    expect(dump).not.toContain(PASSWORD);
    expect(dump).not.toContain(nobody);
    expect(dump).not.toContain(user.email);

    const session = await ctx.login(owner.tenant, user.email);
    const out = await eventsOf(() =>
      ctx.app.inject({ method: 'POST', url: '/api/v1/auth/logout', headers: session.headers }),
    );
    expect(out).toEqual([
      expect.objectContaining({
        type: 'auth.logout',
        userId: user.userId,
        sessionId: expect.any(String),
      }),
    ]);

    const idle = await ctx.login(owner.tenant, user.email);
    ctx.clock.advance(31 * MINUTE);
    const expired = await eventsOf(() =>
      ctx.app.inject({ url: '/api/v1/auth/me', headers: idle.headers }),
    );
    expect(expired).toEqual([
      expect.objectContaining({
        type: 'auth.session.revoked',
        reason: 'idle_timeout',
        userId: user.userId,
      }),
    ]);
  });
});

describe('session revocation events', () => {
  it('records each session a disable or role change revokes, after the change', async () => {
    const user = await ctx.user(owner, 'agent');
    const second = await ctx.login(owner.tenant, user.email);
    const patch = (payload: object) =>
      ctx.app.inject({
        method: 'PATCH',
        url: `/api/v1/users/${user.userId}`,
        headers: owner.headers,
        payload,
      });
    const changed = await eventsOf(async () =>
      expect((await patch({ role: 'viewer' })).statusCode).toBe(200),
    );
    // The helper's session and the second one, each once.
    expect(changed).toHaveLength(2);
    for (const event of changed) {
      expect(event).toMatchObject({
        type: 'auth.session.revoked',
        reason: 'role_changed',
        userId: user.userId,
      });
    }
    expect(
      new Set(changed.map((e) => (e.type === 'auth.session.revoked' ? e.sessionId : ''))),
    ).toHaveProperty('size', 2);
    expect(second.userId).toBe(user.userId);
    await ctx.login(owner.tenant, user.email);
    const disabled = await eventsOf(async () =>
      expect((await patch({ status: 'disabled' })).statusCode).toBe(200),
    );
    expect(disabled).toEqual([
      expect.objectContaining({
        type: 'auth.session.revoked',
        reason: 'user_disabled',
        userId: user.userId,
      }),
    ]);
  });
});

describe('argon2 parameter upgrade', () => {
  it('re-hashes a weaker stored hash at the next successful sign-in, once', async () => {
    const user = await ctx.user(owner, 'agent');
    const weak = await hash(PASSWORD, {
      algorithm: 2,
      memoryCost: 8192,
      timeCost: 1,
      parallelism: 1,
    });
    const db = ctx.database.handle.db;
    await db
      .updateTable('users')
      .set({ password_hash: weak })
      .where('id', '=', user.userId)
      .execute();
    const stored = async () =>
      (
        await db
          .selectFrom('users')
          .select('password_hash')
          .where('id', '=', user.userId)
          .executeTakeFirstOrThrow()
      ).password_hash!;

    // A failed sign-in changes nothing.
    await attempt(user, 'wrong guess number r', nextAddress());
    expect(await stored()).toBe(weak);

    const first = await eventsOf(async () =>
      expect((await attempt(user, PASSWORD, nextAddress())).statusCode).toBe(200),
    );
    expect(first.map((e) => e.type)).toEqual(['auth.password.rehashed', 'auth.login.succeeded']);
    const upgraded = await stored();
    expect(upgraded).toMatch(/^\$argon2id\$v=19\$m=19456,t=2,p=1\$/);
    const second = await eventsOf(() => attempt(user, PASSWORD, nextAddress()));
    expect(second.map((e) => e.type)).toEqual(['auth.login.succeeded']);
    expect(await stored()).toBe(upgraded);
  });
});

describe('per-address budget', () => {
  let small: TestContext;
  const smallSink = createCollectingSink();
  beforeAll(async () => {
    small = await createTestContext(
      { CUSTOS_LOGIN_FAILURES_PER_ADDRESS_PER_DAY: '3' },
      { audit: smallSink },
    );
  });
  afterAll(async () => small?.close());

  it('refuses every sign-in from an address past its daily failures, alike to a wrong password', async () => {
    const boss = await small.tenant();
    const inject = (payload: object, remoteAddress: string) =>
      small.app.inject({ method: 'POST', url: '/api/v1/auth/login', remoteAddress, payload });
    const sprayer = '192.0.2.66';
    // Password spraying: one guess each at several accounts.
    for (const name of ['a', 'b', 'c']) {
      const res = await inject(
        {
          tenant: boss.tenant,
          email: `${name}@${boss.tenant}.example`,
          password: 'Summer2026Summer!',
        },
        sprayer,
      );
      expect(res.statusCode).toBe(401);
    }
    const start = smallSink.events.length;
    const blocked = await inject(
      { tenant: boss.tenant, email: boss.email, password: PASSWORD },
      sprayer,
    );
    const wrong = await inject(
      { tenant: boss.tenant, email: boss.email, password: 'not it at all, no' },
      '192.0.2.7',
    );
    for (const res of [blocked, wrong]) {
      expect(res.statusCode).toBe(401);
      expect(res.headers['retry-after']).toBeUndefined();
    }
    const withoutInstance = (body: Record<string, unknown>) =>
      Object.fromEntries(Object.entries(body).filter(([k]) => k !== 'instance'));
    expect(withoutInstance(blocked.json())).toEqual(withoutInstance(wrong.json()));
    expect(failures(smallSink.events.slice(start))).toEqual(['address_blocked', 'bad_password']);

    // Another address is not affected, and the next UTC day brings a new budget.
    expect(
      (await inject({ tenant: boss.tenant, email: boss.email, password: PASSWORD }, '192.0.2.8'))
        .statusCode,
    ).toBe(200);
    small.clock.advance(24 * 60 * MINUTE);
    expect(
      (await inject({ tenant: boss.tenant, email: boss.email, password: PASSWORD }, sprayer))
        .statusCode,
    ).toBe(200);
  });
});

describe('with CUSTOS_REDIS_URL', () => {
  let onRedis: TestContext;
  const ip = `192.0.2.${100 + (process.pid % 100)}`;
  let userId = '';
  beforeAll(async () => {
    onRedis = await createTestContext({ CUSTOS_REDIS_URL: 'redis://127.0.0.1:6379' });
  });
  afterAll(async () => {
    const redis = new Redis('redis://127.0.0.1:6379');
    const day = onRedis.clock.now().toISOString().slice(0, 10);
    await redis.del(
      `custos:throttle:account:${userId}`,
      `custos:throttle:address:${day}:${hashToken(ip)}`,
      // The helper signs the owner in from inject's default address.
      `custos:throttle:address:${day}:${hashToken('127.0.0.1')}`,
    );
    await redis.quit();
    await onRedis?.close();
  });

  it('keeps the counters in Redis and locks the account the same way', async () => {
    const boss = await onRedis.tenant();
    userId = boss.userId;
    const inject = (password: string) =>
      onRedis.app.inject({
        method: 'POST',
        url: '/api/v1/auth/login',
        remoteAddress: ip,
        payload: { tenant: boss.tenant, email: boss.email, password },
      });
    for (let i = 0; i < 5; i++) expect((await inject('wrong guess number x')).statusCode).toBe(401);
    expect((await inject(PASSWORD)).statusCode).toBe(401);
    const redis = new Redis('redis://127.0.0.1:6379');
    expect(await redis.hget(`custos:throttle:account:${boss.userId}`, 'count')).toBe('5');
    await redis.quit();
    // Nothing in the database.
    const rows = await onRedis.database.handle.db
      .selectFrom('auth_throttle')
      .select('key')
      .execute();
    expect(rows).toEqual([]);
    onRedis.clock.advance(MINUTE);
    expect((await inject(PASSWORD)).statusCode).toBe(200);
  });
});
