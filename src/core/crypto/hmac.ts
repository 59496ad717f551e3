import { createHmac, timingSafeEqual } from 'node:crypto';
import type { SymmetricKey } from './aes-gcm.ts';
import { toBytes } from './encoding.ts';

/**
 * HMAC-SHA256 (RFC 2104) through `node:crypto`; the full 32-byte tag.
 *
 * @example
 * ```ts
 * const tag = hmacSha256(key, 'message');
 * ```
 */
export function hmacSha256(key: SymmetricKey, message: Uint8Array | string): Buffer {
  return createHmac('sha256', key).update(toBytes(message, 'message')).digest();
}

/**
 * Constant-time check of a full 32-byte HMAC-SHA256 tag. Truncated tags are refused (`false`):
 * accepting "whatever length was sent" would let a forger send one byte.
 *
 * @example
 * ```ts
 * if (!verifyHmacSha256(key, body, tag)) throw new Error('bad signature');
 * ```
 */
export function verifyHmacSha256(
  key: SymmetricKey,
  message: Uint8Array | string,
  tag: Uint8Array,
): boolean {
  const expected = hmacSha256(key, message);
  return tag.length === expected.length && timingSafeEqual(expected, tag);
}
