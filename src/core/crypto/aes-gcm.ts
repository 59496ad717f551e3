import { createCipheriv, createDecipheriv, createSecretKey, KeyObject } from 'node:crypto';
import type { CipherGCMTypes } from 'node:crypto';
import { CryptoError } from './errors.ts';
import { toBytes } from './encoding.ts';

/** GCM nonce length used everywhere in Custos: 96 bits, the size GCM is specified around. */
export const AES_GCM_NONCE_BYTES = 12;
/** Full 128-bit tags only; shorter tags are refused rather than silently accepted. */
export const AES_GCM_TAG_BYTES = 16;

/** A symmetric key: a `KeyObject` (preferred, created once) or raw bytes (converted per call). */
export type SymmetricKey = KeyObject | Uint8Array;

const ALGORITHMS: Readonly<Record<number, CipherGCMTypes>> = {
  16: 'aes-128-gcm',
  24: 'aes-192-gcm',
  32: 'aes-256-gcm',
};

/**
 * Wraps raw key bytes in a `KeyObject` once, so that later calls skip the conversion.
 * Throws `KEY_INVALID` unless the key has exactly `bytes` bytes (default 32, AES-256).
 *
 * @example
 * ```ts
 * const key = importAesKey(randomBytes(32));
 * const stored = encryptField(key, { keyId: 't1', keyVersion: 1 }, ad, 'alice@example.com');
 * ```
 */
export function importAesKey(material: Uint8Array, bytes: 16 | 24 | 32 = 32): KeyObject {
  if (!(material instanceof Uint8Array) || material.length !== bytes) {
    throw new CryptoError('KEY_INVALID', `expected a ${bytes * 8}-bit AES key`);
  }
  return createSecretKey(material);
}

/**
 * Sizes of secret `KeyObject`s already checked. A `KeyObject` never changes, and its `type` and
 * `symmetricKeySize` getters each call into C++: a profile of a large import showed them at ~5 us
 * per contact (every key is checked once per seal or wrap, and again for the cipher).
 */
const checkedSizes = new WeakMap<KeyObject, number>();

/** Size in bytes of a secret key, or throws `KEY_INVALID` for anything that is not one. */
export function secretKeySize(key: SymmetricKey): number {
  if (key instanceof KeyObject) {
    const known = checkedSizes.get(key);
    if (known !== undefined) return known;
    if (key.type !== 'secret' || key.symmetricKeySize === undefined) {
      throw new CryptoError('KEY_INVALID', 'expected a secret KeyObject');
    }
    checkedSizes.set(key, key.symmetricKeySize);
    return key.symmetricKeySize;
  }
  if (key instanceof Uint8Array) return key.length;
  throw new CryptoError('KEY_INVALID', 'expected a KeyObject or Uint8Array key');
}

function algorithmFor(key: SymmetricKey): CipherGCMTypes {
  const algorithm = ALGORITHMS[secretKeySize(key)];
  if (algorithm === undefined) {
    throw new CryptoError('KEY_INVALID', 'AES-GCM keys are 128, 192 or 256 bits');
  }
  return algorithm;
}

function checkIv(iv: Uint8Array): void {
  if (!(iv instanceof Uint8Array) || iv.length !== AES_GCM_NONCE_BYTES) {
    throw new RangeError(`AES-GCM nonce must be ${AES_GCM_NONCE_BYTES} bytes`);
  }
}

/**
 * One AES-GCM encryption (key of 128/192/256 bits, 96-bit nonce, 128-bit tag). Low level: the
 * caller owns nonce uniqueness. Field values should go through `encryptField` instead.
 *
 * @example
 * ```ts
 * const { ciphertext, tag } = aesGcmEncrypt(key, randomBytes(12), aad, plaintext);
 * ```
 */
export function aesGcmEncrypt(
  key: SymmetricKey,
  iv: Uint8Array,
  aad: Uint8Array,
  plaintext: Uint8Array | string,
): { ciphertext: Buffer; tag: Buffer } {
  const algorithm = algorithmFor(key);
  checkIv(iv);
  const cipher = createCipheriv(algorithm, key, iv, { authTagLength: AES_GCM_TAG_BYTES });
  cipher.setAAD(aad);
  const first = cipher.update(toBytes(plaintext, 'plaintext'));
  const last = cipher.final();
  const ciphertext = last.length === 0 ? first : Buffer.concat([first, last]);
  return { ciphertext, tag: cipher.getAuthTag() };
}

/**
 * One AES-GCM decryption. Any authentication failure (wrong key, nonce, AAD, ciphertext or
 * tag, or a tag that is not 16 bytes) throws `CryptoError('DECRYPT_FAILED')`, and no plaintext
 * is ever returned for it.
 *
 * @example
 * ```ts
 * const plaintext = aesGcmDecrypt(key, iv, aad, ciphertext, tag);
 * ```
 */
export function aesGcmDecrypt(
  key: SymmetricKey,
  iv: Uint8Array,
  aad: Uint8Array,
  ciphertext: Uint8Array,
  tag: Uint8Array,
): Buffer {
  const algorithm = algorithmFor(key);
  checkIv(iv);
  if (tag.length !== AES_GCM_TAG_BYTES) {
    throw new CryptoError('DECRYPT_FAILED', 'authentication tag has the wrong length');
  }
  const decipher = createDecipheriv(algorithm, key, iv, { authTagLength: AES_GCM_TAG_BYTES });
  decipher.setAAD(aad);
  decipher.setAuthTag(tag);
  const first = decipher.update(ciphertext);
  try {
    const last = decipher.final();
    return last.length === 0 ? first : Buffer.concat([first, last]);
  } catch (cause) {
    first.fill(0);
    throw new CryptoError('DECRYPT_FAILED', 'AES-GCM authentication failed', { cause });
  }
}
