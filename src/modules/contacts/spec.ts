import { COMMON_SORTS, type RecordSpec } from '../records/spec.ts';
import { normalizeEmail, normalizePhone } from './normalize.ts';

export const contactSpec: RecordSpec = {
  object: 'contact',
  resource: 'contact',
  table: 'contacts',
  noun: 'contact',
  fields: {
    firstName: 'first_name',
    lastName: 'last_name',
    email: 'email',
    phone: 'phone',
    title: 'title',
    companyId: 'company_id',
    dateOfBirth: 'date_of_birth',
    nationalId: 'national_id',
    address: 'address',
    notes: 'notes',
  },
  sorts: COMMON_SORTS,
  filters: {
    email: { column: 'email_normalized', normalize: normalizeEmail },
    phone: { column: 'phone_normalized', normalize: normalizePhone },
    companyId: { column: 'company_id' },
    ownerId: { column: 'owner_id' },
  },
  references: { companyId: 'companies' },
  derive: (v) => ({
    email_normalized: typeof v.email === 'string' ? normalizeEmail(v.email) : null,
    phone_normalized: typeof v.phone === 'string' ? normalizePhone(v.phone) : null,
  }),
  uniqueConflict: {
    code: 'contact.email_taken',
    detail: 'Another contact in this tenant has the same e-mail address.',
  },
};
