import { sql, type Kysely } from 'kysely';
import type { Database } from '../../db/schema.ts';

export type ThrottleScope = 'account' | 'address';

export interface CounterState {
  count: number;
  /** ISO time of the last failure counted, null when the counter is empty. */
  lastAt: string | null;
}

/**
 * Failure counters shared by every node: in the database by default, in Redis when configured.
 * A counter with a time to live is forgotten that long after its last increment; 0 keeps it.
 */
export interface ThrottleStore {
  increment(scope: ThrottleScope, key: string, now: Date, ttlMs: number): Promise<CounterState>;
  read(scope: ThrottleScope, key: string, now: Date): Promise<CounterState>;
  reset(scope: ThrottleScope, key: string): Promise<void>;
  close(): Promise<void>;
}

const EMPTY: CounterState = { count: 0, lastAt: null };

/** Counters in the `auth_throttle` table; one atomic upsert per failure. */
export function createDatabaseThrottleStore(db: Kysely<Database>): ThrottleStore {
  return {
    async increment(scope, key, now, ttlMs) {
      const at = now.toISOString();
      const expiresAt = ttlMs > 0 ? new Date(now.getTime() + ttlMs).toISOString() : null;
      const row = await db
        .insertInto('auth_throttle')
        .values({ scope, key, count: 1, last_at: at, expires_at: expiresAt })
        .onConflict((oc) =>
          oc.columns(['scope', 'key']).doUpdateSet({
            // An expired counter starts again from one.
            count: sql<number>`case when auth_throttle.expires_at is not null and auth_throttle.expires_at <= ${at} then 1 else auth_throttle.count + 1 end`,
            last_at: at,
            expires_at: expiresAt,
          }),
        )
        .returning(['count', 'last_at'])
        .executeTakeFirstOrThrow();
      return { count: Number(row.count), lastAt: row.last_at };
    },
    async read(scope, key, now) {
      const row = await db
        .selectFrom('auth_throttle')
        .select(['count', 'last_at', 'expires_at'])
        .where('scope', '=', scope)
        .where('key', '=', key)
        .executeTakeFirst();
      if (!row || (row.expires_at !== null && row.expires_at <= now.toISOString())) return EMPTY;
      return { count: Number(row.count), lastAt: row.last_at };
    },
    async reset(scope, key) {
      await db
        .deleteFrom('auth_throttle')
        .where('scope', '=', scope)
        .where('key', '=', key)
        .execute();
    },
    async close() {},
  };
}
