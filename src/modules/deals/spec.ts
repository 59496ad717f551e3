import { COMMON_SORTS, type RecordSpec } from '../records/spec.ts';

export const dealSpec: RecordSpec = {
  object: 'deal',
  resource: 'deal',
  table: 'deals',
  noun: 'deal',
  fields: {
    name: 'name',
    stage: 'stage',
    amountMinor: 'amount_minor',
    currency: 'currency',
    expectedCloseDate: 'expected_close_date',
    companyId: 'company_id',
    contactId: 'contact_id',
  },
  bigintFields: ['amountMinor'],
  sorts: {
    ...COMMON_SORTS,
    name: { column: 'name' },
    expectedCloseDate: { column: 'expected_close_date', nullsAs: '9999-12-31' },
  },
  filters: {
    stage: { column: 'stage' },
    companyId: { column: 'company_id' },
    contactId: { column: 'contact_id' },
    ownerId: { column: 'owner_id' },
  },
  references: { companyId: 'companies', contactId: 'contacts' },
  defaults: { stage: 'lead' },
};
