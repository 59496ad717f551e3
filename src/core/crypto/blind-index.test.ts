import { createSecretKey } from 'node:crypto';
import { describe, expect, it } from 'vitest';
import {
  blindIndex,
  deriveBlindIndexKey,
  deriveEqualityHashKey,
  equalityHash,
} from './blind-index.ts';
import { normalizeEmail, normalizeNationalId, normalizePhone } from './normalize.ts';

const tenantKey = createSecretKey(Buffer.alloc(32, 1));
const otherTenantKey = createSecretKey(Buffer.alloc(32, 2));
const email = { tenantId: 't1', object: 'contact', field: 'email' };
const emailKey = deriveBlindIndexKey(tenantKey, email);

describe('blindIndex', () => {
  it('gives the same index for inputs that normalise equal', () => {
    const a = normalizeEmail('  Alice@Example.COM ');
    const b = normalizeEmail('alice@example.com');
    expect(a).toBe(b);
    expect(blindIndex(emailKey, a!)).toBe(blindIndex(emailKey, b!));
  });

  it('gives different indexes in different tenants and fields', () => {
    const value = 'alice@example.com';
    const indexes = new Set([
      blindIndex(emailKey, value),
      blindIndex(deriveBlindIndexKey(tenantKey, { ...email, tenantId: 't2' }), value),
      blindIndex(deriveBlindIndexKey(otherTenantKey, email), value),
      blindIndex(deriveBlindIndexKey(tenantKey, { ...email, field: 'workEmail' }), value),
      blindIndex(deriveBlindIndexKey(tenantKey, { ...email, object: 'lead' }), value),
    ]);
    expect(indexes.size).toBe(5);
  });

  it('honours the truncation length', () => {
    expect(blindIndex(emailKey, 'a@b.c')).toMatch(/^[0-9a-f]{8}$/);
    expect(blindIndex(emailKey, 'a@b.c', { bits: 16 })).toMatch(/^[0-9a-f]{4}$/);
    expect(blindIndex(emailKey, 'a@b.c', { bits: 64 })).toMatch(/^[0-9a-f]{16}$/);
    const full = blindIndex(emailKey, 'a@b.c', { bits: 128 });
    expect(full.startsWith(blindIndex(emailKey, 'a@b.c', { bits: 32 }))).toBe(true);
    // 20 bits: three bytes with the last four bits cleared.
    const twenty = blindIndex(emailKey, 'a@b.c', { bits: 20 });
    expect(twenty).toHaveLength(6);
    expect(parseInt(twenty, 16) & 0xf).toBe(0);
    expect(twenty.slice(0, 5)).toBe(full.slice(0, 5));
  });

  it('collides by design at small sizes', () => {
    const seen = new Set<string>();
    for (let i = 0; i < 2000; i++)
      seen.add(blindIndex(emailKey, `user${i}@example.com`, { bits: 8 }));
    expect(seen.size).toBeLessThanOrEqual(256);
  });

  it('refuses sizes outside 8..128 bits and empty values', () => {
    expect(() => blindIndex(emailKey, 'x', { bits: 4 })).toThrow(RangeError);
    expect(() => blindIndex(emailKey, 'x', { bits: 129 })).toThrow(RangeError);
    expect(() => blindIndex(emailKey, '')).toThrow(TypeError);
  });
});

describe('equalityHash', () => {
  it('is a full 256-bit keyed hash, independent of the blind index', () => {
    const eqKey = deriveEqualityHashKey(tenantKey, email);
    const hash = equalityHash(eqKey, 'alice@example.com');
    expect(hash).toMatch(/^[0-9a-f]{64}$/);
    expect(hash).toBe(equalityHash(eqKey, 'alice@example.com'));
    expect(hash.startsWith(blindIndex(emailKey, 'alice@example.com'))).toBe(false);
    expect(
      equalityHash(deriveEqualityHashKey(otherTenantKey, email), 'alice@example.com'),
    ).not.toBe(hash);
  });
});

describe('normalisers', () => {
  it('normalises phone formats of one US number to the same E.164 value', () => {
    expect(normalizePhone('+1 (415) 555-2671', 'US')).toBe('+14155552671');
    expect(normalizePhone('415-555-2671', 'US')).toBe('+14155552671');
    expect(normalizePhone('(415) 555 2671', 'US')).toBe('+14155552671');
    expect(normalizePhone('020 7946 0958', 'GB')).toBe('+442079460958');
  });

  it('returns null for phone numbers that do not parse or are not valid', () => {
    for (const bad of ['', 'abc', '12', '020 7946 0958', "'; DROP TABLE contacts;--"]) {
      expect(normalizePhone(bad, 'US'), bad).toBeNull();
    }
  });

  it('normalises email by NFC, trim and lower case', () => {
    expect(normalizeEmail(' JOSE\u0301@Example.com\n')).toBe('jos\u00e9@example.com');
    expect(normalizeEmail('José@example.com')).toBe('jos\u00e9@example.com');
    for (const bad of ['', '   ', 'no-at-sign', '@example.com', 'alice@']) {
      expect(normalizeEmail(bad), bad).toBeNull();
    }
  });

  it('normalises national ids by removing spaces, dashes and dots and upper-casing', () => {
    expect(normalizeNationalId('123-45-6789')).toBe('123456789');
    expect(normalizeNationalId(' ab 12.34.56 c ')).toBe('AB123456C');
    expect(normalizeNationalId('１２３–４５')).toBe('12345');
    expect(normalizeNationalId(' -.- ')).toBeNull();
  });
});
