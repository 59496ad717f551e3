import { COMMON_SORTS, type RecordSpec } from '../records/spec.ts';

export const companySpec: RecordSpec = {
  object: 'company',
  resource: 'company',
  table: 'companies',
  noun: 'company',
  fields: {
    name: 'name',
    domain: 'domain',
    industry: 'industry',
    phone: 'phone',
    address: 'address',
  },
  sorts: { ...COMMON_SORTS, name: { column: 'name' } },
  filters: {
    domain: { column: 'domain', normalize: (d) => d.trim().toLowerCase() },
    ownerId: { column: 'owner_id' },
  },
  derive: (v) => (typeof v.domain === 'string' ? { domain: v.domain.trim().toLowerCase() } : {}),
};
