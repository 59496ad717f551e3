import { createSecretKey, generateKeyPairSync } from 'node:crypto';
import { describe, expect, it } from 'vitest';
import { aesGcmDecrypt, aesGcmEncrypt, importAesKey } from './aes-gcm.ts';
import { pooledRandomBytes } from './random.ts';

const key = importAesKey(Buffer.alloc(32, 5));
const iv = Buffer.alloc(12, 1);
const aad = Buffer.from('aad');

describe('aesGcmEncrypt / aesGcmDecrypt', () => {
  it('round-trips with 128, 192 and 256-bit keys', () => {
    for (const size of [16, 24, 32] as const) {
      const k = importAesKey(Buffer.alloc(size, 2), size);
      const { ciphertext, tag } = aesGcmEncrypt(k, iv, aad, 'hello');
      expect(aesGcmDecrypt(k, iv, aad, ciphertext, tag).toString()).toBe('hello');
    }
  });

  it('refuses a truncated tag instead of checking fewer bits', () => {
    const { ciphertext, tag } = aesGcmEncrypt(key, iv, aad, 'hello');
    expect(() => aesGcmDecrypt(key, iv, aad, ciphertext, tag.subarray(0, 12))).toThrow(
      expect.objectContaining({ code: 'DECRYPT_FAILED' }),
    );
  });

  it('refuses nonces that are not 96 bits', () => {
    expect(() => aesGcmEncrypt(key, Buffer.alloc(8), aad, 'x')).toThrow(RangeError);
    expect(() => aesGcmEncrypt(key, Buffer.alloc(16), aad, 'x')).toThrow(RangeError);
  });

  it('refuses key material of the wrong size or kind with KEY_INVALID', () => {
    const invalid = expect.objectContaining({ code: 'KEY_INVALID' });
    expect(() => importAesKey(Buffer.alloc(16))).toThrow(invalid);
    expect(() => aesGcmEncrypt(Buffer.alloc(20), iv, aad, 'x')).toThrow(invalid);
    const { publicKey } = generateKeyPairSync('ec', { namedCurve: 'P-256' });
    expect(() => aesGcmEncrypt(publicKey, iv, aad, 'x')).toThrow(invalid);
    expect(() => aesGcmEncrypt(createSecretKey(Buffer.alloc(64)), iv, aad, 'x')).toThrow(invalid);
  });
});

describe('pooledRandomBytes', () => {
  it('hands out the requested sizes and never the same nonce twice', () => {
    const seen = new Set<string>();
    for (let i = 0; i < 5000; i++) seen.add(pooledRandomBytes(12).toString('hex'));
    expect(seen.size).toBe(5000);
    expect(pooledRandomBytes(0)).toHaveLength(0);
    expect(pooledRandomBytes(1000)).toHaveLength(1000);
  });

  it('returns copies that a pool refill does not change', () => {
    const first = pooledRandomBytes(12);
    const snapshot = Buffer.from(first);
    for (let i = 0; i < 1000; i++) pooledRandomBytes(12);
    expect(first.equals(snapshot)).toBe(true);
  });
});
