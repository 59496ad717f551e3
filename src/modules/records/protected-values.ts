import type { Kysely } from 'kysely';
import type { Database } from '../../db/schema.ts';
import { censusOfValues } from './reencrypt.ts';
import type { SealedSpec } from './spec.ts';

/**
 * The key service's `protectedValues` hook: how many stored values of a tenant are still sealed
 * directly under tenant data key `version` (users' e-mail and name, activities not linked to a
 * contact; values under subject keys depend on the subject key's wrapping instead). A version is
 * retired only when this is 0, so retiring never makes a value unreadable. A damaged value counts as protected (never
 * retire on doubt). The re-encryption job (reencrypt.ts) moves such values to the active version.
 */
export function createProtectedValueCounter(db: Kysely<Database>, specs: readonly SealedSpec[]) {
  return async function protectedValues(tenantId: string, version: number): Promise<number> {
    const census = await censusOfValues(db, specs, tenantId);
    return (census.byVersion.get(version) ?? 0) + census.damaged;
  };
}
