import { createSecretKey, randomBytes } from 'node:crypto';
import type { KeyObject } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { describe, expect, it } from 'vitest';
import { decryptField, decryptFieldText, encryptField, parseEnvelope } from './aead.ts';
import type { FieldAd, FieldKey, FieldKeyResolver } from './aead.ts';
import { importAesKey } from './aes-gcm.ts';
import { CryptoError } from './errors.ts';
import type { CryptoErrorCode } from './errors.ts';

const key = importAesKey(Buffer.alloc(32, 7));
const otherKey = importAesKey(Buffer.alloc(32, 8));
const ref = { keyId: 'tenant:t1', keyVersion: 3 };
const fieldKey: FieldKey = { ...ref, key };
const ad: FieldAd = { tenantId: 't1', object: 'contact', field: 'email', recordId: 'r1' };
const fixedNonce = (size: number): Uint8Array => new Uint8Array(size).fill(0xab);
const anyKey: FieldKeyResolver = () => key;

function codeOf(fn: () => unknown): CryptoErrorCode | 'no error' | 'not a CryptoError' {
  try {
    fn();
    return 'no error';
  } catch (err) {
    return err instanceof CryptoError ? err.code : 'not a CryptoError';
  }
}

const toBytes = (stored: string): Buffer => Buffer.from(stored.slice(4), 'base64url');
const toStored = (bytes: Uint8Array): string => `cv1.${Buffer.from(bytes).toString('base64url')}`;

describe('encryptField / decryptField', () => {
  it('round-trips a string and bytes', () => {
    const stored = encryptField(key, ref, ad, 'alice@example.com');
    expect(decryptFieldText(fieldKey, ad, stored)).toBe('alice@example.com');
    const bytes = Uint8Array.of(0, 1, 2, 255);
    expect([...decryptField(fieldKey, ad, encryptField(key, ref, ad, bytes))]).toEqual([...bytes]);
  });

  it('round-trips the empty string', () => {
    expect(decryptFieldText(fieldKey, ad, encryptField(key, ref, ad, ''))).toBe('');
  });

  it('stores a cv1.-prefixed base64url string with the documented layout', () => {
    const stored = encryptField(key, ref, ad, 'hi', { random: fixedNonce });
    expect(stored).toMatch(/^cv1\.[A-Za-z0-9_-]+$/);
    const bytes = toBytes(stored);
    const id = Buffer.from(ref.keyId);
    expect(bytes[0]).toBe(1);
    expect(bytes[1]).toBe(id.length);
    expect(bytes.subarray(2, 2 + id.length).equals(id)).toBe(true);
    expect(bytes.readUInt32BE(2 + id.length)).toBe(3);
    expect(bytes.subarray(6 + id.length, 18 + id.length).every((b) => b === 0xab)).toBe(true);
    expect(bytes.length).toBe(6 + id.length + 12 + 2 + 16);
  });

  it('is deterministic only when the nonce source is', () => {
    const a = encryptField(key, ref, ad, 'x', { random: fixedNonce });
    expect(encryptField(key, ref, ad, 'x', { random: fixedNonce })).toBe(a);
    expect(encryptField(key, ref, ad, 'x')).not.toBe(encryptField(key, ref, ad, 'x'));
  });

  it('exposes key id and version without decrypting', () => {
    const stored = encryptField(key, { keyId: 'subject:ü/1', keyVersion: 4_000_000_000 }, ad, 'v');
    expect(parseEnvelope(stored)).toEqual({
      formatVersion: 1,
      keyId: 'subject:ü/1',
      keyVersion: 4_000_000_000,
    });
  });

  it('resolves the key by id and version', () => {
    const keys = new Map<string, KeyObject>([['tenant:t1@3', key]]);
    const resolver: FieldKeyResolver = (r) => keys.get(`${r.keyId}@${r.keyVersion}`);
    expect(decryptFieldText(resolver, ad, encryptField(key, ref, ad, 'v'))).toBe('v');
  });

  it('refuses non-AES-256 keys and lone surrogates', () => {
    const short = createSecretKey(randomBytes(16));
    expect(codeOf(() => encryptField(short, ref, ad, 'v'))).toBe('KEY_INVALID');
    expect(() => encryptField(key, ref, ad, 'a\uD800b')).toThrow(TypeError);
    expect(() => encryptField(key, ref, { ...ad, recordId: '' }, 'v')).toThrow(TypeError);
  });
});

