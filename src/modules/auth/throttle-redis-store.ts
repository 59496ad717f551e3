import { Redis } from 'ioredis';
import type { CounterState, ThrottleStore } from './throttle-store.ts';

/** Increment, stamp and (re)arm the expiry in one step, so concurrent nodes never lose a count. */
const INCREMENT = `
local count = redis.call('HINCRBY', KEYS[1], 'count', 1)
redis.call('HSET', KEYS[1], 'at', ARGV[1])
if tonumber(ARGV[2]) > 0 then redis.call('PEXPIRE', KEYS[1], ARGV[2]) end
return count`;

/** Counters in Redis (`CUSTOS_REDIS_URL`), shared by every node; Redis expires them. */
export function createRedisThrottleStore(url: string, prefix = 'custos:throttle:'): ThrottleStore {
  const redis = new Redis(url, { lazyConnect: true, maxRetriesPerRequest: 2 });
  const keyOf = (scope: string, key: string) => `${prefix}${scope}:${key}`;
  return {
    async increment(scope, key, now, ttlMs) {
      const at = now.toISOString();
      const count = await redis.eval(INCREMENT, 1, keyOf(scope, key), at, String(ttlMs));
      return { count: Number(count), lastAt: at };
    },
    async read(scope, key): Promise<CounterState> {
      const [count, at] = await redis.hmget(keyOf(scope, key), 'count', 'at');
      return count == null
        ? { count: 0, lastAt: null }
        : { count: Number(count), lastAt: at ?? null };
    },
    async reset(scope, key) {
      await redis.del(keyOf(scope, key));
    },
    async close() {
      // Never connected (a CLI command that signs nobody in): nothing to say goodbye to.
      if (redis.status === 'wait') redis.disconnect();
      else await redis.quit().catch(() => redis.disconnect());
    },
  };
}
