import { createSecretKey, hkdfSync } from 'node:crypto';
import type { KeyObject } from 'node:crypto';
import { secretKeySize } from './aes-gcm.ts';
import type { SymmetricKey } from './aes-gcm.ts';
import { lengthPrefixed, requireNonEmpty } from './encoding.ts';
import { CryptoError } from './errors.ts';

/** RFC 5869: at most 255 blocks of the hash output. */
export const HKDF_SHA256_MAX_LENGTH = 255 * 32;

/**
 * HKDF-SHA256 (RFC 5869, extract then expand) through `node:crypto`.
 * `length` must be 1..8160 bytes (`RangeError` otherwise).
 *
 * @example
 * ```ts
 * const okm = hkdfSha256(ikm, salt, info, 32);
 * ```
 */
export function hkdfSha256(
  ikm: SymmetricKey,
  salt: Uint8Array,
  info: Uint8Array,
  length: number,
): Buffer {
  if (!Number.isInteger(length) || length < 1 || length > HKDF_SHA256_MAX_LENGTH) {
    throw new RangeError(`HKDF-SHA256 output length must be 1..${HKDF_SHA256_MAX_LENGTH}`);
  }
  return Buffer.from(hkdfSync('sha256', ikm, salt, info, length));
}

/**
 * An explicit, unambiguous HKDF `info` label: the purpose name and its context parts,
 * length-prefixed under the domain `custos/hkdf/v1`. Two different (purpose, context) tuples
 * never produce the same bytes, so no two purposes can derive the same key.
 *
 * @example
 * ```ts
 * hkdfInfo('blind-index', tenantId, 'contact', 'email');
 * ```
 */
export function hkdfInfo(purpose: string, ...context: string[]): Buffer {
  requireNonEmpty(purpose, 'purpose');
  return lengthPrefixed('custos/hkdf/v1', [purpose, ...context]);
}

/**
 * Derives a 256-bit subkey from a tenant data key for one purpose, as a `KeyObject`.
 * The parent key is uniformly random, so the salt is empty (RFC 5869 section 3.1 allows it);
 * separation comes from `info` (build it with `hkdfInfo`).
 *
 * @example
 * ```ts
 * const exportKey = deriveSubkey(tenantKey, hkdfInfo('export-signing', tenantId));
 * ```
 */
export function deriveSubkey(parent: SymmetricKey, info: Uint8Array, bytes = 32): KeyObject {
  if (secretKeySize(parent) < 32) {
    throw new CryptoError('KEY_INVALID', 'parent key must be at least 256 bits');
  }
  return createSecretKey(hkdfSha256(parent, new Uint8Array(0), info, bytes));
}
