import { validatorCompiler } from '../../http/validation.ts';
import { TEXT_PATTERN } from '../../http/schemas.ts';
import type { MappedRow } from './csv-mapping.ts';
import { ContactCreate } from './schema.ts';
import { contactSpec } from './spec.ts';
import type { NewContact } from './import-store.ts';

export interface RowError {
  row: number;
  /** The CSV column (as its header reads), or null for a problem with the whole row. */
  field: string | null;
  reason: string;
}

interface AjvError {
  instancePath: string;
  keyword: string;
  params: Record<string, unknown>;
}
type Validate = ((data: unknown) => boolean) & { errors?: AjvError[] | null };

// The very validator the API applies to POST /contacts bodies: one set of rules for both doors.
const validateContact = validatorCompiler({
  schema: ContactCreate,
  method: 'POST',
  url: '/api/v1/contacts/import',
  httpPart: 'body',
}) as Validate;

const textPattern = new RegExp(TEXT_PATTERN, 'u');
const COMPANY_NAME_MAX = 300;

function reasonOf(e: AjvError): string {
  switch (e.keyword) {
    case 'format':
      return e.params.format === 'email'
        ? 'is not a valid e-mail address'
        : e.params.format === 'date'
          ? 'is not a date in the form YYYY-MM-DD'
          : `is not a valid ${String(e.params.format)}`;
    case 'maxLength':
      return `is longer than ${String(e.params.limit)} characters`;
    case 'pattern':
      return 'contains characters that are not accepted (NUL or unpaired surrogates)';
    default:
      return 'is not accepted';
  }
}

/**
 * Checks a mapped row with the API's rules. Reasons never quote the value: reports are shown and
 * logged, and the values are personal data.
 */
export function validateRow(row: number, mapped: MappedRow): RowError[] {
  const errors: RowError[] = [];
  if (!validateContact(mapped.values)) {
    const seen = new Set<string>();
    for (const e of validateContact.errors ?? []) {
      const field = e.instancePath.replace(/^\//, '');
      // anyOf(string, null) reports the null branch too; one reason per field is enough.
      if (seen.has(field) || e.keyword === 'type' || e.keyword === 'anyOf') continue;
      seen.add(field);
      errors.push({ row, field: mapped.columnOf[field] ?? field, reason: reasonOf(e) });
    }
    if (errors.length === 0) errors.push({ row, field: null, reason: 'is not accepted' });
  }
  const company = mapped.company;
  if (company !== null) {
    const field = mapped.columnOf.company ?? 'company';
    if (company.length > COMPANY_NAME_MAX) {
      errors.push({ row, field, reason: `is longer than ${COMPANY_NAME_MAX} characters` });
    } else if (!textPattern.test(company)) {
      errors.push({
        row,
        field,
        reason: 'contains characters that are not accepted (NUL or unpaired surrogates)',
      });
    }
  }
  if (errors.length === 0 && Object.keys(mapped.values).length === 0 && company === null) {
    errors.push({ row, field: null, reason: 'has no value in any imported column' });
  }
  return errors;
}

/**
 * API field values (protected ones already sealed) -> contact columns. Index columns come from
 * the field crypto, for the indexed fields present only: a merge that does not touch e-mail or
 * phone leaves their indexes as they are.
 */
export function toContactColumns(values: Record<string, unknown>): Partial<NewContact> {
  const out: Record<string, unknown> = {};
  for (const [field, value] of Object.entries(values)) {
    const column = contactSpec.fields[field];
    if (column === undefined) throw new TypeError(`unknown contact field ${field}`);
    out[column] = value;
  }
  return out;
}
