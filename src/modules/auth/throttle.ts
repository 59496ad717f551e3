import type { Clock } from '../../clock.ts';
import { hashToken } from '../identity/tokens.ts';
import type { IdentityEvent } from './events.ts';
import { FOREVER, type LockRule, type ThrottleStore } from './throttle-store.ts';

/**
 * Sign-in throttling (NIST SP 800-63B 5.2.2). Per account: after `free` consecutive failures the
 * account is locked for `baseMs`, doubling with each further failure up to `maxMs`; from
 * `permanent` failures it stays locked until an administrator unlocks it. A success resets the
 * count. Per client address: at most `failuresPerAddressPerDay` failures across all accounts per
 * UTC day (against password spraying); beyond that every attempt from it is refused.
 *
 * By design anyone who knows a user's e-mail can lock the account (denial of service): NIST
 * accepts this price for bounding online guessing. Administrators unlock with
 * `POST /api/v1/users/:id/unlock`; the per-address budget limits how many accounts one source
 * can lock. Attempts refused during a lockout are not counted, so they neither lengthen it nor
 * bring the permanent lock closer: reaching it takes about a day of paced guessing.
 */
export interface ThrottleOptions extends Partial<LockRule> {
  failuresPerAddressPerDay: number;
}

const DAY_MS = 86_400_000;

/** Account counters under this prefix are decoys (see `claim`); the purge job deletes old ones. */
export const DECOY_PREFIX = 'decoy:';

export interface AttemptClaim {
  /** Opaque; hand back to `succeeded`. */
  addressKey: string;
  addressBlocked: boolean;
  /** Absent for an unknown user (nothing to lock). */
  account?: { admitted: boolean; failures: number; lockedUntil: Date | null; permanent: boolean };
}

/**
 * The `auth.account.locked` event when this failed attempt armed a lock (attempts are counted
 * before their outcome is known), for every path that checks a secret: sign-in, the second
 * step, step-up.
 */
export function lockoutEvent(
  claim: AttemptClaim,
  who: { tenantId: string; userId: string },
  meta: { requestId: string; ip: string | null },
  at: string,
): IdentityEvent | undefined {
  const account = claim.account;
  if (!account?.admitted || !account.lockedUntil) return undefined;
  return {
    type: 'auth.account.locked',
    at,
    requestId: meta.requestId,
    ip: meta.ip,
    tenantId: who.tenantId,
    userId: who.userId,
    failures: account.failures,
    until: account.permanent ? null : account.lockedUntil.toISOString(),
  };
}

export function createLoginThrottle(deps: {
  store: ThrottleStore;
  clock: Clock;
  options: ThrottleOptions;
}) {
  const { store, clock, options } = deps;
  const rule: LockRule = {
    free: options.free ?? 5,
    baseMs: options.baseMs ?? 60_000,
    maxMs: options.maxMs ?? 15 * 60_000,
    permanent: options.permanent ?? 100,
  };

  /** Addresses are personal data: only their hash is stored, per UTC day. */
  const addressKey = (ip: string | null, now: Date) =>
    `${now.toISOString().slice(0, 10)}:${hashToken(addressGroup(ip))}`;

  /**
   * Counts the attempt as a failure before the password is checked (the caller hashes in
   * parallel, whatever the answer). Address and account are claimed together, so a known user
   * costs the same round trips as an unknown one; an attempt from a blocked address still counts
   * against the account it names.
   */
  async function claim(ip: string | null, userId: string | undefined): Promise<AttemptClaim> {
    const now = clock.now();
    const key = addressKey(ip, now);
    const [address, account] = await Promise.all([
      // Kept two days, so a counter of the current UTC day always outlives the day.
      store.claimAddress(key, now, options.failuresPerAddressPerDay, 2 * DAY_MS),
      userId === undefined
        ? // An unknown user (or tenant) costs the same round trip as a known one: a decoy
          // counter of the address (already a hash), whose outcome is ignored.
          store.claimAccount(`${DECOY_PREFIX}${key}`, now, rule).then(() => undefined)
        : store.claimAccount(userId, now, rule),
    ]);
    const claimed: AttemptClaim = { addressKey: key, addressBlocked: !address.admitted };
    if (!account) return claimed;
    return {
      ...claimed,
      account: {
        admitted: account.admitted,
        failures: account.count,
        lockedUntil: account.lockedUntil === null ? null : new Date(account.lockedUntil),
        permanent: account.lockedUntil === FOREVER,
      },
    };
  }

  /** The attempt was right after all: the account starts afresh, the address gets its count back. */
  async function succeeded(claimed: AttemptClaim, userId: string): Promise<void> {
    await store.resetAccount(userId);
    await store.releaseAddress(claimed.addressKey);
  }

  /**
   * The password was right but a second factor is owed: the address gets its count back, the
   * account keeps it until `succeeded` (so guessing codes cannot reset the lockout).
   */
  async function passedFirstFactor(claimed: AttemptClaim): Promise<void> {
    await store.releaseAddress(claimed.addressKey);
  }

  async function unlock(userId: string): Promise<void> {
    await store.resetAccount(userId);
  }

  /** Locks the account until an administrator unlocks it (a detection response). */
  async function lock(userId: string): Promise<void> {
    await store.lockAccount(userId, FOREVER, clock.now());
  }

  return { claim, succeeded, passedFirstFactor, unlock, lock, rule };
}

/**
 * What one client controls: an IPv4 address, or an IPv6 /64 (one subscriber's usual allocation,
 * which would otherwise give a sprayer 2^64 fresh budgets).
 */
export function addressGroup(ip: string | null): string {
  if (!ip) return 'unknown';
  const mapped = /^::ffff:(\d+\.\d+\.\d+\.\d+)$/i.exec(ip);
  if (mapped?.[1]) return mapped[1];
  if (!ip.includes(':')) return ip;
  const address = ip.split('%')[0] ?? '';
  const [head = '', tail] = address.split('::');
  const first = head === '' ? [] : head.split(':');
  const last = tail === undefined || tail === '' ? [] : tail.split(':');
  const groups =
    tail === undefined
      ? first
      : [
          ...first,
          ...Array<string>(Math.max(0, 8 - first.length - last.length)).fill('0'),
          ...last,
        ];
  return `${groups
    .slice(0, 4)
    .map((g) => (parseInt(g, 16) || 0).toString(16))
    .join(':')}::/64`;
}

export type LoginThrottle = ReturnType<typeof createLoginThrottle>;
