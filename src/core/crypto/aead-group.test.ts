import { describe, expect, it } from 'vitest';
import { decryptField, encryptField, parseEnvelope } from './aead.ts';
import type { FieldKey } from './aead.ts';
import { decryptGroup, decryptGroupText, encryptGroup } from './aead-group.ts';
import type { GroupAd } from './aead-group.ts';
import { importAesKey } from './aes-gcm.ts';
import { CryptoError } from './errors.ts';
import type { CryptoErrorCode } from './errors.ts';

const key = importAesKey(Buffer.alloc(32, 7));
const otherKey = importAesKey(Buffer.alloc(32, 8));
const ad: GroupAd = { tenantId: 't1', object: 'contact', recordId: 'r1' };
const fields = [
  ['email', 'alice@example.com'],
  ['phone', '+14155550100'],
  ['notes', 'prefers e-mail; 🙂'],
  ['title', ''],
] as const;

function codeOf(fn: () => unknown): CryptoErrorCode | 'no error' | 'not a CryptoError' {
  try {
    fn();
    return 'no error';
  } catch (err) {
    return err instanceof CryptoError ? err.code : 'not a CryptoError';
  }
}

const bytesOf = (s: string) => Buffer.from(s.slice(4), 'base64url');
const storedOf = (b: Uint8Array) => `cv2.${Buffer.from(b).toString('base64url')}`;

