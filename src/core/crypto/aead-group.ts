import { isAscii } from 'node:buffer';
import type { KeyObject } from 'node:crypto';
import {
  BASE64URL,
  GROUP_ENVELOPE_PREFIX,
  canonicalBase64url,
  encodeHeader,
  readEnvelope,
  requireAes256,
  resolveKey,
  strictUtf8,
} from './aead.ts';
import type { FieldKey, FieldKeyRef, FieldKeyResolver, RawEnvelope } from './aead.ts';
import { AES_GCM_NONCE_BYTES, AES_GCM_TAG_BYTES, aesGcmDecrypt, aesGcmEncrypt } from './aes-gcm.ts';
import { lengthPrefixed, requireNonEmpty, toBytes } from './encoding.ts';
import { CryptoError } from './errors.ts';
import { pooledRandomBytes } from './random.ts';
import type { RandomSource } from './random.ts';

/**
 * Record-group envelope encryption (format 2): the protected fields of one record sealed by ONE
 * AES-256-GCM call, each field still stored in its own column.
 *
 * Why: Node's fixed cost per AEAD call (creating the cipher object and its native calls, ~5 us
 * of a 6-7 us call for a short value) dominates small fields; a contact has up to eight of them.
 * Measured with `npm run bench:crypto` (one group of six fields vs six `encryptField` calls):
 * 5.5-6.4x fewer microseconds per field. Nonce pools and reusing `KeyObject`s were measured too
 * and are used by both formats.
 *
 * Every stored value of the group is `cv2.` + base64url (no padding) of
 *
 * ```
 * 0      1 byte   format version (0x02)
 * 1      1 byte   key id length L (1..255)
 * 2      L bytes  key id (UTF-8)
 * 2+L    4 bytes  key version (uint32, big-endian)
 * 6+L    12 bytes nonce (random, the same in every value of the group)
 * 18+L   16 bytes GCM tag (the same in every value of the group)
 * 34+L   n bytes  this field's segment of the ciphertext (same length as its plaintext)
 * ```
 *
 * The plaintext is the fields' UTF-8 bytes concatenated in field-name order; the associated data
 * is the header (bytes 0 .. 6+L) followed by the length-prefixed tuple (tenantId, object,
 * recordId, field count, then each field's name and byte length). A value copied to another
 * record, tenant or object, moved to another field of the record, left out, added, cut or
 * altered therefore fails to authenticate, and so does the whole record (`DECRYPT_FAILED`).
 * Values of one group that disagree on header, nonce or tag (one copied in from another
 * record) are refused before any decryption with the same code. Changing one field re-seals the
 * whole group under a fresh nonce.
 *
 * Cost: one cipher call per record plus ~1 us per field to split and encode; the header, nonce
 * and tag (~80 bytes with a subject key id) are repeated in every column, as in format 1, and
 * decoded once per record where their length allows it (`decodeShared`). Measured in-process
 * (a contact with five personal fields, subject key cached): the cipher call is ~6 us of the
 * ~9 us `decryptGroupText` takes.
 */

/** Where a record group lives. Field names are bound per value (see the module comment). */
export interface GroupAd {
  tenantId: string;
  object: string;
  recordId: string;
}

const PREFIX_BYTES = (idLength: number) =>
  2 + idLength + 4 + AES_GCM_NONCE_BYTES + AES_GCM_TAG_BYTES;

function sortedByName<T>(
  entries: ReadonlyArray<readonly [string, T]>,
): ReadonlyArray<readonly [string, T]> {
  let inOrder = true;
  for (let i = 1; i < entries.length && inOrder; i++) inOrder = entries[i - 1]![0] < entries[i]![0];
  // Callers usually pass the same order every time; sort (a copy) only when needed.
  const sorted = inOrder ? entries : [...entries].sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0));
  for (let i = 0; i < sorted.length; i++) {
    const name = sorted[i]![0];
    requireNonEmpty(name, 'field');
    if (i > 0 && sorted[i - 1]![0] === name) throw new TypeError(`field ${name} appears twice`);
  }
  return sorted;
}

/** The group's associated data: `header` then the length-prefixed tuple (see the module comment). */
function encodeGroupAd(
  header: Buffer,
  ad: GroupAd,
  fields: ReadonlyArray<readonly [string, unknown]>,
  lengths: readonly number[],
): Buffer {
  requireNonEmpty(ad.tenantId, 'ad.tenantId');
  requireNonEmpty(ad.object, 'ad.object');
  requireNonEmpty(ad.recordId, 'ad.recordId');
  const parts = [ad.tenantId, ad.object, ad.recordId, String(fields.length)];
  for (let i = 0; i < fields.length; i++) parts.push(fields[i]![0], String(lengths[i]));
  return lengthPrefixed('custos/group/v2', parts, header);
}

/**
 * Encrypts the fields of one record with one AES-256-GCM call (fresh 96-bit random nonce) into
 * one stored string per field (format 2, same order as `values`). Strings are UTF-8; lone
 * surrogates are refused (`TypeError`). Re-encrypt the whole group whenever one field changes.
 *
 * @example
 * ```ts
 * const [email, phone] = encryptGroup(subjectKey, ref, { tenantId, object: 'contact', recordId },
 *   [['email', 'alice@example.com'], ['phone', '+14155550100']]);
 * ```
 */
