import type { Clock } from '../../clock.ts';
import { hashToken } from '../identity/tokens.ts';
import type { ThrottleStore } from './throttle-store.ts';

/**
 * Sign-in throttling (NIST SP 800-63B 5.2.2). Per account: after `freeFailures` consecutive
 * failures the account is locked for `baseLockMs`, doubling with each further failure up to
 * `maxLockMs`; after `permanentAfter` it stays locked until an administrator unlocks it. A
 * success resets the count. Per client address: at most `failuresPerAddressPerDay` failures across
 * all accounts per UTC day (against password spraying); beyond that every attempt is refused.
 *
 * By design anyone who knows a user's e-mail can lock the account (denial of service): NIST
 * accepts this price for bounding online guessing. Administrators unlock with
 * `POST /api/v1/users/:id/unlock`; the per-address budget slows one source doing it to many.
 */
export interface ThrottleOptions {
  failuresPerAddressPerDay: number;
  freeFailures?: number;
  baseLockMs?: number;
  maxLockMs?: number;
  permanentAfter?: number;
}

export type AccountLock =
  | { locked: false; failures: number }
  /** `until` null: until an administrator unlocks the account. */
  | { locked: true; failures: number; until: Date | null };

const DAY_MS = 86_400_000;

export function createLoginThrottle(deps: {
  store: ThrottleStore;
  clock: Clock;
  options: ThrottleOptions;
}) {
  const { store, clock } = deps;
  const free = deps.options.freeFailures ?? 5;
  const base = deps.options.baseLockMs ?? 60_000;
  const max = deps.options.maxLockMs ?? 15 * 60_000;
  const permanent = deps.options.permanentAfter ?? 100;
  const budget = deps.options.failuresPerAddressPerDay;

  /** Addresses are personal data: only their hash is stored, per UTC day. */
  const addressKey = (ip: string | null, now: Date) =>
    `${now.toISOString().slice(0, 10)}:${hashToken(ip ?? 'unknown')}`;

  function lockOf(failures: number, lastAt: string | null): AccountLock {
    if (failures >= permanent) return { locked: true, failures, until: null };
    if (failures < free || lastAt === null) return { locked: false, failures };
    const delay = Math.min(base * 2 ** (failures - free), max);
    const until = new Date(Date.parse(lastAt) + delay);
    return until.getTime() > clock.now().getTime()
      ? { locked: true, failures, until }
      : { locked: false, failures };
  }

  async function accountLock(userId: string): Promise<AccountLock> {
    const state = await store.read('account', userId, clock.now());
    return lockOf(state.count, state.lastAt);
  }

  async function addressBlocked(ip: string | null): Promise<boolean> {
    const now = clock.now();
    return (await store.read('address', addressKey(ip, now), now)).count >= budget;
  }

  /** Counts a failure from `ip` (and against the account, when given); returns a new lock. */
  async function recordFailure(
    ip: string | null,
    userId?: string,
  ): Promise<AccountLock | undefined> {
    const now = clock.now();
    // Kept two days so a counter of the current UTC day always outlives it.
    await store.increment('address', addressKey(ip, now), now, 2 * DAY_MS);
    if (userId === undefined) return undefined;
    const state = await store.increment('account', userId, now, 0);
    const lock = lockOf(state.count, state.lastAt);
    return lock.locked ? lock : undefined;
  }

  async function recordSuccess(userId: string): Promise<void> {
    await store.reset('account', userId);
  }

  return { accountLock, addressBlocked, recordFailure, recordSuccess, unlock: recordSuccess };
}

export type LoginThrottle = ReturnType<typeof createLoginThrottle>;
