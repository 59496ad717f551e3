import { AppError } from '../../errors.ts';
import { restoreCell } from './csv-escape.ts';

/**
 * What a CSV column can fill. Most are contact fields; `company` is a company name resolved to a
 * company of the tenant, `fullName` is split when first and last name are absent, and the address
 * parts are joined into the one `address` field.
 */
export const IMPORT_TARGETS = [
  'firstName',
  'lastName',
  'fullName',
  'email',
  'phone',
  'title',
  'company',
  'dateOfBirth',
  'nationalId',
  'address',
  'address2',
  'city',
  'region',
  'postalCode',
  'country',
  'notes',
] as const;
export type ImportTarget = (typeof IMPORT_TARGETS)[number];

/** Header names are compared lower-cased with spaces, `_`, `-` and dots removed. */
export function headerKey(header: string): string {
  return header
    .normalize('NFKC')
    .toLowerCase()
    .replace(/[^\p{L}\p{N}]/gu, '');
}

const ALIASES: Record<string, ImportTarget> = {};
const alias = (target: ImportTarget, ...names: string[]) => {
  for (const n of names) ALIASES[headerKey(n)] = target;
};
alias('firstName', 'first name', 'given name', 'forename', 'first', 'fname', 'prenom', 'vorname');
alias('lastName', 'last name', 'surname', 'family name', 'last', 'lname', 'nom', 'nachname');
alias('fullName', 'name', 'full name', 'contact name', 'display name', 'contact');
alias('title', 'title', 'job title', 'position', 'job', 'designation', 'job position');
alias(
  'company',
  'company',
  'company name',
  'organization',
  'organisation',
  'organization name',
  'organisation name',
  'org',
  'employer',
  'account name',
);
alias('dateOfBirth', 'date of birth', 'dob', 'birth date', 'birthdate', 'birthday', 'born');
alias(
  'nationalId',
  'national id',
  'ssn',
  'social security number',
  'national identifier',
  'national insurance number',
);
alias(
  'address',
  'address',
  'street',
  'street address',
  'address 1',
  'address line 1',
  'mailing address',
  'postal address',
);
alias('address2', 'address 2', 'address line 2', 'street 2');
alias('city', 'city', 'town', 'locality');
alias('region', 'state', 'region', 'province', 'county', 'state province');
alias('postalCode', 'zip', 'zip code', 'zipcode', 'postal code', 'postcode', 'post code');
alias('country', 'country', 'country region', 'country code');
alias('notes', 'notes', 'note', 'comments', 'comment', 'description', 'background', 'about');

// Several e-mail or phone columns (work, home, other, 1, 2...): the first non-empty one, left to
// right, fills the field.
const QUALIFIER = '(work|home|other|personal|private|business|office|primary|main|mobile|cell|\\d)';
const EMAIL = new RegExp(`^(${QUALIFIER}?e?mail(address)?${QUALIFIER}?)$`);
const PHONE = new RegExp(
  `^(${QUALIFIER}?(phone|phonenumber|telephone|tel|mobile|mobilephone|cell|cellphone)(number)?${QUALIFIER}?)$`,
);

/** The target a header names, when it is one Custos recognises. */
export function targetOfHeader(header: string): ImportTarget | undefined {
  const key = headerKey(header);
  if (key === '') return undefined;
  const known = ALIASES[key];
  if (known) return known;
  if (EMAIL.test(key)) return 'email';
  if (PHONE.test(key)) return 'phone';
  // The API's own field names (an export of Custos reads back).
  return IMPORT_TARGETS.find((t) => t.toLowerCase() === key);
}

export interface ColumnMapping {
  /** target -> column indexes, in file order (first non-empty wins). */
  sources: Map<ImportTarget, number[]>;
  headers: string[];
  ignoredColumns: string[];
}

/**
 * Decides which column fills which field. An explicit `mapping` (CSV header -> target, or null
 * to ignore a column) wins over recognised names; its headers match exactly, then
 * case-insensitively. Throws import.invalid_mapping for a mapping that names an unknown target
 * or a column the file lacks, import.invalid_header when no column fills any field.
 */
