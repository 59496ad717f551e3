import { createHash, randomBytes } from 'node:crypto';
import { Secret, TOTP } from 'otpauth';
import { safeEqual } from '../identity/tokens.ts';

/** RFC 6238 as every authenticator app reads it: HMAC-SHA-1, 6 digits, 30-second steps. */
export const TOTP_PERIOD_SECONDS = 30;
export const TOTP_DIGITS = 6;
/** Steps either side of now that are accepted (clock drift, slow typing). */
export const TOTP_WINDOW = 1;

export type TotpAlgorithm = 'SHA1' | 'SHA256' | 'SHA512';

/** A fresh 160-bit secret (RFC 4226 section 4 recommends 160 bits), base32 as apps expect. */
export function newTotpSecret(): string {
  return new Secret({ buffer: new Uint8Array(randomBytes(20)).buffer }).base32;
}

/** The `otpauth://totp/...` URI an authenticator app scans. */
export function totpUri(secretBase32: string, account: string): string {
  return new TOTP({
    issuer: 'Custos',
    label: account,
    secret: Secret.fromBase32(secretBase32),
    algorithm: 'SHA1',
    digits: TOTP_DIGITS,
    period: TOTP_PERIOD_SECONDS,
  }).toString();
}

/** The time step of an instant (T0 = 0). */
export function totpStep(at: Date, period = TOTP_PERIOD_SECONDS): number {
  return Math.floor(at.getTime() / 1000 / period);
}

export interface TotpCheck {
  /** Raw secret bytes (an `otpauth` Secret), e.g. `Secret.fromBase32(stored)`. */
  secret: Secret;
  code: string;
  at: Date;
  /** Steps at or below this one are refused (replay); `null`: none used yet. */
  lastStep?: number | null;
  algorithm?: TotpAlgorithm;
  digits?: number;
  period?: number;
  window?: number;
}

export type TotpOutcome =
  { ok: true; step: number } | { ok: false; reason: 'bad_code' | 'replayed' };

/**
 * Checks a code against the steps around `at` and reports which step it matched. The HMAC and
 * truncation are otpauth's (RFC 4226/6238); this only walks the window, compares in constant time
 * and refuses steps already used, so a code observed once cannot be played again.
 *
 * @example
 * ```ts
 * const r = checkTotp({ secret: Secret.fromBase32(b32), code: '287082', at: clock.now(), lastStep });
 * if (r.ok) await saveLastStep(r.step);
 * ```
 */
export function checkTotp(check: TotpCheck): TotpOutcome {
  const period = check.period ?? TOTP_PERIOD_SECONDS;
  const digits = check.digits ?? TOTP_DIGITS;
  const window = check.window ?? TOTP_WINDOW;
  const now = totpStep(check.at, period);
  const code = check.code.replace(/\s+/g, '');
  let matched: number | null = null;
  // Every step in the window is computed and compared, whatever matches first: same work always.
  for (let step = now - window; step <= now + window; step++) {
    const expected = TOTP.generate({
      secret: check.secret,
      algorithm: check.algorithm ?? 'SHA1',
      digits,
      period,
      timestamp: step * period * 1000,
    });
    if (safeEqual(expected, code) && matched === null) matched = step;
  }
  if (matched === null || code.length !== digits) return { ok: false, reason: 'bad_code' };
  if (check.lastStep != null && matched <= check.lastStep) return { ok: false, reason: 'replayed' };
  return { ok: true, step: matched };
}

const RECOVERY_ALPHABET = 'ABCDEFGHJKLMNPQRSTUVWXYZ23456789';

/**
 * Ten recovery codes of 16 characters from a 32-letter alphabet (80 bits each), shown as
 * `XXXX-XXXX-XXXX-XXXX`.
 */
export function newRecoveryCodes(count = 10): string[] {
  return Array.from({ length: count }, () => {
    const bytes = randomBytes(16);
    const chars = [...bytes].map((b) => RECOVERY_ALPHABET[b & 31] ?? 'A').join('');
    return chars.match(/.{4}/g)?.join('-') ?? chars;
  });
}

/**
 * Recovery codes carry 80 random bits, so a plain SHA-256 cannot be reversed by guessing: a slow
 * password hash (argon2) is only needed for low-entropy secrets people choose. The user id is
 * bound in, so a hash copied to another account matches nothing. Case, spaces and dashes are
 * ignored on input.
 */
export function hashRecoveryCode(userId: string, code: string): string {
  const normalized = code.toUpperCase().replace(/[\s-]+/g, '');
  return createHash('sha256')
    .update(`custos-recovery\u0000${userId}\u0000${normalized}`)
    .digest('hex');
}
