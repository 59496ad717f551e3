import { describe, expect, it } from 'vitest';
import { bytesEqualHex } from './bytes.ts';

describe('bytesEqualHex', () => {
  it('compares bytes with lower-case hex in place', () => {
    const bytes = new Uint8Array([0, 1, 0xab, 0xff]);
    expect(bytesEqualHex(bytes, '0001abff')).toBe(true);
    expect(bytesEqualHex(bytes, '0001abfe')).toBe(false);
    expect(bytesEqualHex(bytes, '0001ABFF')).toBe(false); // only lower case
    expect(bytesEqualHex(bytes, '0001abf')).toBe(false);
    expect(bytesEqualHex(bytes, '0001abffff')).toBe(false);
    expect(bytesEqualHex(bytes, '0001abgf')).toBe(false);
    expect(bytesEqualHex(bytes, '0001ab\u00ffz')).toBe(false);
  });
});