export function resolveMapping(
  headers: string[],
  mapping: Record<string, string | null> = {},
): ColumnMapping {
  const explicit = new Map<number, ImportTarget | null>();
  for (const [column, target] of Object.entries(mapping)) {
    if (target !== null && target !== '' && !IMPORT_TARGETS.includes(target as ImportTarget)) {
      throw new AppError('invalid', 'import.invalid_mapping', 'unknown mapping target', {
        detail: `The mapping sends "${column}" to "${target}", which is not one of: ${IMPORT_TARGETS.join(', ')}.`,
      });
    }
    let index = headers.indexOf(column);
    if (index < 0) index = headers.findIndex((h) => h.toLowerCase() === column.toLowerCase());
    if (index < 0) {
      throw new AppError('invalid', 'import.invalid_mapping', 'mapping names a missing column', {
        detail: `The mapping names the column "${column}", which the file does not have.`,
      });
    }
    explicit.set(index, target === '' ? null : (target as ImportTarget | null));
  }
  const sources = new Map<ImportTarget, number[]>();
  const ignoredColumns: string[] = [];
  const explicitTargets = new Set([...explicit.values()].filter((t) => t !== null));
  headers.forEach((header, index) => {
    let target: ImportTarget | null | undefined;
    if (explicit.has(index)) target = explicit.get(index);
    else {
      target = targetOfHeader(header);
      // A target the mapping gave to a column is no longer filled by a guess.
      if (target && explicitTargets.has(target)) target = undefined;
    }
    if (!target) {
      ignoredColumns.push(header);
      return;
    }
    const list = sources.get(target) ?? [];
    list.push(index);
    sources.set(target, list);
  });
  if (sources.size === 0) {
    throw new AppError('invalid', 'import.invalid_header', 'no recognised column', {
      detail:
        'The first line must name the columns; none of them is a contact field (such as first_name, last_name, email, phone). Send a mapping to name them.',
    });
  }
  return { sources, headers, ignoredColumns };
}

/** A row turned into API field values, and which column each value came from. */
export interface MappedRow {
  values: Record<string, string | null>;
  company: string | null;
  /** API field (or `company`) -> CSV header, to name the column in an error. */
  columnOf: Record<string, string>;
}

const CONTACT_FIELDS = [
  'firstName',
  'lastName',
  'email',
  'phone',
  'title',
  'dateOfBirth',
  'nationalId',
  'notes',
] as const;
const ADDRESS_PARTS = ['address', 'address2', 'city', 'region', 'postalCode', 'country'] as const;

/** Cell values are trimmed and spreadsheet escapes (`'=...`) undone; empty means absent. */
function cell(values: string[], index: number): string | null {
  const raw = values[index];
  if (raw === undefined) return null;
  const v = restoreCell(raw.trim());
  return v === '' ? null : v;
}

/** Applies the column mapping to one record. */
export function mapRow(m: ColumnMapping, values: string[]): MappedRow {
  const out: Record<string, string | null> = {};
  const columnOf: Record<string, string> = {};
  const pick = (target: ImportTarget): string | null => {
    for (const index of m.sources.get(target) ?? []) {
      const v = cell(values, index);
      if (v !== null) {
        columnOf[target] = m.headers[index] ?? target;
        return v;
      }
    }
    return null;
  };
  for (const field of CONTACT_FIELDS) {
    const v = pick(field);
    if (v !== null) out[field] = v;
  }
  const fullName = pick('fullName');
  if (fullName !== null && out.firstName === undefined && out.lastName === undefined) {
    const [first, ...rest] = fullName.split(/\s+/);
    out.firstName = first ?? null;
    if (rest.length > 0) out.lastName = rest.join(' ');
    columnOf.firstName = columnOf.lastName = columnOf.fullName ?? 'fullName';
  }
  const parts: string[] = [];
  for (const part of ADDRESS_PARTS) {
    const v = pick(part);
    if (v !== null) {
      parts.push(v);
      columnOf.address ??= columnOf[part] ?? part;
    }
  }
  if (parts.length > 0) out.address = parts.join(', ');
  return { values: out, company: pick('company'), columnOf };
}
