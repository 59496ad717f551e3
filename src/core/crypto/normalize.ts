import { isSupportedCountry, parsePhoneNumberFromString } from 'libphonenumber-js';
import type { CountryCode } from 'libphonenumber-js';

/**
 * Normalisers applied before a blind index or equality hash, so that values a person would call
 * "the same" index the same. Each returns `null` for input that is not a value of its kind; the
 * caller decides whether that is a validation error or "not indexable".
 */

export type { CountryCode };

/**
 * Email: Unicode NFC, trimmed, lower-cased. Requires one `@` with text on both sides; does not
 * otherwise judge the address (that is the validator's job, not the index's).
 *
 * @example
 * ```ts
 * normalizeEmail('  Alice@Example.COM ') // 'alice@example.com'
 * ```
 */
export function normalizeEmail(input: string): string | null {
  const value = input.normalize('NFC').trim().toLowerCase().normalize('NFC');
  const at = value.lastIndexOf('@');
  if (at <= 0 || at === value.length - 1) return null;
  return value;
}

/**
 * Phone number to E.164 (`+14155552671`) with libphonenumber-js; national formats are read in
 * `defaultRegion` (without one, only international `+...` numbers parse). Returns `null` for
 * numbers that do not parse or are not valid for their region. An extension is dropped (E.164
 * has none): two extensions of one line index equal, and the candidate is confirmed after decryption anyway.
 *
 * @example
 * ```ts
 * normalizePhone('415-555-2671', 'US') // '+14155552671'
 * normalizePhone('0171 1234567', 'DE') // '+491711234567'
 * normalizePhone('0171 1234567') // null: national, and no region to read it in
 * ```
 */
export function normalizePhone(input: string, defaultRegion?: CountryCode): string | null {
  const phone = parsePhoneNumberFromString(input.trim(), { defaultCountry: defaultRegion });
  if (phone === undefined || !phone.isValid()) return null;
  return phone.number;
}

/**
 * Is `value` a region national phone numbers can be read in: an ISO 3166-1 alpha-2 code
 * (upper-case) for which libphonenumber-js has numbering rules?
 *
 * @example
 * ```ts
 * isPhoneRegion('DE') // true
 * isPhoneRegion('ZZ') // false
 * isPhoneRegion('de') // false (codes are upper-case)
 * ```
 */
export function isPhoneRegion(value: string): value is CountryCode {
  return /^[A-Z]{2}$/.test(value) && isSupportedCountry(value);
}

const ID_SEPARATORS = /[\s\-.\u2010-\u2015\u2212]/gu;

/**
 * National identifier: compatibility-normalised (NFKC, so full-width digits become ASCII),
 * spaces, dashes and dots removed, upper-cased. Returns `null` if nothing is left.
 *
 * @example
 * ```ts
 * normalizeNationalId('123-45-6789') // '123456789'
 * normalizeNationalId('ab 12.34.56 c') // 'AB123456C'
 * ```
 */
export function normalizeNationalId(input: string): string | null {
  const value = input.normalize('NFKC').replace(ID_SEPARATORS, '').toUpperCase();
  return value.length === 0 ? null : value;
}
