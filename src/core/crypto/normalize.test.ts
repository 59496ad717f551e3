import { describe, expect, it } from 'vitest';
import { isPhoneRegion, normalizePhone } from './normalize.ts';

describe('normalizePhone', () => {
  it('reads national numbers in the region given, and international ones in any', () => {
    expect(normalizePhone('(415) 555-2671', 'US')).toBe('+14155552671');
    expect(normalizePhone('415.555.2671', 'US')).toBe('+14155552671');
    expect(normalizePhone('0171 1234567', 'DE')).toBe('+491711234567');
    expect(normalizePhone('+49 171 1234567', 'US')).toBe('+491711234567');
    expect(normalizePhone('+1 415 555 2671')).toBe('+14155552671');
  });

  it('refuses a national number without a region, or one not valid in the region', () => {
    expect(normalizePhone('(415) 555-2671')).toBeNull();
    expect(normalizePhone('0171 1234567')).toBeNull();
    expect(normalizePhone('555-267', 'US')).toBeNull();
    expect(normalizePhone('call the front desk', 'US')).toBeNull();
  });
});

describe('isPhoneRegion', () => {
  it('accepts upper-case ISO 3166-1 alpha-2 codes libphonenumber has rules for', () => {
    for (const code of ['US', 'DE', 'GB', 'FR', 'CA', 'JP']) expect(isPhoneRegion(code)).toBe(true);
  });

  it('refuses unknown codes, lower case, and anything that is not two letters', () => {
    for (const code of ['ZZ', 'AA', 'de', 'Us', 'USA', 'U', '', '49', '+1', 'D\u0045\u0301']) {
      expect(isPhoneRegion(code), code).toBe(false);
    }
  });
});
