import { sql, type Kysely, type RawBuilder } from 'kysely';
import type { Database } from '../../db/schema.ts';

/** When a run of failures locks an account, and for how long. */
export interface LockRule {
  /** Failures allowed before the first lockout. */
  free: number;
  baseMs: number;
  maxMs: number;
  /** From this many failures the lock lasts until an administrator lifts it. */
  permanent: number;
}

/** `lockedUntil` of a permanent lock. */
export const FOREVER = '9999-12-31T23:59:59.999Z';

/** Length of the lockout that starts at the `count`-th consecutive failure (0: none). */
export function lockMs(rule: LockRule, count: number): number {
  if (count < rule.free) return 0;
  return Math.min(rule.baseMs * 2 ** (count - rule.free), rule.maxMs);
}

export interface AccountClaim {
  /** False: the account was locked at `now`; nothing was counted. */
  admitted: boolean;
  /** Consecutive failures, this attempt included when admitted. */
  count: number;
  /** ISO end of the lock this count implies (FOREVER when permanent), null when none. */
  lockedUntil: string | null;
}

/**
 * Failure counters shared by every node: in the database by default, in Redis when configured.
 * Every attempt is counted as a failure before its password is checked, in one atomic step with
 * the lock check, so a burst of parallel guesses cannot all slip in before the first one counts;
 * a success then resets (account) or gives back (address) its count.
 */
export interface ThrottleStore {
  /** Unless the account is locked at `now`, counts one failure and arms the lock it implies. */
  claimAccount(key: string, now: Date, rule: LockRule): Promise<AccountClaim>;
  resetAccount(key: string): Promise<void>;
  /**
   * Locks the account until `until` (FOREVER: until an administrator unlocks it, which
   * `resetAccount` does), whatever its count; used by detection responses.
   */
  lockAccount(key: string, until: string, now: Date): Promise<void>;
  /** Counts one failure unless `limit` is reached; forgotten `ttlMs` after the first. */
  claimAddress(
    key: string,
    now: Date,
    limit: number,
    ttlMs: number,
  ): Promise<{ admitted: boolean; count: number }>;
  releaseAddress(key: string): Promise<void>;
  close(): Promise<void>;
}

/** SQL `case` giving the lock end for the failure count `count`, computed from `now`. */
function lockCase(count: RawBuilder<number>, now: Date, rule: LockRule) {
  const end = (ms: number) => sql`cast(${new Date(now.getTime() + ms).toISOString()} as text)`;
  const branches = [];
  let n = rule.free;
  for (; n < rule.permanent && lockMs(rule, n) < rule.maxMs; n++) {
    branches.push(sql`when ${count} = ${n} then ${end(lockMs(rule, n))}`);
  }
  return sql<
    string | null
  >`case when ${count} >= ${rule.permanent} then cast(${FOREVER} as text) ${sql.join(branches, sql` `)} when ${count} >= ${n} then ${end(rule.maxMs)} else null end`;
}

const PURGE_EVERY = 500;

/** Counters in the `auth_throttle` table; each claim is one conditional upsert. */
export function createDatabaseThrottleStore(db: Kysely<Database>): ThrottleStore {
  let claims = 0;
  /** Expired address counters are deleted now and then (Redis expires its own). */
  async function purgeSometimes(now: string) {
    if (++claims % PURGE_EVERY !== 0) return;
    await db.deleteFrom('auth_throttle').where('expires_at', '<=', now).execute();
  }
  const read = (scope: string, key: string) =>
    db
      .selectFrom('auth_throttle')
      .select(['count', 'locked_until', 'expires_at'])
      .where('scope', '=', scope)
      .where('key', '=', key)
      .executeTakeFirst();

  return {
    async claimAccount(key, now, rule) {
      const at = now.toISOString();
      const first = lockCase(sql<number>`1`, now, rule);
      const row = await db
        .insertInto('auth_throttle')
        .values({
          scope: 'account',
          key,
          count: 1,
          last_at: at,
          expires_at: null,
          locked_until: first,
        })
        .onConflict((oc) =>
          oc
            .columns(['scope', 'key'])
            .doUpdateSet({
              count: sql<number>`auth_throttle.count + 1`,
              last_at: at,
              locked_until: lockCase(sql<number>`auth_throttle.count + 1`, now, rule),
            })
            .where((eb) =>
              eb.or([
                eb('auth_throttle.locked_until', 'is', null),
                eb('auth_throttle.locked_until', '<=', at),
              ]),
            ),
        )
        .returning(['count', 'locked_until'])
        .executeTakeFirst();
      if (row) return { admitted: true, count: Number(row.count), lockedUntil: row.locked_until };
      const locked = await read('account', key);
      return {
        admitted: false,
        count: Number(locked?.count ?? 0),
        lockedUntil: locked?.locked_until ?? null,
      };
    },
    async resetAccount(key) {
      await db
        .deleteFrom('auth_throttle')
        .where('scope', '=', 'account')
        .where('key', '=', key)
        .execute();
    },
    async lockAccount(key, until, now) {
      const at = now.toISOString();
      await db
        .insertInto('auth_throttle')
        .values({
          scope: 'account',
          key,
          count: 0,
          last_at: at,
          expires_at: null,
          locked_until: until,
        })
        .onConflict((oc) => oc.columns(['scope', 'key']).doUpdateSet({ locked_until: until }))
        .execute();
    },
    async claimAddress(key, now, limit, ttlMs) {
      const at = now.toISOString();
      await purgeSometimes(at);
      const expiresAt = new Date(now.getTime() + ttlMs).toISOString();
      const expired = sql<boolean>`auth_throttle.expires_at <= ${at}`;
      const row = await db
        .insertInto('auth_throttle')
        .values({
          scope: 'address',
          key,
          count: 1,
          last_at: at,
          expires_at: expiresAt,
          locked_until: null,
        })
        .onConflict((oc) =>
          oc
            .columns(['scope', 'key'])
            .doUpdateSet({
              // An expired counter starts again from one.
              count: sql<number>`case when ${expired} then 1 else auth_throttle.count + 1 end`,
              last_at: at,
              expires_at: sql<string>`case when ${expired} then cast(${expiresAt} as text) else auth_throttle.expires_at end`,
            })
            .where((eb) => eb.or([eb('auth_throttle.count', '<', limit), expired])),
        )
        .returning(['count'])
        .executeTakeFirst();
      if (row) return { admitted: true, count: Number(row.count) };
      return { admitted: false, count: Number((await read('address', key))?.count ?? limit) };
    },
    async releaseAddress(key) {
      await db
        .updateTable('auth_throttle')
        .set({ count: sql<number>`count - 1` })
        .where('scope', '=', 'address')
        .where('key', '=', key)
        .where('count', '>', 0)
        .execute();
    },
    async close() {},
  };
}
