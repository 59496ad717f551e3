import { Redis } from 'ioredis';
import { AppError } from '../../errors.ts';
import { FOREVER, type ThrottleStore } from './throttle-store.ts';

const FOREVER_MS = Date.parse(FOREVER);

/**
 * Refuse while locked, else count one failure and arm the lock it implies: one script, so two
 * nodes never both see the same count. ARGV: now (ms), free, base, max, permanent, forever (ms).
 */
const CLAIM_ACCOUNT = `
local now = tonumber(ARGV[1])
local held = tonumber(redis.call('HGET', KEYS[1], 'until') or '0')
if held > now then
  return {0, tonumber(redis.call('HGET', KEYS[1], 'count') or '0'), held}
end
local count = redis.call('HINCRBY', KEYS[1], 'count', 1)
local free, base, max, permanent = tonumber(ARGV[2]), tonumber(ARGV[3]), tonumber(ARGV[4]), tonumber(ARGV[5])
local ends = 0
if count >= permanent then ends = tonumber(ARGV[6])
elseif count >= free then ends = now + math.min(base * 2 ^ (count - free), max) end
redis.call('HSET', KEYS[1], 'until', ends)
return {1, count, ends}`;

/** Count one failure unless the limit is reached; the first one arms the expiry. */
const CLAIM_ADDRESS = `
local count = tonumber(redis.call('HGET', KEYS[1], 'count') or '0')
if count >= tonumber(ARGV[1]) then return {0, count} end
count = redis.call('HINCRBY', KEYS[1], 'count', 1)
if count == 1 then redis.call('PEXPIRE', KEYS[1], ARGV[2]) end
return {1, count}`;

const RELEASE_ADDRESS = `
if tonumber(redis.call('HGET', KEYS[1], 'count') or '0') > 0 then
  redis.call('HINCRBY', KEYS[1], 'count', -1)
end
return 0`;

/**
 * Counters in Redis (`CUSTOS_REDIS_URL`), shared by every node; Redis expires them. When Redis
 * cannot be reached, every call fails fast with `server.unavailable` (503): sign-in is refused
 * rather than let through unthrottled, and the log says why (never the URL, which may hold a
 * password).
 */
export function createRedisThrottleStore(url: string, prefix = 'custos:throttle:'): ThrottleStore {
  // Lazy: a CLI command that signs nobody in never connects. One reconnection attempt per
  // command, so a request waits a fraction of a second for a Redis that is down, not seconds.
  const redis = new Redis(url, {
    lazyConnect: true,
    maxRetriesPerRequest: 1,
    connectTimeout: 2_000,
    retryStrategy: (times) => Math.min(times * 100, 1_000),
  });
  let lastError = 'no connection';
  // ioredis reports connection failures as events too; without a listener it prints them.
  redis.on('error', (error: Error) => {
    lastError = error.message;
  });
  const keyOf = (scope: string, key: string) => `${prefix}${scope}:${key}`;
  const unavailable = (error: unknown) => {
    const reason = error instanceof Error ? error.message : String(error);
    return new AppError(
      'unavailable',
      'server.unavailable',
      `redis (sign-in throttle) unreachable: ${reason}; last connection error: ${lastError}`,
      { detail: 'Sign-in is unavailable for a moment. Try again shortly.', cause: error },
    );
  };
  const guarded =
    <A extends unknown[], R>(fn: (...args: A) => Promise<R>) =>
    async (...args: A): Promise<R> => {
      try {
        return await fn(...args);
      } catch (error) {
        throw unavailable(error);
      }
    };
  const store: ThrottleStore = {
    async claimAccount(key, now, rule) {
      const [admitted, count, ends] = (await redis.eval(
        CLAIM_ACCOUNT,
        1,
        keyOf('account', key),
        now.getTime(),
        rule.free,
        rule.baseMs,
        rule.maxMs,
        rule.permanent,
        FOREVER_MS,
      )) as [number, number, number];
      return {
        admitted: admitted === 1,
        count,
        lockedUntil: ends === 0 ? null : new Date(ends).toISOString(),
      };
    },
    async resetAccount(key) {
      await redis.del(keyOf('account', key));
    },
    async lockAccount(key, until) {
      await redis.hset(keyOf('account', key), 'until', Date.parse(until));
    },
    async claimAddress(key, _now, limit, ttlMs) {
      const [admitted, count] = (await redis.eval(
        CLAIM_ADDRESS,
        1,
        keyOf('address', key),
        limit,
        ttlMs,
      )) as [number, number];
      return { admitted: admitted === 1, count };
    },
    async releaseAddress(key) {
      await redis.eval(RELEASE_ADDRESS, 1, keyOf('address', key));
    },
    async close() {
      if (redis.status === 'wait') redis.disconnect();
      else await redis.quit().catch(() => redis.disconnect());
    },
  };
  return {
    claimAccount: guarded((key, now, rule) => store.claimAccount(key, now, rule)),
    resetAccount: guarded((key) => store.resetAccount(key)),
    lockAccount: guarded((key, until, now) => store.lockAccount(key, until, now)),
    claimAddress: guarded((key, now, limit, ttlMs) => store.claimAddress(key, now, limit, ttlMs)),
    releaseAddress: guarded((key) => store.releaseAddress(key)),
    close: () => store.close(),
  };
}
