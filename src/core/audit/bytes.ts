import { Buffer } from 'node:buffer';
import { AuditIntegrityError } from './errors.ts';

/** Size in bytes of every hash in the tree (SHA-256). */
export const HASH_SIZE = 32;

const HEX_HASH = /^[0-9a-f]{64}$/;

/**
 * Lower-case hex of bytes.
 *
 * @example
 * ```ts
 * toHex(new Uint8Array([0, 255])); // '00ff'
 * ```
 */
export function toHex(bytes: Uint8Array): string {
  return Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength).toString('hex');
}

/**
 * Bytes of a 64-character lower-case hex SHA-256 hash; throws `HASH_INVALID` otherwise.
 *
 * @example
 * ```ts
 * const root = hashFromHex('e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855');
 * ```
 */
export function hashFromHex(hex: string): Uint8Array {
  if (typeof hex !== 'string' || !HEX_HASH.test(hex)) {
    throw new AuditIntegrityError('HASH_INVALID', 'expected 64 lower-case hex characters');
  }
  return Buffer.from(hex, 'hex');
}

/**
 * True when both byte strings are equal (hashes are public: no constant-time need).
 *
 * @example
 * ```ts
 * if (!bytesEqual(leafHash(bytes), row.leafHash)) throw new Error('changed');
 * ```
 */
export function bytesEqual(a: Uint8Array, b: Uint8Array): boolean {
  if (a.byteLength !== b.byteLength) return false;
  for (let i = 0; i < a.byteLength; i++) {
    if (a[i] !== b[i]) return false;
  }
  return true;
}

// Value of each lower-case hex digit by character code; -1 for every other code below 128.
const HEX_VALUE = new Int8Array(128).fill(-1);
for (let i = 0; i < 16; i++) HEX_VALUE['0123456789abcdef'.charCodeAt(i)] = i;

/**
 * True when `hex` is a 64-character lower-case hex SHA-256 hash (what `hashFromHex` accepts).
 *
 * @example
 * ```ts
 * isHashHex('e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855'); // true
 * ```
 */
export function isHashHex(hex: unknown): hex is string {
  return typeof hex === 'string' && HEX_HASH.test(hex);
}

/**
 * True when `bytes` equal the bytes `hex` spells (lower-case hex only: 'AB' never equals 0xab).
 * Compares in place, without decoding `hex` into a new array: for checking hashes stored as hex
 * against computed ones row by row.
 *
 * @example
 * ```ts
 * bytesEqualHex(new Uint8Array([0, 255]), '00ff'); // true
 * ```
 */
export function bytesEqualHex(bytes: Uint8Array, hex: string): boolean {
  if (typeof hex !== 'string' || hex.length !== bytes.byteLength * 2) return false;
  for (let i = 0; i < bytes.byteLength; i++) {
    const hi = hex.charCodeAt(2 * i);
    const lo = hex.charCodeAt(2 * i + 1);
    if (hi >= 128 || lo >= 128 || HEX_VALUE[hi]! * 16 + HEX_VALUE[lo]! !== bytes[i]) {
      return false; // a non-hex digit is -1: the sum then never equals a byte
    }
  }
  return true;
}

/** Throws `HASH_INVALID` unless `hash` is a 32-byte `Uint8Array`. */
export function assertHash(hash: unknown, what: string): asserts hash is Uint8Array {
  if (!(hash instanceof Uint8Array) || hash.byteLength !== HASH_SIZE) {
    throw new AuditIntegrityError('HASH_INVALID', `${what} must be a ${HASH_SIZE}-byte hash`);
  }
}

/** True for an integer in [0, 2^53). */
export function isIndex(value: unknown): value is number {
  return typeof value === 'number' && Number.isSafeInteger(value) && value >= 0;
}
