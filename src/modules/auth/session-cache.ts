import type { Clock } from '../../clock.ts';
import type { WriteWatch } from '../../db/write-watch.ts';

/**
 * Session rows by token hash, kept between requests so that an authenticated request does not
 * pay for the session lookup every time (it was the largest single cost of a request).
 *
 * Correctness rests on the write watch: any write this process makes to what the lookup reads
 * (sessions, users, tenant settings, tenants, second factors, break-glass grants) empties the cache, so a logout, a revocation, a
 * role change or a disabled account takes effect on the very next request. Only the periodic
 * `last_seen_at` touch is exempt; it updates the cached row itself. Writes by another process on
 * the same SQLite file (the command line) are seen after at most `ttlMs`. Used on SQLite only:
 * on PostgreSQL other nodes write too, and they cannot be watched from here.
 */
export interface SessionCache<Row> {
  get(tokenHash: string): Row | undefined;
  set(tokenHash: string, row: Row): void;
  /** Replaces a cached row (after the touch) without extending how long it is trusted. */
  replace(tokenHash: string, row: Row): void;
}

/** The session touch: the only write to the watched tables that leaves the cache valid. */
export const SESSION_TOUCH_SQL = /^update "sessions" set "last_seen_at" = \? where "id" = \?$/;
// The lookup also says whether the user has a second factor (MFA enforcement), their open
// break-glass grant, and their custom role (the permission model reads it from the actor).
const WATCHED =
  /"(?:sessions|users|tenant_settings|tenants|user_totp|user_passkeys|roles|break_glass_grants)"/;

/** Whether a write statement can change what the session lookup returns. */
export function affectsSessions(text: string): boolean {
  return WATCHED.test(text) && !SESSION_TOUCH_SQL.test(text);
}

export function createSessionCache<Row>(options: {
  watch: WriteWatch;
  clock: Clock;
  /** How long an entry is trusted without a local write: bounds other processes' staleness. */
  ttlMs: number;
  maxEntries: number;
}): SessionCache<Row> {
  const entries = new Map<string, { row: Row; loadedAt: number }>();
  let epoch = options.watch.epoch;

  function current() {
    if (options.watch.epoch !== epoch) {
      entries.clear();
      epoch = options.watch.epoch;
    }
  }

  return {
    get(tokenHash) {
      current();
      const entry = entries.get(tokenHash);
      if (!entry) return undefined;
      if (options.clock.now().getTime() - entry.loadedAt >= options.ttlMs) {
        entries.delete(tokenHash);
        return undefined;
      }
      return entry.row;
    },
    set(tokenHash, row) {
      current();
      if (!entries.has(tokenHash) && entries.size >= options.maxEntries) {
        // Oldest first: Map keeps insertion order.
        const oldest = entries.keys().next().value;
        if (oldest !== undefined) entries.delete(oldest);
      }
      entries.set(tokenHash, { row, loadedAt: options.clock.now().getTime() });
    },
    replace(tokenHash, row) {
      current();
      const entry = entries.get(tokenHash);
      if (entry) entry.row = row;
    },
  };
}
