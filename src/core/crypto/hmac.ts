import { createHmac, timingSafeEqual } from 'node:crypto';
import type { SymmetricKey } from './aes-gcm.ts';
import { checkWellFormed, toBytes } from './encoding.ts';

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
 * `hmacSha256` as lower-case hex, digested straight to a string (no Buffer per call: a large
 * import computes three per contact, and their buffers weighed on garbage collection).
 *
 * @example
 * ```ts
 * const hex = hmacSha256Hex(key, 'message'); // 64 hex characters
 * ```
 */
export function hmacSha256Hex(key: SymmetricKey, message: Uint8Array | string): string {
  const hmac = createHmac('sha256', key);
  if (typeof message === 'string') {
    checkWellFormed(message, 'message');
    hmac.update(message, 'utf8');
  } else {
    hmac.update(toBytes(message, 'message'));
  }
  return hmac.digest('hex');
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
