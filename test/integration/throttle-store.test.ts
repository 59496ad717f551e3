import { randomBytes } from 'node:crypto';
import { Redis } from 'ioredis';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createManualClock } from '../../src/clock.ts';
import { addressGroup, createLoginThrottle } from '../../src/modules/auth/throttle.ts';
import { createRedisThrottleStore } from '../../src/modules/auth/throttle-redis-store.ts';
import {
  createDatabaseThrottleStore,
  FOREVER,
  type ThrottleStore,
} from '../../src/modules/auth/throttle-store.ts';
import { createTestDatabase, dialectUnderTest, type TestDatabase } from '../helpers/database.ts';

const REDIS_URL = 'redis://127.0.0.1:6379';
const prefix = `custos-test:${randomBytes(6).toString('hex')}:`;
let database: TestDatabase;
let redisStore: ThrottleStore;

beforeAll(async () => {
  database = await createTestDatabase();
  redisStore = createRedisThrottleStore(REDIS_URL, prefix);
});
afterAll(async () => {
  await redisStore?.close();
  // Remove whatever the tests left under the random prefix.
  const redis = new Redis(REDIS_URL);
  const keys = await redis.keys(`${prefix}*`);
  if (keys.length > 0) await redis.del(...keys);
  await redis.quit();
  await database?.drop();
});

const stores: [string, () => ThrottleStore][] = [
  [`database (${dialectUnderTest})`, () => createDatabaseThrottleStore(database.handle.db)],
  ['redis', () => redisStore],
];

const rule = { free: 5, baseMs: 60_000, maxMs: 15 * 60_000, permanent: 100 };
const MINUTE = 60_000;

describe.each(stores)('throttle store: %s', (name, storeOf) => {
  const key = () => randomBytes(8).toString('hex');
  const t0 = new Date('2026-03-01T10:00:00.000Z');
  const at = (ms: number) => new Date(t0.getTime() + ms);

  it('counts account failures and arms a lock from the fifth, doubling to 15 minutes', async () => {
    const store = storeOf();
    const k = key();
    for (let i = 1; i <= 4; i++) {
      expect(await store.claimAccount(k, t0, rule)).toEqual({
        admitted: true,
        count: i,
        lockedUntil: null,
      });
    }
    let now = t0.getTime();
    for (const [count, minutes] of [
      [5, 1],
      [6, 2],
      [7, 4],
      [8, 8],
      [9, 15],
      [10, 15],
    ] as const) {
      const claim = await store.claimAccount(k, new Date(now), rule);
      expect(claim).toEqual({
        admitted: true,
        count,
        lockedUntil: new Date(now + minutes * MINUTE).toISOString(),
      });
      // Refused, and not counted, until the lock ends.
      const during = await store.claimAccount(k, new Date(now + minutes * MINUTE - 1), rule);
      expect(during).toEqual({ ...claim, admitted: false });
      now += minutes * MINUTE;
    }
  });

  it('locks an account on demand (a detection response), fresh or mid-lockout, until reset', async () => {
    const store = storeOf();
    for (const failuresFirst of [0, 6]) {
      const k = key();
      for (let i = 0; i < failuresFirst; i++) await store.claimAccount(k, t0, rule);
      await store.lockAccount(k, FOREVER, t0);
      const later = at(365 * 24 * 60 * MINUTE);
      const refused = await store.claimAccount(k, later, rule);
      expect(refused.admitted).toBe(false);
      expect(refused.lockedUntil).toBe(FOREVER);
      await store.resetAccount(k);
      expect((await store.claimAccount(k, later, rule)).admitted).toBe(true);
    }
  });

  it('locks for good at the hundredth failure, until reset', async () => {
    const store = storeOf();
    const k = key();
    let last;
    for (let i = 0; i < 100; i++) last = await store.claimAccount(k, at(i * 15 * MINUTE), rule);
    expect(last).toEqual({ admitted: true, count: 100, lockedUntil: FOREVER });
    const years = await store.claimAccount(k, at(5 * 365 * 24 * 60 * MINUTE), rule);
    expect(years).toEqual({ admitted: false, count: 100, lockedUntil: FOREVER });
    await store.resetAccount(k);
    expect(await store.claimAccount(k, t0, rule)).toEqual({
      admitted: true,
      count: 1,
      lockedUntil: null,
    });
  });

  it('admits exactly as many parallel guesses as the lock rule allows', async () => {
    const store = storeOf();
    const k = key();
    const claims = await Promise.all(
      Array.from({ length: 40 }, () => store.claimAccount(k, t0, rule)),
    );
    // Five free failures, and the fifth arms the lock: the other 35 are refused.
    expect(claims.filter((c) => c.admitted)).toHaveLength(5);
  });

  it('keeps an address within its budget under parallel attempts, and gives back on success', async () => {
    const store = storeOf();
    const k = key();
    const claims = await Promise.all(
      Array.from({ length: 30 }, () => store.claimAddress(k, t0, 10, MINUTE)),
    );
    expect(claims.filter((c) => c.admitted)).toHaveLength(10);
    expect(await store.claimAddress(k, t0, 10, MINUTE)).toEqual({ admitted: false, count: 10 });
    await store.releaseAddress(k);
    expect(await store.claimAddress(k, t0, 10, MINUTE)).toEqual({ admitted: true, count: 10 });
  });

  it('forgets an address counter once its time to live has passed', async () => {
    const store = storeOf();
    const k = key();
    await store.claimAddress(k, t0, 1, 1000);
    expect((await store.claimAddress(k, t0, 1, 1000)).admitted).toBe(false);
    if (name === 'redis') await new Promise((r) => setTimeout(r, 1100));
    expect(await store.claimAddress(k, at(1001), 1, 1000)).toEqual({ admitted: true, count: 1 });
  });

  it('shares one limit between two throttles (two nodes) over the same store', async () => {
    const clock = createManualClock(t0);
    const options = { failuresPerAddressPerDay: 3 };
    const nodeA = createLoginThrottle({ store: storeOf(), clock, options });
    const nodeB = createLoginThrottle({ store: storeOf(), clock, options });
    const ip = `198.51.100.1-${key()}`;
    expect((await nodeA.claim(ip, undefined)).addressBlocked).toBe(false);
    expect((await nodeB.claim(ip, undefined)).addressBlocked).toBe(false);
    expect((await nodeA.claim(ip, undefined)).addressBlocked).toBe(false);
    expect((await nodeB.claim(ip, undefined)).addressBlocked).toBe(true);
    // A new UTC day, a new budget.
    clock.advance(24 * 3_600_000);
    expect((await nodeB.claim(ip, undefined)).addressBlocked).toBe(false);
  });
});

describe('addressGroup', () => {
  it('groups an IPv6 address by its /64 and keeps IPv4 addresses apart', () => {
    expect(addressGroup('2001:db8:1:2:aaaa::1')).toBe('2001:db8:1:2::/64');
    expect(addressGroup('2001:0db8:0001:0002:ffff:ffff:ffff:ffff')).toBe('2001:db8:1:2::/64');
    expect(addressGroup('2001:db8::1')).toBe('2001:db8:0:0::/64');
    expect(addressGroup('fe80::1%eth0')).toBe('fe80:0:0:0::/64');
    expect(addressGroup('::ffff:192.0.2.1')).toBe('192.0.2.1');
    expect(addressGroup('192.0.2.1')).not.toBe(addressGroup('192.0.2.2'));
    expect(addressGroup(null)).toBe('unknown');
  });
});