describe('what decryptField refuses', () => {
  const stored = encryptField(key, ref, ad, 'alice@example.com', { random: fixedNonce });
  const bytes = toBytes(stored);
  const idLength = Buffer.byteLength(ref.keyId);
  const headerEnd = 6 + idLength;
  const nonceEnd = headerEnd + 12;
  const tagStart = bytes.length - 16;
  const flipped = (i: number): string => {
    const copy = Buffer.from(bytes);
    copy[i] = (copy[i] ?? 0) ^ 0x01;
    return toStored(copy);
  };

  it('rejects a ciphertext copied to another record', () => {
    expect(codeOf(() => decryptField(fieldKey, { ...ad, recordId: 'r2' }, stored))).toBe(
      'DECRYPT_FAILED',
    );
  });

  it('rejects a ciphertext copied to another field, object or tenant', () => {
    for (const moved of [{ field: 'phone' }, { object: 'company' }, { tenantId: 't2' }]) {
      expect(codeOf(() => decryptField(fieldKey, { ...ad, ...moved }, stored))).toBe(
        'DECRYPT_FAILED',
      );
    }
  });

  it('binds the associated data unambiguously (no separator games)', () => {
    const a = encryptField(key, ref, { ...ad, object: 'a', field: 'bc' }, 'v');
    expect(codeOf(() => decryptField(fieldKey, { ...ad, object: 'ab', field: 'c' }, a))).toBe(
      'DECRYPT_FAILED',
    );
  });

  it('rejects the wrong key', () => {
    expect(codeOf(() => decryptField({ ...ref, key: otherKey }, ad, stored))).toBe(
      'DECRYPT_FAILED',
    );
  });

  it('reports a key id or version it does not have as KEY_NOT_FOUND', () => {
    expect(codeOf(() => decryptField({ ...fieldKey, keyVersion: 2 }, ad, stored))).toBe(
      'KEY_NOT_FOUND',
    );
    expect(codeOf(() => decryptField(() => undefined, ad, stored))).toBe('KEY_NOT_FOUND');
  });

  it('rejects a flipped format version byte as malformed', () => {
    expect(codeOf(() => decryptField(anyKey, ad, flipped(0)))).toBe('ENVELOPE_MALFORMED');
  });

  it('rejects a flipped key id or key version byte', () => {
    for (let i = 1; i < headerEnd; i++) {
      // A resolver that knows only the real reference cannot find the altered one...
      const code = codeOf(() => decryptField(fieldKey, ad, flipped(i)));
      expect(['ENVELOPE_MALFORMED', 'KEY_NOT_FOUND']).toContain(code);
      // ...and a resolver that hands out the right key anyway still fails: the header is AAD.
      if (i >= 2) expect(codeOf(() => decryptField(anyKey, ad, flipped(i)))).toBe('DECRYPT_FAILED');
    }
  });

  it('rejects a key id that is not UTF-8 as malformed', () => {
    const bytes = toBytes(encryptField(key, ref, ad, 'v'));
    for (const bad of [0xff, 0xc3]) {
      const copy = Buffer.from(bytes);
      copy[2 + 2] = bad; // inside 'tenant:t1': an invalid byte, or a lead byte without its tail
      expect(codeOf(() => parseEnvelope(toStored(copy)))).toBe('ENVELOPE_MALFORMED');
    }
  });

  it('rejects a flipped byte in the nonce, the ciphertext and the tag', () => {
    const regions = { nonce: [headerEnd, nonceEnd], ciphertext: [nonceEnd, tagStart] } as const;
    for (const [start, end] of [...Object.values(regions), [tagStart, bytes.length] as const]) {
      for (let i = start; i < end; i++) {
        expect(codeOf(() => decryptField(fieldKey, ad, flipped(i)))).toBe('DECRYPT_FAILED');
      }
    }
  });

  it('rejects every truncation', () => {
    for (let length = 0; length < bytes.length; length++) {
      const code = codeOf(() => decryptField(fieldKey, ad, toStored(bytes.subarray(0, length))));
      // Long enough to parse: the tag is now other bytes and authentication fails.
      expect(code).toBe(length < headerEnd + 28 ? 'ENVELOPE_MALFORMED' : 'DECRYPT_FAILED');
    }
    for (const cut of [1, 2, 3, 10]) {
      expect(['ENVELOPE_MALFORMED', 'DECRYPT_FAILED']).toContain(
        codeOf(() => decryptField(fieldKey, ad, stored.slice(0, -cut))),
      );
    }
  });

  it('rejects values that are not envelopes', () => {
    for (const bad of ['', 'alice@example.com', 'cv1.', 'cv1.!!!!', 'cv1', 'CV1.AAAA', 'cv1.a b']) {
      expect(codeOf(() => decryptField(fieldKey, ad, bad))).toBe('ENVELOPE_MALFORMED');
    }
  });

  it('rejects a non-canonical base64url spelling of a valid value', () => {
    const value = encryptField(key, ref, ad, 'alice@example.co');
    // 59 bytes: the last base64url character carries 2 unused bits.
    expect(toBytes(value).length % 3).toBe(2);
    const alphabet = 'ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_';
    const sibling = alphabet[alphabet.indexOf(value.at(-1) ?? '') ^ 1] ?? '';
    const variant = value.slice(0, -1) + sibling;
    expect(Buffer.from(variant.slice(4), 'base64url').equals(toBytes(value))).toBe(true);
    expect(decryptFieldText(fieldKey, ad, value)).toBe('alice@example.co');
    expect(codeOf(() => decryptField(fieldKey, ad, variant))).toBe('ENVELOPE_MALFORMED');
  });

  it('reports an unknown format version as ENVELOPE_VERSION', () => {
    expect(codeOf(() => decryptField(fieldKey, ad, `cv2.${stored.slice(4)}`))).toBe(
      'ENVELOPE_VERSION',
    );
    expect(codeOf(() => parseEnvelope('cv17.AAAA'))).toBe('ENVELOPE_VERSION');
  });
});

describe('Big List of Naughty Strings', () => {
  const url = new URL('../../../test/fixtures/blns/blns.from-txt.json', import.meta.url);
  const strings = JSON.parse(readFileSync(url, 'utf8')) as string[];

  it('round-trips every string as plaintext', () => {
    expect(strings).toHaveLength(517);
    for (const value of strings) {
      expect(decryptFieldText(fieldKey, ad, encryptField(key, ref, ad, value))).toBe(value);
    }
  });

  it('round-trips every string as a key id and record id', () => {
    for (const value of strings.filter((s) => s.length > 0 && Buffer.byteLength(s) <= 255)) {
      const where = { ...ad, recordId: value };
      const stored = encryptField(key, { keyId: value, keyVersion: 1 }, where, 'v');
      expect(parseEnvelope(stored).keyId).toBe(value);
      expect(decryptFieldText({ keyId: value, keyVersion: 1, key }, where, stored)).toBe('v');
    }
  });
});
