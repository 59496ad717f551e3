import { parsePhoneNumberFromString } from 'libphonenumber-js';
import { normalizeEmail } from '../identity/normalize.ts';

export { normalizeEmail };

/**
 * E.164 when the number can be read (international form, `+...`); otherwise the digits alone,
 * so that the same number written with other separators still matches exactly.
 */
export function normalizePhone(phone: string): string | null {
  const parsed = parsePhoneNumberFromString(phone.trim());
  if (parsed?.isValid()) return parsed.number;
  const digits = phone.replace(/\D/g, '');
  return digits.length > 0 ? digits : null;
}