export function encryptGroup(
  key: KeyObject,
  ref: FieldKeyRef,
  ad: GroupAd,
  values: ReadonlyArray<readonly [field: string, value: string | Uint8Array]>,
  options: { random?: RandomSource } = {},
): string[] {
  requireAes256(key);
  if (values.length === 0) return [];
  const sorted = sortedByName(values);
  const names = sorted.map(([name]) => name);
  const plaintexts = sorted.map(([name, value]) => toBytes(value, name));
  const lengths = plaintexts.map((p) => p.length);
  const header = encodeHeader(ref, 2);
  const nonce = (options.random ?? pooledRandomBytes)(AES_GCM_NONCE_BYTES);
  if (nonce.length !== AES_GCM_NONCE_BYTES)
    throw new RangeError('random source returned too few bytes');
  const joined = Buffer.concat(plaintexts);
  const { ciphertext, tag } = aesGcmEncrypt(
    key,
    nonce,
    encodeGroupAd(header, ad, sorted, lengths),
    joined,
  );
  joined.fill(0);
  const prefix = Buffer.concat([header, nonce, tag]);
  // base64url(prefix || segment) is base64url(prefix) + base64url(segment) when the prefix is a
  // whole number of 3-byte groups (a subject key id of 44 bytes gives 78): encode it once.
  const shared =
    prefix.length % 3 === 0 ? GROUP_ENVELOPE_PREFIX + prefix.toString('base64url') : '';
  const byName = new Map<string, string>();
  let offset = 0;
  for (let i = 0; i < names.length; i++) {
    const segment = ciphertext.subarray(offset, offset + lengths[i]!);
    offset += lengths[i]!;
    byName.set(
      names[i]!,
      shared === ''
        ? GROUP_ENVELOPE_PREFIX + Buffer.concat([prefix, segment]).toString('base64url')
        : shared + segment.toString('base64url'),
    );
  }
  return values.map(([name]) => byName.get(name) as string);
}

/** The values of one group, decoded: the first one (its header, nonce and tag) and the segments. */
interface DecodedGroup {
  /** The first value in field-name order, checked by `readEnvelope`. */
  first: RawEnvelope;
  /** Bytes of header, nonce and tag at the start of every value. */
  prefixLength: number;
  /** Every value's segment, in field-name order, joined. */
  ciphertext: Buffer;
  lengths: number[];
}

/**
 * Decodes the values of a group with their shared prefix (header, nonce and tag: 78 bytes with a
 * subject key) decoded once instead of once per value. When the prefix is a whole number of
 * 3-byte groups its base64url spelling begins every value of the seal (see `encryptGroup`), and a
 * canonical encoding is unique: a value then has the first one's prefix bytes exactly when it
 * begins with the same characters, and only its own segment needs decoding. `undefined` when
 * that does not apply or anything is amiss (another prefix, a segment that is not canonical
 * base64url): `decodeEach` then reads every value in full and refuses with the precise code, so
 * the answer is the same either way.
 */
function decodeShared(sorted: ReadonlyArray<readonly [string, string]>): DecodedGroup | undefined {
  const firstStored = sorted[0]![1];
  const first = readEnvelope(firstStored);
  if (first.formatVersion !== 2) return undefined;
  const prefixLength = PREFIX_BYTES(first.bytes[1] ?? 0);
  const lengths = [first.bytes.length - prefixLength];
  if (sorted.length === 1) {
    return { first, prefixLength, ciphertext: first.bytes.subarray(prefixLength), lengths };
  }
  if (prefixLength % 3 !== 0) return undefined;
  const prefixChars = GROUP_ENVELOPE_PREFIX.length + (prefixLength / 3) * 4;
  const prefix = firstStored.slice(0, prefixChars);
  const segments: string[] = [];
  let total = lengths[0]!;
  for (let i = 1; i < sorted.length; i++) {
    const value = sorted[i]![1];
    if (typeof value !== 'string' || !value.startsWith(prefix)) return undefined;
    const segment = value.slice(prefixChars);
    const length = Math.floor((segment.length * 3) / 4);
    if (segment.length > 0 && !(BASE64URL.test(segment) && canonicalBase64url(segment, length))) {
      return undefined;
    }
    segments.push(segment);
    lengths.push(length);
    total += length;
  }
  const ciphertext = Buffer.allocUnsafe(total);
  let offset = first.bytes.copy(ciphertext, 0, prefixLength);
  for (let i = 0; i < segments.length; i++) {
    if (ciphertext.write(segments[i]!, offset, 'base64url') !== lengths[i + 1]) return undefined;
    offset += lengths[i + 1]!;
  }
  return { first, prefixLength, ciphertext, lengths };
}

