import { dataMap, type DataObject, type FieldOf } from './data-map.ts';

/**
 * Masks by field type: what a caller whose role may only see a field masked gets instead of the
 * value. Each mask keeps at most what the industry rule allows (PCI DSS: BIN + last 4; national
 * ids: last 4; dates of birth: the year) and never the value's length where a fixed-width mask
 * will do, so a masked value says as little as possible about the hidden one.
 *
 * Which mask a field uses is declared in the data map (`fieldMasks` below), never at the call
 * site; a field left out gets the mask of its class (`generic`).
 *
 * @example
 * ```ts
 * maskValue('contact', 'nationalId', '123-45-6789'); // '***-**-6789'
 * maskValue('contact', 'email', 'jane@example.com'); // 'j***@example.com'
 * maskValue('contact', 'dateOfBirth', '1985-04-12'); // '1985'
 * ```
 */
export type MaskKind =
  | 'national_id'
  | 'payment_card'
  | 'email'
  | 'date_of_birth'
  | 'phone'
  | 'name'
  | 'free_text'
  | 'generic';

/** What a fully hidden value looks like. Fixed width: the length of the value is not told. */
export const REDACTED = '***';
/** Free text (notes, bodies, addresses): nothing of it is shown. */
export const REDACTED_TEXT = '[redacted]';

const digitsOf = (value: string) => value.replace(/\D/g, '');

/** `***-**-6789`: the last four digits of a national id with at least 8 digits or letters. */
export function maskNationalId(value: string): string {
  const chars = value.replace(/[^0-9A-Za-z]/g, '');
  // Shorter identifiers would give away half of themselves.
  if (chars.length < 8) return REDACTED;
  return `***-**-${chars.slice(-4)}`;
}

/**
 * A payment card number (PAN) of 13 to 19 digits: the first six (the BIN) and the last four, the
 * most PCI DSS 3.4 lets be displayed. Anything else is hidden whole.
 */
export function maskPaymentCard(value: string): string {
  const digits = digitsOf(value);
  if (!/^[0-9 -]+$/.test(value.trim()) || digits.length < 13 || digits.length > 19) {
    return REDACTED;
  }
  return `${digits.slice(0, 6)}${'*'.repeat(digits.length - 10)}${digits.slice(-4)}`;
}

/** `j***@example.com`: the first character of the local part and the domain. */
export function maskEmail(value: string): string {
  const trimmed = value.trim();
  const at = trimmed.lastIndexOf('@');
  if (at <= 0 || at === trimmed.length - 1) return REDACTED;
  // A whole code point, not half of a surrogate pair.
  const first = [...trimmed.slice(0, at)][0] ?? '';
  return `${first}***@${trimmed.slice(at + 1)}`;
}

/** The year of a date of birth (`YYYY-MM-DD` or an ISO date-time); anything else hidden whole. */
export function maskDateOfBirth(value: string): string {
  const match = /^(\d{4})-\d{2}-\d{2}(?:$|T)/.exec(value.trim());
  return match?.[1] ?? REDACTED;
}

/**
 * The last digits of a phone number: four of a full number (10+ digits), three of 7 to 9, two of
 * 5 or 6; shorter numbers are hidden whole.
 */
export function maskPhone(value: string): string {
  const digits = digitsOf(value);
  const shown = digits.length >= 10 ? 4 : digits.length >= 7 ? 3 : digits.length >= 5 ? 2 : 0;
  if (shown === 0) return REDACTED;
  return `***${digits.slice(-shown)}`;
}

/** `J***`: the initial of a name. */
export function maskName(value: string): string {
  const first = [...value.trim()][0];
  return first === undefined ? REDACTED : `${first}***`;
}

/** The mask of `kind` applied to a string value. */
export function applyMask(kind: MaskKind, value: string): string {
  switch (kind) {
    case 'national_id':
      return maskNationalId(value);
    case 'payment_card':
      return maskPaymentCard(value);
    case 'email':
      return maskEmail(value);
    case 'date_of_birth':
      return maskDateOfBirth(value);
    case 'phone':
      return maskPhone(value);
    case 'name':
      return maskName(value);
    case 'free_text':
      return REDACTED_TEXT;
    case 'generic':
      return REDACTED;
  }
}

/**
 * The declared mask of each protected field (the data map's masking rules). A field not listed
 * here is masked `generic`; the unit test checks every personal and sensitive field is listed.
 */
export const fieldMasks: { [O in DataObject]: Partial<Record<FieldOf<O>, MaskKind>> } = {
  user: { email: 'email', name: 'name', password: 'generic' },
  company: {},
  contact: {
    firstName: 'name',
    lastName: 'name',
    email: 'email',
    phone: 'phone',
    dateOfBirth: 'date_of_birth',
    nationalId: 'national_id',
    address: 'free_text',
    notes: 'free_text',
  },
  deal: {},
  activity: { subject: 'free_text', body: 'free_text' },
};

export function maskKindOf<O extends DataObject>(object: O, field: FieldOf<O>): MaskKind {
  const declared = (fieldMasks[object] as Record<string, MaskKind | undefined>)[field];
  return declared ?? 'generic';
}

/**
 * The masked form of a stored value: `null` stays `null` (there is nothing to hide); a string is
 * masked by the field's declared kind; any other value (a number, a boolean) becomes `null`,
 * since no part of it can be shown safely in its own type.
 */
export function maskValue<O extends DataObject>(
  object: O,
  field: FieldOf<O>,
  value: unknown,
): string | null {
  if (value === null || value === undefined) return null;
  if (typeof value !== 'string') return null;
  return applyMask(maskKindOf(object, field), value);
}

/** Whether `field` is a field of `object` in the data map. */
export function isMappedField(object: DataObject, field: string): boolean {
  return Object.hasOwn(dataMap[object], field);
}
