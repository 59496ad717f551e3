import type { Kysely } from 'kysely';
import type { Clock } from '../../clock.ts';
import type { Database } from '../../db/schema.ts';
import { DECOY_PREFIX } from './throttle.ts';

/**
 * How long an ended session row is kept: for a day its cookie still earns the precise answer
 * (`auth.session_expired`); the audit log keeps the history for good.
 */
export const ENDED_SESSION_RETENTION_MS = 24 * 3_600_000;

/** How often the server runs the purge. */
export const AUTH_PURGE_INTERVAL_MS = 10 * 60_000;

export interface PurgeResult {
  mfaChallenges: number;
  sessions: number;
  throttleCounters: number;
}

/**
 * Deletes authentication rows nobody can use any more: sign-in challenges past their five
 * minutes (used or not), sessions ended (revoked, or past their absolute end) more than a day
 * ago, per-address throttle counters past their expiry and decoy account counters (unknown users,
 * see throttle.ts) untouched for two days. Real account counters stay: they carry the consecutive
 * failures that lengthen lockouts until a success or an administrator resets them.
 */
export function createAuthPurge(deps: { db: Kysely<Database>; clock: Clock }) {
  return async function purgeExpiredAuthRows(): Promise<PurgeResult> {
    const now = deps.clock.now();
    const at = now.toISOString();
    const ended = new Date(now.getTime() - ENDED_SESSION_RETENTION_MS).toISOString();
    const challenges = await deps.db
      .deleteFrom('mfa_challenges')
      .where('expires_at', '<=', at)
      .executeTakeFirst();
    const sessions = await deps.db
      .deleteFrom('sessions')
      .where((eb) => eb.or([eb('expires_at', '<=', ended), eb('revoked_at', '<=', ended)]))
      .executeTakeFirst();
    const stale = new Date(now.getTime() - 2 * 24 * 3_600_000).toISOString();
    const counters = await deps.db
      .deleteFrom('auth_throttle')
      .where((eb) =>
        eb.or([
          eb.and([eb('scope', '=', 'address'), eb('expires_at', '<=', at)]),
          eb.and([
            eb('scope', '=', 'account'),
            eb('key', 'like', `${DECOY_PREFIX}%`),
            eb('last_at', '<=', stale),
          ]),
        ]),
      )
      .executeTakeFirst();
    return {
      mfaChallenges: Number(challenges.numDeletedRows),
      sessions: Number(sessions.numDeletedRows),
      throttleCounters: Number(counters.numDeletedRows),
    };
  };
}

export type AuthPurge = ReturnType<typeof createAuthPurge>;

/**
 * Runs `purge` now and then every `intervalMs` (the timer does not keep the process alive); a
 * failed run is logged and the next one tries again. Returns the function that stops it and
 * waits for a run in progress.
 */
export function startAuthPurge(
  purge: AuthPurge,
  options: {
    intervalMs?: number;
    log: {
      info(obj: object, msg: string): void;
      warn(obj: object, msg: string): void;
    };
  },
): () => Promise<void> {
  let running: Promise<void> | undefined;
  const run = () => {
    running ??= purge()
      .then((result) => {
        if (result.mfaChallenges + result.sessions + result.throttleCounters > 0) {
          options.log.info({ purged: result }, 'expired authentication rows purged');
        }
      })
      .catch((error: unknown) => {
        options.log.warn({ err: error }, 'purge of expired authentication rows failed');
      })
      .finally(() => {
        running = undefined;
      });
  };
  run();
  const timer = setInterval(run, options.intervalMs ?? AUTH_PURGE_INTERVAL_MS);
  timer.unref();
  return async () => {
    clearInterval(timer);
    await running;
  };
}