// The shared prefix (header, nonce, tag) is 34 bytes plus the key id: 45 bytes, a whole number
// of base64 groups, is decoded once per group (as for the 44-byte subject key ids, 78 bytes);
// 44 bytes is not, and every value is decoded in full. Both must answer the same.
describe.each([
  { keyId: 'subject:c1', path: 'every value decoded' },
  { keyId: 'subject:c10', path: 'shared prefix decoded once' },
])('encryptGroup / decryptGroup, key id $keyId ($path)', ({ keyId }) => {
  const ref = { keyId, keyVersion: 1 };
  const fieldKey: FieldKey = { ...ref, key };
  const seal = (where: GroupAd = ad) => {
    const stored = encryptGroup(key, ref, where, fields);
    return fields.map(([name], i) => [name, stored[i]!] as [string, string]);
  };

  it('round-trips every field, in any order, with one seal', () => {
    const stored = seal();
    expect(decryptGroupText(fieldKey, ad, stored)).toEqual(fields.map(([, v]) => v));
    const reversed = [...stored].reverse();
    expect(decryptGroupText(fieldKey, ad, reversed)).toEqual(fields.map(([, v]) => v).reverse());
    const prefix = 2 + ref.keyId.length + 4 + 12 + 16;
    const first = bytesOf(stored[0]![1]).subarray(0, prefix);
    for (const [, s] of stored) {
      expect(s).toMatch(/^cv2\.[A-Za-z0-9_-]+$/);
      expect(bytesOf(s).subarray(0, prefix).equals(first)).toBe(true);
      expect(parseEnvelope(s)).toEqual({ formatVersion: 2, ...ref });
    }
    // Segments are as long as the plaintexts.
    expect(bytesOf(stored[1]![1]).length - prefix).toBe(Buffer.byteLength('+14155550100'));
  });

  it('decodes text strictly: ASCII, other UTF-8, and bytes that are no UTF-8 at all', () => {
    const ascii = [
      ['email', 'bob@example.com'],
      ['phone', '+14155550100'],
      ['title', ''],
    ] as const;
    const sealed = encryptGroup(key, ref, ad, ascii);
    const stored = ascii.map(([name], i) => [name, sealed[i]!] as const);
    expect(decryptGroupText(fieldKey, ad, stored)).toEqual(['bob@example.com', '+14155550100', '']);
    expect(decryptGroupText(fieldKey, ad, [...stored].reverse())).toEqual([
      '',
      '+14155550100',
      'bob@example.com',
    ]);
    const mixed = [
      ['a', 'plain'],
      ['b', 'Zoë 🙂'],
    ] as const;
    const sealedMixed = encryptGroup(key, ref, ad, mixed);
    expect(
      decryptGroupText(
        fieldKey,
        ad,
        mixed.map(([name], i) => [name, sealedMixed[i]!] as const),
      ),
    ).toEqual(['plain', 'Zoë 🙂']);
    const bytes = [
      ['a', 'plain'],
      ['b', Uint8Array.of(0x41, 0xff, 0x42)],
    ] as const;
    const sealedBytes = encryptGroup(key, ref, ad, bytes);
    const storedBytes = bytes.map(([name], i) => [name, sealedBytes[i]!] as const);
    expect([...decryptGroup(fieldKey, ad, storedBytes)[1]!]).toEqual([0x41, 0xff, 0x42]);
    expect(() => decryptGroupText(fieldKey, ad, storedBytes)).toThrow(TypeError);
  });

  it('uses a fresh nonce for every seal', () => {
    expect(seal()[0]![1]).not.toBe(seal()[0]![1]);
  });

  it('rejects a value copied from another record, tenant or object', () => {
    for (const other of [
      { ...ad, recordId: 'r2' },
      { ...ad, tenantId: 't2' },
      { ...ad, object: 'activity' },
    ]) {
      // The whole group moved: the associated data no longer matches.
      expect(codeOf(() => decryptGroup(fieldKey, ad, seal(other)))).toBe('DECRYPT_FAILED');
      // One value moved in from another record's group: the seals disagree.
      const mixed = seal();
      mixed[0] = ['email', seal(other)[0]![1]];
      expect(codeOf(() => decryptGroup(fieldKey, ad, mixed))).toBe('DECRYPT_FAILED');
    }
    const fresh = seal();
    fresh[0] = ['email', seal()[0]![1]];
    expect(codeOf(() => decryptGroup(fieldKey, ad, fresh))).toBe('DECRYPT_FAILED');
  });

  it('rejects a value moved to another field, a missing value and an added one', () => {
    const stored = seal();
    const swapped = stored.map(([n], i) => [n, stored[(i + 1) % stored.length]![1]] as const);
    expect(codeOf(() => decryptGroup(fieldKey, ad, swapped))).toBe('DECRYPT_FAILED');
    const renamed = stored.map(([n, s]) => [n === 'notes' ? 'address' : n, s] as const);
    expect(codeOf(() => decryptGroup(fieldKey, ad, renamed))).toBe('DECRYPT_FAILED');
    expect(codeOf(() => decryptGroup(fieldKey, ad, stored.slice(1)))).toBe('DECRYPT_FAILED');
    const added = [...stored, ['address', stored[3]![1]] as const];
    expect(codeOf(() => decryptGroup(fieldKey, ad, added))).toBe('DECRYPT_FAILED');
  });

  it('rejects a flipped byte anywhere in any value', () => {
    const stored = seal();
    for (const [index, [name, value]] of stored.entries()) {
      const bytes = bytesOf(value);
      for (let i = 2; i < bytes.length; i++) {
        const copy = Buffer.from(bytes);
        copy[i]! ^= 0x01;
        const tampered = [...stored];
        tampered[index] = [name, storedOf(copy)];
        // Header bytes may name an unknown key or become unreadable; never a plaintext.
        expect(['DECRYPT_FAILED', 'KEY_NOT_FOUND', 'ENVELOPE_MALFORMED']).toContain(
          codeOf(() => decryptGroup(fieldKey, ad, tampered)),
        );
        if (i >= 6 + ref.keyId.length) {
          expect(codeOf(() => decryptGroup(fieldKey, ad, tampered))).toBe('DECRYPT_FAILED');
        }
      }
    }
  });

  it('rejects truncated values: too short to parse, or cut inside the segment', () => {
    const stored = seal();
    const email = bytesOf(stored[0]![1]);
    for (let length = 0; length < email.length; length++) {
      const cut = [...stored];
      cut[0] = ['email', storedOf(email.subarray(0, length))];
      const prefix = 2 + ref.keyId.length + 4 + 12 + 16;
      expect(codeOf(() => decryptGroup(fieldKey, ad, cut))).toBe(
        length < prefix ? 'ENVELOPE_MALFORMED' : 'DECRYPT_FAILED',
      );
    }
  });

  it('rejects a value spelled another way: spare bits set, or a character outside base64url', () => {
    const stored = seal();
    const at = stored.findIndex(([name]) => name === 'notes');
    const notes = stored[at]![1];
    const alphabet = 'ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_';
    const last = alphabet.indexOf(notes.at(-1)!);
    // The same bytes once decoded (decoders ignore the spare low bits of the last character).
    const respelled = `${notes.slice(0, -1)}${alphabet[last | 1]}`;
    expect(respelled).not.toBe(notes);
    expect(bytesOf(respelled).equals(bytesOf(notes))).toBe(true);
    for (const value of [respelled, `${notes}=`, `${notes.slice(0, -2)}+${notes.slice(-1)}`]) {
      const altered = [...stored];
      altered[at] = ['notes', value];
      expect(codeOf(() => decryptGroup(fieldKey, ad, altered))).toBe('ENVELOPE_MALFORMED');
    }
  });

  it('rejects the wrong key and reports an unknown one', () => {
    expect(codeOf(() => decryptGroup({ ...ref, key: otherKey }, ad, seal()))).toBe(
      'DECRYPT_FAILED',
    );
    expect(codeOf(() => decryptGroup(() => undefined, ad, seal()))).toBe('KEY_NOT_FOUND');
    expect(codeOf(() => decryptGroup({ ...fieldKey, keyVersion: 2 }, ad, seal()))).toBe(
      'KEY_NOT_FOUND',
    );
  });

  it('keeps the two formats apart', () => {
    const single = encryptField(key, ref, { ...ad, field: 'email' }, 'alice@example.com');
    expect(codeOf(() => decryptGroup(fieldKey, ad, [['email', single]]))).toBe('ENVELOPE_VERSION');
    expect(codeOf(() => decryptField(fieldKey, { ...ad, field: 'email' }, seal()[0]![1]))).toBe(
      'ENVELOPE_VERSION',
    );
    // A format 2 body under a format 1 prefix is malformed.
    expect(
      codeOf(() =>
        decryptField(fieldKey, { ...ad, field: 'email' }, `cv1.${seal()[0]![1].slice(4)}`),
      ),
    ).toBe('ENVELOPE_MALFORMED');
  });

  it('refuses duplicate field names and lone surrogates', () => {
    expect(() =>
      encryptGroup(key, ref, ad, [
        ['a', 'x'],
        ['a', 'y'],
      ]),
    ).toThrow(TypeError);
    expect(() => encryptGroup(key, ref, ad, [['a', 'x\uD800']])).toThrow(TypeError);
    expect(encryptGroup(key, ref, ad, [])).toEqual([]);
  });
});
