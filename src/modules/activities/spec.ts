import { COMMON_SORTS, type RecordSpec } from '../records/spec.ts';

export const activitySpec: RecordSpec = {
  object: 'activity',
  resource: 'activity',
  table: 'activities',
  noun: 'activity',
  fields: {
    type: 'type',
    subject: 'subject',
    body: 'body',
    contactId: 'contact_id',
    companyId: 'company_id',
    dealId: 'deal_id',
    dueAt: 'due_at',
    doneAt: 'done_at',
  },
  sorts: {
    ...COMMON_SORTS,
    dueAt: { column: 'due_at', nullsAs: '9999-12-31T23:59:59.999Z' },
  },
  filters: {
    type: { column: 'type' },
    contactId: { column: 'contact_id' },
    companyId: { column: 'company_id' },
    dealId: { column: 'deal_id' },
    ownerId: { column: 'owner_id' },
  },
  references: { contactId: 'contacts', companyId: 'companies', dealId: 'deals' },
  requireOneOf: ['contactId', 'companyId', 'dealId'],
  // Text about a person is erased with them: under the linked contact's key, else the tenant's.
  subjectOf: (_id, v) => (typeof v.contactId === 'string' ? v.contactId : null),
  timestampFields: ['dueAt', 'doneAt'],
};
