import { normalizeEmail } from '../../core/crypto/normalize.ts';
import type { SealedSpec } from '../records/spec.ts';

/**
 * User accounts at rest: the data map classes `user.email` and `user.name` as personal, so both
 * are sealed as one group under the tenant data key (AD: tenant, object `user`, user id, field
 * names and lengths), the same format as the CRM records. Users are the tenant's staff, not data
 * subjects of the CRM: no per-user subject key (deleting a user deletes the row). The e-mail is
 * found through its blind index (sign-in, password reset) and kept unique per tenant through its
 * untruncated keyed hash.
 */
export const userSpec: SealedSpec = {
  object: 'user',
  table: 'users',
  fields: { email: 'email', name: 'name' },
  blindIndexes: {
    email: { column: 'email_bidx', uniqueColumn: 'email_eq', normalize: normalizeEmail },
  },
};
