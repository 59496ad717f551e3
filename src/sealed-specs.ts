import { activitySpec } from './modules/activities/spec.ts';
import { companySpec } from './modules/companies/spec.ts';
import { contactSpec } from './modules/contacts/spec.ts';
import { dealSpec } from './modules/deals/spec.ts';
import type { SealedSpec } from './modules/records/spec.ts';
import { userSpec } from './modules/users/spec.ts';

/**
 * Every stored object with values sealed at rest (the data map decides which fields): what the
 * re-encryption job moves after a rotation, what `custos keys status` counts and what keeps a
 * tenant key version from being retired while it still seals a value.
 */
export const SEALED_SPECS: readonly SealedSpec[] = [
  contactSpec,
  companySpec,
  dealSpec,
  activitySpec,
  userSpec,
];
