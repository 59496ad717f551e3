import { describe, expect, it } from 'vitest';
import { dataMap, fieldsClassified, type DataObject } from './data-map.ts';
import {
  REDACTED,
  REDACTED_TEXT,
  fieldMasks,
  maskDateOfBirth,
  maskEmail,
  maskKindOf,
  maskName,
  maskNationalId,
  maskPaymentCard,
  maskPhone,
  maskValue,
} from './mask.ts';

describe('masks by field type', () => {
  it('keeps the last four of a national id', () => {
    expect(maskNationalId('123-45-6789')).toBe('***-**-6789');
    expect(maskNationalId('123456789')).toBe('***-**-6789');
    expect(maskNationalId('AB 12 34 56 C')).toBe('***-**-456C');
    expect(maskNationalId('12-345678')).toBe('***-**-5678');
    // Shorter: four characters would be more than half of it.
    expect(maskNationalId('1234567')).toBe(REDACTED);
  });

  it('keeps the BIN and the last four of a card number, nothing else', () => {
    expect(maskPaymentCard('4111 1111 1111 1111')).toBe('411111******1111');
    expect(maskPaymentCard('378282246310005')).toBe('378282*****0005');
    expect(maskPaymentCard('4111-1111-1111-1111-123')).toBe('411111*********1123');
    expect(maskPaymentCard('411111111111')).toBe(REDACTED);
    expect(maskPaymentCard('card 4111111111111111')).toBe(REDACTED);
  });

  it('keeps the first character and the domain of an e-mail', () => {
    expect(maskEmail('jane.doe@example.com')).toBe('j***@example.com');
    expect(maskEmail('x@example.com')).toBe('x***@example.com');
    expect(maskEmail('😀me@example.com')).toBe('😀***@example.com');
    expect(maskEmail('not-an-address')).toBe(REDACTED);
    expect(maskEmail('@example.com')).toBe(REDACTED);
  });

  it('keeps only the year of a date of birth', () => {
    expect(maskDateOfBirth('1985-04-12')).toBe('1985');
    expect(maskDateOfBirth('1985-04-12T00:00:00Z')).toBe('1985');
    expect(maskDateOfBirth('12/04/1985')).toBe(REDACTED);
  });

  it('keeps two to four last digits of a phone number by its length', () => {
    expect(maskPhone('+1 415-555-2671')).toBe('***2671');
    expect(maskPhone('555 2671')).toBe('***671');
    expect(maskPhone('12345')).toBe('***45');
    expect(maskPhone('1234')).toBe(REDACTED);
  });

  it('keeps the initial of a name', () => {
    expect(maskName('  Jane')).toBe('J***');
    expect(maskName('')).toBe(REDACTED);
  });

  it('masks by the kind the data map declares, not by the caller', () => {
    expect(maskValue('contact', 'nationalId', '123-45-6789')).toBe('***-**-6789');
    expect(maskValue('contact', 'email', 'jane@example.com')).toBe('j***@example.com');
    expect(maskValue('contact', 'dateOfBirth', '1985-04-12')).toBe('1985');
    expect(maskValue('contact', 'notes', 'diagnosed with X, SSN 123-45-6789')).toBe(REDACTED_TEXT);
    expect(maskValue('activity', 'body', 'anything')).toBe(REDACTED_TEXT);
    // Not declared: the generic mask, which shows nothing.
    expect(maskValue('company', 'name', 'Acme')).toBe(REDACTED);
    expect(maskValue('deal', 'amountMinor', 12_345)).toBeNull();
    expect(maskValue('contact', 'phone', null)).toBeNull();
  });

  it('declares a mask for every personal and sensitive field', () => {
    for (const object of Object.keys(dataMap) as DataObject[]) {
      const declared = Object.keys(fieldMasks[object]).sort();
      const protectedFields = fieldsClassified(object, ['personal', 'sensitive']).sort();
      expect(declared, object).toEqual(protectedFields);
      for (const f of protectedFields) expect(maskKindOf(object, f)).not.toBe(undefined);
    }
  });

  it('never returns the clear value of a declared field', () => {
    const samples: Record<string, string> = {
      firstName: 'Jane',
      lastName: 'Doe',
      email: 'jane@example.com',
      phone: '+14155552671',
      dateOfBirth: '1985-04-12',
      nationalId: '123-45-6789',
      address: '1 Main St',
      notes: 'private',
    };
    for (const [field, value] of Object.entries(samples)) {
      expect(maskValue('contact', field as never, value)).not.toBe(value);
    }
  });
});
