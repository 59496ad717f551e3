import { createSecretKey } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { describe, expect, it } from 'vitest';
import { deriveSubkey, hkdfInfo, hkdfSha256 } from './hkdf.ts';
import { CryptoError } from './errors.ts';

interface Rfc5869Case {
  testCase: number;
  hash: string;
  ikm: string;
  salt: string | null;
  info: string;
  L: number;
  okm: string;
}

describe('hkdfSha256', () => {
  const url = new URL('../../../test/fixtures/rfc-vectors/rfc5869_hkdf.json', import.meta.url);
  const cases = (JSON.parse(readFileSync(url, 'utf8')) as { tests: Rfc5869Case[] }).tests;
  // The file holds cases 1-7: 1-3 are SHA-256 (run here), 4-7 are SHA-1 (not used by Custos).
  const sha256 = cases.filter((c) => c.hash === 'SHA-256');

  it('matches RFC 5869 appendix A test cases 1-3 (SHA-256)', () => {
    expect(sha256.map((c) => c.testCase)).toEqual([1, 2, 3]);
    for (const c of sha256) {
      const salt = Buffer.from(c.salt ?? '', 'hex');
      const okm = hkdfSha256(Buffer.from(c.ikm, 'hex'), salt, Buffer.from(c.info, 'hex'), c.L);
      expect(okm.toString('hex'), `case ${c.testCase}`).toBe(c.okm);
    }
  });

  it('refuses output lengths outside 1..8160 bytes', () => {
    const ikm = Buffer.alloc(32, 1);
    expect(() => hkdfSha256(ikm, Buffer.alloc(0), Buffer.alloc(0), 0)).toThrow(RangeError);
    expect(() => hkdfSha256(ikm, Buffer.alloc(0), Buffer.alloc(0), 8161)).toThrow(RangeError);
    expect(hkdfSha256(ikm, Buffer.alloc(0), Buffer.alloc(0), 8160)).toHaveLength(8160);
  });
});

describe('hkdfInfo / deriveSubkey', () => {
  const parent = createSecretKey(Buffer.alloc(32, 9));
  const exported = (info: Uint8Array): string =>
    deriveSubkey(parent, info).export().toString('hex');

  it('labels are unambiguous: moving bytes between parts changes the label', () => {
    expect(hkdfInfo('p', 'ab', 'c').equals(hkdfInfo('p', 'a', 'bc'))).toBe(false);
    expect(hkdfInfo('p|a').equals(hkdfInfo('p', 'a'))).toBe(false);
  });

  it('derives different keys for different purposes and the same key for the same one', () => {
    expect(exported(hkdfInfo('blind-index', 't1'))).toBe(exported(hkdfInfo('blind-index', 't1')));
    expect(exported(hkdfInfo('blind-index', 't1'))).not.toBe(exported(hkdfInfo('export', 't1')));
  });

  it('refuses a parent key shorter than 256 bits', () => {
    const weak = createSecretKey(Buffer.alloc(16, 1));
    expect(() => deriveSubkey(weak, hkdfInfo('x'))).toThrow(CryptoError);
  });
});
