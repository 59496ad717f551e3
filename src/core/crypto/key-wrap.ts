import { createSecretKey, randomBytes } from 'node:crypto';
import type { KeyObject } from 'node:crypto';
import { AES_GCM_NONCE_BYTES, AES_GCM_TAG_BYTES, aesGcmDecrypt, aesGcmEncrypt } from './aes-gcm.ts';
import { lengthPrefixed, requireNonEmpty } from './encoding.ts';
import { CryptoError, isCryptoError } from './errors.ts';
import { pooledRandomBytes } from './random.ts';
import type { RandomSource } from './random.ts';

/**
 * Key hierarchy: a root key held by a `KeyProvider` wraps per-tenant data keys; a tenant key
 * wraps per-subject keys with `wrapKey`. Rotating the root or a tenant key re-wraps the keys
 * below it (cheap: one AEAD call per key); it does not touch field values. Re-encrypting values
 * is only needed when the key that encrypts them (tenant or subject key) rotates.
 *
 * Wrapped form (`wrapKey`, `LocalKeyProvider`): version byte 0x01, 12-byte nonce, encrypted key,
 * 16-byte tag. The GCM associated data names the wrapping key id and what is wrapped (see
 * `wrapAd`), so a wrapped tenant key cannot be swapped for another tenant's or version's.
 */

/**
 * A holder of root keys that never need to leave it. Methods are async so an HSM (PKCS#11,
 * where `wrap`/`unwrap` map to `C_WrapKey`/`C_UnwrapKey` or `C_Encrypt`/`C_Decrypt` with
 * CKM_AES_GCM) or a cloud KMS (Encrypt/Decrypt with an encryption context built from `ad`) fit
 * the same shape. The wrapped bytes are opaque and provider specific; store them with the
 * provider `id` and `keyId`.
 */
export interface KeyProvider {
  /** Stable identifier of the provider kind and instance, e.g. `local`, `pkcs11:softhsm`. */
  readonly id: string;
  /** Encrypts a data key under the provider's key `keyId`, bound to `ad`. */
  wrap(keyId: string, plaintextKey: Uint8Array, ad: Uint8Array): Promise<Uint8Array>;
  /**
   * Inverse of `wrap`. Throws `KEY_NOT_FOUND` for an unknown `keyId`, `UNWRAP_FAILED` if the
   * bytes or `ad` do not authenticate. The caller owns (and should zero) the returned bytes.
   */
  unwrap(keyId: string, wrapped: Uint8Array, ad: Uint8Array): Promise<Uint8Array>;
}

/** Associated data naming what a wrapped key is; length-prefixed, never separator-joined. */
export const wrapAd = {
  /**
   * @example
   * ```ts
   * await provider.wrap('root', tenantKeyBytes, wrapAd.tenantKey(tenantId, 1));
   * ```
   */
  tenantKey(tenantId: string, version: number): Buffer {
    requireNonEmpty(tenantId, 'tenantId');
    if (!Number.isInteger(version) || version < 0) throw new RangeError('version must be >= 0');
    return lengthPrefixed('custos/wrap/v1', ['tenant-key', tenantId, `v${version}`]);
  },
  /**
   * A tenant's blind-index key: its own label, so a wrapped index key can never be presented
   * as the data key of the same version (or the reverse).
   *
   * @example
   * ```ts
   * await provider.wrap('root', indexKeyBytes, wrapAd.tenantIndexKey(tenantId, 1));
   * ```
   */
  tenantIndexKey(tenantId: string, version: number): Buffer {
    requireNonEmpty(tenantId, 'tenantId');
    if (!Number.isInteger(version) || version < 0) throw new RangeError('version must be >= 0');
    return lengthPrefixed('custos/wrap/v1', ['tenant-index-key', tenantId, `v${version}`]);
  },
  /**
   * @example
   * ```ts
   * wrapKey(tenantKey, subjectKeyBytes, wrapAd.subjectKey(tenantId, contactId));
   * ```
   */
  subjectKey(tenantId: string, subjectId: string): Buffer {
    requireNonEmpty(tenantId, 'tenantId');
    requireNonEmpty(subjectId, 'subjectId');
    return lengthPrefixed('custos/wrap/v1', ['subject-key', tenantId, subjectId]);
  },
} as const;

const WRAP_VERSION = 1;

/**
 * A fresh random 256-bit data key.
 *
 * @example
 * ```ts
 * const tenantKeyBytes = generateDataKey();
 * ```
 */
export function generateDataKey(random: RandomSource = randomBytes): Uint8Array {
  const key = random(32);
  if (key.length !== 32) throw new RangeError('random source returned too few bytes');
  return key;
}

function wrapAad(wrappingKeyId: string, ad: Uint8Array): Buffer {
  if (!(ad instanceof Uint8Array) || ad.length === 0) {
    throw new TypeError('ad must name what is wrapped (see wrapAd)');
  }
  return Buffer.concat([lengthPrefixed('custos/key-wrap/v1', [wrappingKeyId]), ad]);
}

