/**
 * `core/crypto`: field envelope encryption, key hierarchy, blind indexes and export encryption.
 * A pure library: keys are always arguments, nothing reads the environment.
 */
export { CryptoError, isCryptoError } from './errors.ts';
export type { CryptoErrorCode } from './errors.ts';

export {
  AES_GCM_NONCE_BYTES,
  AES_GCM_TAG_BYTES,
  aesGcmDecrypt,
  aesGcmEncrypt,
  importAesKey,
} from './aes-gcm.ts';
export type { SymmetricKey } from './aes-gcm.ts';

export {
  ENVELOPE_PREFIX,
  decryptField,
  decryptFieldText,
  encryptField,
  parseEnvelope,
} from './aead.ts';
export type { EnvelopeInfo, FieldAd, FieldKey, FieldKeyRef, FieldKeyResolver } from './aead.ts';
export { GROUP_ENVELOPE_PREFIX } from './aead.ts';
export { decryptGroup, decryptGroupText, encryptGroup } from './aead-group.ts';
export type { GroupAd } from './aead-group.ts';

export { pooledRandomBytes } from './random.ts';
export type { RandomSource } from './random.ts';

export { HKDF_SHA256_MAX_LENGTH, deriveSubkey, hkdfInfo, hkdfSha256 } from './hkdf.ts';
export { hmacSha256, verifyHmacSha256 } from './hmac.ts';

export {
  DEFAULT_BLIND_INDEX_BITS,
  MAX_BLIND_INDEX_BITS,
  MIN_BLIND_INDEX_BITS,
  blindIndex,
  deriveBlindIndexKey,
  deriveEqualityHashKey,
  equalityHash,
} from './blind-index.ts';
export type { FieldScope } from './blind-index.ts';

export { isPhoneRegion, normalizeEmail, normalizeNationalId, normalizePhone } from './normalize.ts';
export type { CountryCode } from './normalize.ts';

export { createLocalKeyProvider, generateDataKey, unwrapKey, wrapAd, wrapKey } from './key-wrap.ts';
export type { KeyProvider } from './key-wrap.ts';

export { createKeyCache, keyRefId } from './key-cache.ts';
export type { KeyCache } from './key-cache.ts';

export {
  MIN_RSA_BITS,
  importRsaPrivateKey,
  importRsaPublicKey,
  rsaOaepSha256Decrypt,
  rsaOaepSha256Encrypt,
} from './rsa-oaep.ts';

export {
  EXPORT_ALG,
  EXPORT_ENC,
  decryptExport,
  encryptExport,
  recipientThumbprint,
} from './export-jwe.ts';
