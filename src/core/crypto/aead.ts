import type { KeyObject } from 'node:crypto';
import {
  AES_GCM_NONCE_BYTES,
  AES_GCM_TAG_BYTES,
  aesGcmDecrypt,
  aesGcmEncrypt,
  secretKeySize,
} from './aes-gcm.ts';
import { lengthPrefixed, requireNonEmpty, utf8 } from './encoding.ts';
import { CryptoError } from './errors.ts';
import { pooledRandomBytes } from './random.ts';
import type { RandomSource } from './random.ts';

/**
 * Field envelope encryption.
 *
 * Stored value: `cv1.` + base64url (no padding) of
 *
 * ```
 * 0      1 byte   format version (0x01)
 * 1      1 byte   key id length L (1..255)
 * 2      L bytes  key id (UTF-8)
 * 2+L    4 bytes  key version (uint32, big-endian)
 * 6+L    12 bytes nonce (random)
 * 18+L   n bytes  ciphertext (same length as the plaintext)
 * end-16 16 bytes GCM tag
 * ```
 *
 * The GCM associated data is the header (bytes 0 .. 6+L, so the key reference cannot be swapped)
 * followed by the length-prefixed tuple (tenantId, object, field, recordId). A value copied to
 * another tenant, object, field or record therefore fails to authenticate.
 *
 * Nonces are random, so one key must not encrypt more than 2^32 values (NIST SP 800-38D 8.3,
 * collision probability below 2^-32). Per-tenant and per-subject keys plus rotation keep every
 * key far below that; a tenant writing a million values a day would take 11,000 years.
 *
 * Copy versus tamper: GCM yields one bit, "authentic under this key and this associated data" or
 * not. A value copied from another row and a value with a flipped byte fail identically and both
 * surface as `DECRYPT_FAILED`; the envelope carries no record fingerprint to tell them apart,
 * because any such hint would itself be unauthenticated (an attacker could forge it) and would
 * cost bytes on every value. Treat every `DECRYPT_FAILED` as an integrity incident.
 *
 * Cost, measured on Node 20.20 on a shared 2-core machine (median of 5 x 100k calls, 32-byte
 * value, key reused as a `KeyObject`, runs vary with the neighbours' load): `encryptField` 6-7
 * us, `decryptField` 7.5-10 us; 4 KiB values 12-21 / 17-25 us. Of a 32-byte call, ~1.7 us is `createCipheriv` and ~2 us the rest of the
 * cipher object's native calls (setAAD/update/final/tag), ~0.8 us the AD encoding. The nonce
 * comes from `pooledRandomBytes` (~0.2 us) because `randomBytes(12)` alone costs ~2-3 us.
 * `createCipheriv` costs the same with raw bytes or a `KeyObject`; keys are still `KeyObject`s,
 * created once per key (`importAesKey`, the key cache), so that key bytes do not travel the heap
 * as plain Buffers and a wrong-size key is caught up front. A record with N encrypted fields
 * costs N calls: ~30 us to encrypt a contact's five protected fields.
 */

/** Which key encrypted a value: the id (e.g. a tenant or subject key id) and its version. */
export interface FieldKeyRef {
  keyId: string;
  keyVersion: number;
}

/** A data key with its reference, for callers that hold exactly one key. */
export interface FieldKey extends FieldKeyRef {
  key: KeyObject;
}

/**
 * Finds the key for a reference, or `undefined` if it is unknown or retired (a resolver that
 * refuses versions below a minimum is how old key versions are retired after rotation).
 */
export type FieldKeyResolver = (ref: FieldKeyRef) => KeyObject | undefined;

/** Where a value lives. Every part is bound into the ciphertext. */
export interface FieldAd {
  tenantId: string;
  object: string;
  field: string;
  recordId: string;
}

