import { randomBytes } from 'node:crypto';
import { Redis } from 'ioredis';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createManualClock } from '../../src/clock.ts';
import { createLoginThrottle } from '../../src/modules/auth/throttle.ts';
import { createRedisThrottleStore } from '../../src/modules/auth/throttle-redis-store.ts';
import {
  createDatabaseThrottleStore,
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

describe.each(stores)('throttle store: %s', (_name, storeOf) => {
  const key = () => randomBytes(8).toString('hex');
  const t0 = new Date('2026-03-01T10:00:00.000Z');

  it('counts failures one by one and reads them back with the time of the last', async () => {
    const store = storeOf();
    const k = key();
    expect(await store.read('account', k, t0)).toEqual({ count: 0, lastAt: null });
    for (let i = 1; i <= 3; i++) {
      const at = new Date(t0.getTime() + i * 1000);
      expect(await store.increment('account', k, at, 0)).toEqual({
        count: i,
        lastAt: at.toISOString(),
      });
    }
    expect(await store.read('account', k, t0)).toEqual({
      count: 3,
      lastAt: new Date(t0.getTime() + 3000).toISOString(),
    });
    // Scopes do not share counters.
    expect((await store.read('address', k, t0)).count).toBe(0);
  });

  it('loses no count when many nodes increment at once', async () => {
    const store = storeOf();
    const k = key();
    await Promise.all(Array.from({ length: 40 }, () => store.increment('address', k, t0, 60_000)));
    expect((await store.read('address', k, t0)).count).toBe(40);
  });

  it('forgets a counter once its time to live has passed, and resets on demand', async () => {
    const store = storeOf();
    const k = key();
    await store.increment('address', k, t0, 1000);
    expect((await store.read('address', k, t0)).count).toBe(1);
    if (_name === 'redis') await new Promise((r) => setTimeout(r, 1100));
    const later = new Date(t0.getTime() + 1001);
    expect((await store.read('address', k, later)).count).toBe(0);
    expect((await store.increment('address', k, later, 1000)).count).toBe(1);

    await store.increment('account', k, t0, 0);
    await store.reset('account', k);
    expect((await store.read('account', k, t0)).count).toBe(0);
  });

  it('shares one limit between two throttles (two nodes) over the same store', async () => {
    const clock = createManualClock(t0);
    const options = { failuresPerAddressPerDay: 3 };
    const nodeA = createLoginThrottle({ store: storeOf(), clock, options });
    const nodeB = createLoginThrottle({ store: storeOf(), clock, options });
    const ip = `198.51.100.${randomBytes(1)[0]}-${key()}`;
    await nodeA.recordFailure(ip);
    await nodeB.recordFailure(ip);
    expect(await nodeA.addressBlocked(ip)).toBe(false);
    await nodeA.recordFailure(ip);
    expect(await nodeB.addressBlocked(ip)).toBe(true);
    // A new UTC day, a new budget.
    clock.advance(24 * 3_600_000);
    expect(await nodeB.addressBlocked(ip)).toBe(false);
  });
});