/**
 * Wraps (AES-256-GCM) a data key under a wrapping key, bound to `ad`.
 *
 * @example
 * ```ts
 * const wrapped = wrapKey(tenantKey, 'tenant:42@3', subjectKeyBytes, wrapAd.subjectKey('42', contactId));
 * ```
 */
export function wrapKey(
  wrappingKey: KeyObject,
  wrappingKeyId: string,
  plaintextKey: Uint8Array,
  ad: Uint8Array,
  options: { random?: RandomSource } = {},
): Buffer {
  requireNonEmpty(wrappingKeyId, 'wrappingKeyId');
  if (!(plaintextKey instanceof Uint8Array) || plaintextKey.length === 0) {
    throw new CryptoError('KEY_INVALID', 'nothing to wrap');
  }
  const nonce = (options.random ?? pooledRandomBytes)(AES_GCM_NONCE_BYTES);
  const { ciphertext, tag } = aesGcmEncrypt(
    wrappingKey,
    nonce,
    wrapAad(wrappingKeyId, ad),
    plaintextKey,
  );
  return Buffer.concat([Buffer.of(WRAP_VERSION), nonce, ciphertext, tag]);
}

/**
 * Inverse of `wrapKey`. Throws `ENVELOPE_MALFORMED` (too short), `ENVELOPE_VERSION`, or
 * `UNWRAP_FAILED` (wrong wrapping key, wrong `ad`, tampered bytes).
 *
 * @example
 * ```ts
 * const subjectKey = importAesKey(unwrapKey(tenantKey, 'tenant:42@3', wrapped, wrapAd.subjectKey('42', contactId)));
 * ```
 */
export function unwrapKey(
  wrappingKey: KeyObject,
  wrappingKeyId: string,
  wrapped: Uint8Array,
  ad: Uint8Array,
): Buffer {
  requireNonEmpty(wrappingKeyId, 'wrappingKeyId');
  if (wrapped.length < 1 + AES_GCM_NONCE_BYTES + 1 + AES_GCM_TAG_BYTES) {
    throw new CryptoError('ENVELOPE_MALFORMED', 'wrapped key is truncated');
  }
  if (wrapped[0] !== WRAP_VERSION) {
    throw new CryptoError('ENVELOPE_VERSION', `unsupported wrapped key version ${wrapped[0]}`);
  }
  const nonceEnd = 1 + AES_GCM_NONCE_BYTES;
  try {
    return aesGcmDecrypt(
      wrappingKey,
      wrapped.subarray(1, nonceEnd),
      wrapAad(wrappingKeyId, ad),
      wrapped.subarray(nonceEnd, wrapped.length - AES_GCM_TAG_BYTES),
      wrapped.subarray(wrapped.length - AES_GCM_TAG_BYTES),
    );
  } catch (err) {
    if (isCryptoError(err, 'DECRYPT_FAILED')) {
      throw new CryptoError('UNWRAP_FAILED', 'wrapped key did not authenticate', { cause: err });
    }
    throw err;
  }
}

/**
 * The default provider: one 32-byte root key held in memory (as a `KeyObject`; the caller can
 * zero its copy afterwards). Reading the key file or environment is the caller's job.
 *
 * @example
 * ```ts
 * const provider = createLocalKeyProvider({ rootKey: rootKeyBytes, keyId: 'root-2026' });
 * const wrapped = await provider.wrap('root-2026', tenantKeyBytes, wrapAd.tenantKey(tenantId, 1));
 * ```
 */
export function createLocalKeyProvider(options: {
  rootKey: Uint8Array;
  keyId?: string;
  id?: string;
  random?: RandomSource;
}): KeyProvider {
  if (!(options.rootKey instanceof Uint8Array) || options.rootKey.length !== 32) {
    throw new CryptoError('KEY_INVALID', 'the local root key must be 32 bytes');
  }
  const rootKey = createSecretKey(options.rootKey);
  const rootKeyId = options.keyId ?? 'root';
  const random = options.random;
  const check = (keyId: string): void => {
    if (keyId !== rootKeyId) throw new CryptoError('KEY_NOT_FOUND', `no root key ${keyId}`);
  };
  return {
    id: options.id ?? 'local',
    // Executors turn synchronous throws into rejections, as a remote provider would.
    wrap: (keyId, plaintextKey, ad) =>
      new Promise((resolve) => {
        check(keyId);
        resolve(wrapKey(rootKey, keyId, plaintextKey, ad, random === undefined ? {} : { random }));
      }),
    unwrap: (keyId, wrapped, ad) =>
      new Promise((resolve) => {
        check(keyId);
        resolve(unwrapKey(rootKey, keyId, wrapped, ad));
      }),
  };
}