/**
 * What `parseEnvelope` reveals without any key. Format 1 is one field per envelope
 * (`encryptField`); format 2 is one value of a record group sealed by one AEAD call
 * (`encryptGroup`, see `aead-group.ts`). Both carry the key id and version the same way.
 */
export interface EnvelopeInfo extends FieldKeyRef {
  formatVersion: 1 | 2;
}

export const ENVELOPE_PREFIX = 'cv1.';
/** Prefix of the values of a record group (`encryptGroup`). */
export const GROUP_ENVELOPE_PREFIX = 'cv2.';
const FORMAT_VERSION = 1;
const MIN_BYTES = 2 + 1 + 4 + AES_GCM_NONCE_BYTES + AES_GCM_TAG_BYTES;
const PREFIX_SHAPE = /^cv(\d{1,3})\./;
/** A non-empty base64url body without padding (internal: shared with `aead-group.ts`). */
export const BASE64URL = /^[A-Za-z0-9_-]+$/;
/** Strict UTF-8 decoding (internal: shared with `aead-group.ts`). */
export const strictUtf8 = new TextDecoder('utf-8', { fatal: true, ignoreBOM: true });

interface DecodedEnvelope extends EnvelopeInfo {
  header: Buffer;
  nonce: Buffer;
  ciphertext: Buffer;
  tag: Buffer;
}

/**
 * The bytes of a stored value of format 1 or 2, checked up to the header (internal: shared with
 * `aead-group.ts`). Both formats start with version, key id and key version; `headerLength` is
 * where the key reference ends. Throws `ENVELOPE_MALFORMED` / `ENVELOPE_VERSION`.
 */
export interface RawEnvelope extends EnvelopeInfo {
  bytes: Buffer;
  headerLength: number;
}

/** Encodes the header of format `version` (internal: shared with `aead-group.ts`). */
export function encodeHeader(ref: FieldKeyRef, version: 1 | 2 = FORMAT_VERSION): Buffer {
  requireNonEmpty(ref.keyId, 'keyId');
  const id = utf8(ref.keyId, 'keyId');
  if (id.length > 255) throw new RangeError('keyId must be at most 255 UTF-8 bytes');
  if (!Number.isInteger(ref.keyVersion) || ref.keyVersion < 0 || ref.keyVersion > 0xffffffff) {
    throw new RangeError('keyVersion must be an integer in 0..2^32-1');
  }
  const header = Buffer.allocUnsafe(2 + id.length + 4);
  header[0] = version;
  header[1] = id.length;
  id.copy(header, 2);
  header.writeUInt32BE(ref.keyVersion, 2 + id.length);
  return header;
}

function encodeAd(ad: FieldAd): Buffer {
  requireNonEmpty(ad.tenantId, 'ad.tenantId');
  requireNonEmpty(ad.object, 'ad.object');
  requireNonEmpty(ad.field, 'ad.field');
  requireNonEmpty(ad.recordId, 'ad.recordId');
  return lengthPrefixed('custos/field/v1', [ad.tenantId, ad.object, ad.field, ad.recordId]);
}

/** `ENVELOPE_MALFORMED` with a reason (internal: shared with `aead-group.ts`). */
export function malformed(why: string): CryptoError {
  return new CryptoError('ENVELOPE_MALFORMED', `stored value is not a valid envelope: ${why}`);
}

/** The format version a stored value's prefix names (1, 2), without decoding its body. */
function prefixVersion(stored: string): 1 | 2 {
  if (typeof stored !== 'string') throw malformed('not a string');
  if (stored.startsWith(ENVELOPE_PREFIX)) return 1;
  if (stored.startsWith(GROUP_ENVELOPE_PREFIX)) return 2;
  const prefix = PREFIX_SHAPE.exec(stored);
  if (prefix === null) throw malformed('missing cv<version>. prefix');
  throw new CryptoError('ENVELOPE_VERSION', `unsupported envelope format cv${prefix[1]}`);
}

const BASE64URL_ALPHABET = 'ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_';

