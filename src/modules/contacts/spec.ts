import { COMMON_SORTS, type RecordSpec } from '../records/spec.ts';
import {
  normalizeEmail,
  normalizeNationalId,
  normalizePhone,
} from '../../core/crypto/normalize.ts';

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
    email: { blindIndex: 'email' },
    phone: { blindIndex: 'phone' },
    companyId: { column: 'company_id' },
    ownerId: { column: 'owner_id' },
  },
  references: { companyId: 'companies' },
  blindIndexes: {
    // Uniqueness per tenant through the untruncated keyed hash, see BlindIndexSpec.
    email: { column: 'email_bidx', uniqueColumn: 'email_eq', normalize: normalizeEmail },
    // E.164: national numbers are read in the tenant's phone region (none: international only).
    phone: {
      column: 'phone_bidx',
      normalize: (v, context) => normalizePhone(v, context.phoneRegion ?? undefined),
      regional: true,
    },
    nationalId: { column: 'national_id_bidx', normalize: normalizeNationalId },
  },
  // Every contact is a data subject with its own key; deleting the contact shreds it.
  isSubject: true,
  shredOnDelete: true,
  uniqueConflict: {
    code: 'contact.email_taken',
    detail: 'Another contact in this tenant has the same e-mail address.',
  },
};