/** Decodes every value of a group in full and checks that they share one seal. */
function decodeEach(sorted: ReadonlyArray<readonly [string, string]>): DecodedGroup {
  const decoded = sorted.map(([, value]) => {
    const raw = readEnvelope(value);
    if (raw.formatVersion !== 2) {
      throw new CryptoError('ENVELOPE_VERSION', 'a value of format 1 is not part of a group');
    }
    return raw;
  });
  const first = decoded[0]!;
  const prefixLength = PREFIX_BYTES(first.bytes[1] ?? 0);
  for (const d of decoded) {
    if (
      d !== first &&
      (d.bytes.length < prefixLength ||
        d.bytes.compare(first.bytes, 0, prefixLength, 0, prefixLength) !== 0)
    ) {
      throw new CryptoError(
        'DECRYPT_FAILED',
        'the values of a record group do not share one seal (copied from another record, or altered)',
      );
    }
  }
  const segments = decoded.map((d) => d.bytes.subarray(prefixLength));
  return {
    first,
    prefixLength,
    ciphertext: segments.length === 1 ? segments[0]! : Buffer.concat(segments),
    lengths: segments.map((s) => s.length),
  };
}

/** Decodes, checks and decrypts a group sorted by field name: the joined plaintexts. */
function openGroup(
  keys: FieldKeyResolver | FieldKey,
  ad: GroupAd,
  sorted: ReadonlyArray<readonly [string, string]>,
): { plain: Buffer; lengths: number[] } {
  const { first, prefixLength, ciphertext, lengths } = decodeShared(sorted) ?? decodeEach(sorted);
  const key = resolveKey(keys, first);
  const header = first.bytes.subarray(0, first.headerLength);
  const nonce = first.bytes.subarray(first.headerLength, first.headerLength + AES_GCM_NONCE_BYTES);
  const tag = first.bytes.subarray(prefixLength - AES_GCM_TAG_BYTES, prefixLength);
  const aad = encodeGroupAd(header, ad, sorted, lengths);
  return { plain: aesGcmDecrypt(key, nonce, aad, ciphertext, tag), lengths };
}

/** How `split` hands out each field's part of the plaintext. */
type PartOf<P, T> = (plain: P, start: number, end: number) => T;
const bytesPart: PartOf<Buffer, Buffer> = (plain, start, end) => plain.subarray(start, end);
const utf8Part: PartOf<Buffer, string> = (plain, start, end) =>
  strictUtf8.decode(plain.subarray(start, end));
const textPart: PartOf<string, string> = (text, start, end) => text.slice(start, end);

/** The fields' parts of `plain`, in the order of `stored` (the caller's). */
function split<P, T>(
  stored: ReadonlyArray<readonly [string, string]>,
  sorted: ReadonlyArray<readonly [string, string]>,
  plain: P,
  lengths: readonly number[],
  part: PartOf<P, T>,
): T[] {
  const parts: T[] = [];
  let offset = 0;
  for (let i = 0; i < lengths.length; i++) {
    parts.push(part(plain, offset, offset + lengths[i]!));
    offset += lengths[i]!;
  }
  if (sorted === stored) return parts;
  const at = new Map(sorted.map(([name], i) => [name, i]));
  return stored.map(([name]) => parts[at.get(name)!]!);
}

/**
 * Decrypts the stored values of one record group (all of them, as `[field, stored]`, in any
 * order) and returns the plaintexts in the same order. Throws `ENVELOPE_MALFORMED`,
 * `ENVELOPE_VERSION` (a value that is not of format 2), `KEY_NOT_FOUND`, or `DECRYPT_FAILED`
 * (values that do not share one seal, wrong key, any value altered, moved, added or missing).
 *
 * @example
 * ```ts
 * const [email, phone] = decryptGroup(keys, ad, [['email', row.email], ['phone', row.phone]]);
 * ```
 */
export function decryptGroup(
  keys: FieldKeyResolver | FieldKey,
  ad: GroupAd,
  stored: ReadonlyArray<readonly [field: string, stored: string]>,
): Buffer[] {
  if (stored.length === 0) return [];
  const sorted = sortedByName(stored);
  const { plain, lengths } = openGroup(keys, ad, sorted);
  return split(stored, sorted, plain, lengths, bytesPart);
}

/**
 * `decryptGroup` for values that were encrypted from strings (strict UTF-8: invalid bytes throw
 * `TypeError`). The decrypted bytes are zeroed once decoded.
 *
 * @example
 * ```ts
 * const [email] = decryptGroupText(keys, ad, [['email', row.email]]);
 * ```
 */
export function decryptGroupText(
  keys: FieldKeyResolver | FieldKey,
  ad: GroupAd,
  stored: ReadonlyArray<readonly [field: string, stored: string]>,
): string[] {
  if (stored.length === 0) return [];
  const sorted = sortedByName(stored);
  const { plain, lengths } = openGroup(keys, ad, sorted);
  try {
    if (!isAscii(plain)) return split(stored, sorted, plain, lengths, utf8Part);
    // ASCII is its own strict UTF-8 decoding, one character per byte: decode the whole
    // plaintext once and cut the string (one native call instead of one per field).
    const text = plain.toString('latin1');
    return split(stored, sorted, text, lengths, textPart);
  } finally {
    plain.fill(0);
  }
}