/**
 * Is `body` (already known to use only the base64url alphabet, no padding) the one spelling
 * of its `decoded` bytes? A length of 1 mod 4 is no encoding, and the unused low bits of the
 * last character must be zero. The same answer as re-encoding and comparing, without the copy
 * (internal: shared with `aead-group.ts`).
 */
export function canonicalBase64url(body: string, decoded: number): boolean {
  const rest = body.length % 4;
  if (rest === 1 || decoded !== Math.floor((body.length * 3) / 4)) return false;
  if (rest === 0) return true;
  const last = BASE64URL_ALPHABET.indexOf(body[body.length - 1] ?? '');
  return (last & (rest === 2 ? 0x0f : 0x03)) === 0;
}

/** Decodes and checks a format 1 or 2 value up to its header (see `RawEnvelope`). */
export function readEnvelope(stored: string): RawEnvelope {
  const formatVersion = prefixVersion(stored);
  const body = stored.slice(ENVELOPE_PREFIX.length);
  if (!BASE64URL.test(body)) throw malformed('body is not base64url');
  const bytes = Buffer.from(body, 'base64url');
  // Refuse non-canonical encodings so one value has exactly one stored form.
  if (!canonicalBase64url(body, bytes.length)) throw malformed('non-canonical base64url');
  if (bytes.length < MIN_BYTES) throw malformed('truncated');
  if (bytes[0] !== formatVersion) throw malformed('version byte does not match prefix');
  const idLength = bytes[1] ?? 0;
  const headerLength = 2 + idLength + 4;
  if (idLength === 0 || bytes.length < headerLength + AES_GCM_NONCE_BYTES + AES_GCM_TAG_BYTES) {
    throw malformed('truncated');
  }
  let keyId: string;
  let ascii = true;
  for (let i = 2; i < 2 + idLength && ascii; i++) ascii = bytes[i]! < 0x80;
  // Key ids are ASCII (`subject:<uuid>`): then the bytes are their own UTF-8, no decoder needed.
  if (ascii) keyId = bytes.toString('latin1', 2, 2 + idLength);
  else {
    try {
      keyId = strictUtf8.decode(bytes.subarray(2, 2 + idLength));
    } catch {
      throw malformed('key id is not UTF-8');
    }
  }
  return {
    formatVersion,
    keyId,
    keyVersion: bytes.readUInt32BE(2 + idLength),
    bytes,
    headerLength,
  };
}

function decodeEnvelope(stored: string): DecodedEnvelope {
  if (prefixVersion(stored) !== FORMAT_VERSION) {
    throw new CryptoError(
      'ENVELOPE_VERSION',
      'a record-group value (cv2) cannot be opened alone: use decryptGroup with its group',
    );
  }
  const { keyId, keyVersion, bytes, headerLength } = readEnvelope(stored);
  const nonceEnd = headerLength + AES_GCM_NONCE_BYTES;
  return {
    formatVersion: FORMAT_VERSION,
    keyId,
    keyVersion,
    header: bytes.subarray(0, headerLength),
    nonce: bytes.subarray(headerLength, nonceEnd),
    ciphertext: bytes.subarray(nonceEnd, bytes.length - AES_GCM_TAG_BYTES),
    tag: bytes.subarray(bytes.length - AES_GCM_TAG_BYTES),
  };
}

/** Throws `KEY_INVALID` unless `key` is a 256-bit secret key (internal: shared). */
export function requireAes256(key: KeyObject): void {
  if (secretKeySize(key) !== 32) throw new CryptoError('KEY_INVALID', 'field keys are AES-256');
}

/**
 * Encrypts one field value (AES-256-GCM, fresh 96-bit random nonce) into a self-describing
 * string for a TEXT column. Strings are encoded as UTF-8; lone surrogates are refused
 * (`TypeError`) rather than silently replaced.
 *
 * @example
 * ```ts
 * const key = importAesKey(tenantKeyBytes);
 * const ad = { tenantId, object: 'contact', field: 'email', recordId };
 * const stored = encryptField(key, { keyId: `tenant:${tenantId}`, keyVersion: 3 }, ad, email);
 * // 'cv1.AQ...'
 * ```
 */
export function encryptField(
  key: KeyObject,
  ref: FieldKeyRef,
  ad: FieldAd,
  plaintext: string | Uint8Array,
  options: { random?: RandomSource } = {},
): string {
  requireAes256(key);
  const header = encodeHeader(ref);
  const nonce = (options.random ?? pooledRandomBytes)(AES_GCM_NONCE_BYTES);
  if (nonce.length !== AES_GCM_NONCE_BYTES)
    throw new RangeError('random source returned too few bytes');
  const aad = Buffer.concat([header, encodeAd(ad)]);
  const { ciphertext, tag } = aesGcmEncrypt(key, nonce, aad, plaintext);
  const out = Buffer.concat([header, nonce, ciphertext, tag]);
  return ENVELOPE_PREFIX + out.toString('base64url');
}

/**
 * Reads the format version, key id and key version of a stored value (format 1, or one value
 * of a record group, format 2) without decrypting it (rotation uses it to find values still
 * under an old key version). Nothing here is authenticated until `decryptField` (or
 * `decryptGroup`) succeeds.
 *
 * @example
 * ```ts
 * const { keyVersion } = parseEnvelope(row.email);
 * if (keyVersion < currentVersion) queueReencryption(row.id);
 * ```
 */
export function parseEnvelope(stored: string): EnvelopeInfo {
  const { formatVersion, keyId, keyVersion } = readEnvelope(stored);
  return { formatVersion, keyId, keyVersion };
}

/**
 * The AES-256 key for a reference, or `KEY_NOT_FOUND` (internal: shared with `aead-group.ts`).
 */
export function resolveKey(keys: FieldKeyResolver | FieldKey, ref: FieldKeyRef): KeyObject {
  let key: KeyObject | undefined;
  if (typeof keys === 'function') {
    key = keys({ keyId: ref.keyId, keyVersion: ref.keyVersion });
  } else if (keys.keyId === ref.keyId && keys.keyVersion === ref.keyVersion) {
    key = keys.key;
  }
  if (key === undefined) {
    throw new CryptoError('KEY_NOT_FOUND', `no key ${ref.keyId} version ${ref.keyVersion}`);
  }
  requireAes256(key);
  return key;
}

/**
 * Decrypts a stored value for the given location. Throws `ENVELOPE_MALFORMED`,
 * `ENVELOPE_VERSION` (also for a value of a record group, which opens only with its group), `KEY_NOT_FOUND` (the resolver has no such key id/version, or the one
 * `FieldKey` passed has another reference) or `DECRYPT_FAILED` (wrong key, tampered value, or
 * a value copied from another tenant, object, field or record; see the module comment).
 *
 * @example
 * ```ts
 * const email = decryptField(({ keyId, keyVersion }) => cache.get(`${keyId}@${keyVersion}`), ad, stored);
 * ```
 */
export function decryptField(
  keys: FieldKeyResolver | FieldKey,
  ad: FieldAd,
  stored: string,
): Buffer {
  const envelope = decodeEnvelope(stored);
  const key = resolveKey(keys, envelope);
  const aad = Buffer.concat([envelope.header, encodeAd(ad)]);
  return aesGcmDecrypt(key, envelope.nonce, aad, envelope.ciphertext, envelope.tag);
}

/**
 * `decryptField` for values that were encrypted from strings.
 *
 * @example
 * ```ts
 * const email: string = decryptFieldText(tenantKey, ad, row.email);
 * ```
 */
export function decryptFieldText(
  keys: FieldKeyResolver | FieldKey,
  ad: FieldAd,
  stored: string,
): string {
  return strictUtf8.decode(decryptField(keys, ad, stored));
}
