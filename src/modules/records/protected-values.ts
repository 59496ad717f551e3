import { sql, type Kysely } from 'kysely';
import { isCryptoError, parseEnvelope } from '../../core/crypto/index.ts';
import { isProtected } from '../../core/privacy/index.ts';
import type { Database } from '../../db/schema.ts';
import type { RecordSpec } from './spec.ts';

/**
 * The key service's `protectedValues` hook: how many stored values of a tenant are still sealed
 * directly under tenant data key `version` (activities not linked to a contact; values under
 * subject keys depend on the subject key's wrapping instead). A version is retired only when this
 * is 0, so retiring never makes a value unreadable. Reads every protected column of the tenant's
 * records (a rare, operator-run check); a damaged value counts as protected (never retire on doubt).
 *
 * Re-encrypting such values under the new version is not implemented yet: until it is, a version
 * that still seals values stays decrypt-only.
 */
export function createProtectedValueCounter(db: Kysely<Database>, specs: readonly RecordSpec[]) {
  return async function protectedValues(tenantId: string, version: number): Promise<number> {
    const keyId = `tenant:${tenantId}`;
    let count = 0;
    for (const spec of specs) {
      const columns = Object.entries(spec.fields)
        .filter(([field]) => isProtected(spec.object, field as never))
        .map(([, column]) => column);
      if (columns.length === 0) continue;
      const rows = await (db as unknown as Kysely<Record<string, Record<string, unknown>>>)
        .selectFrom(spec.table)
        .select(columns.map((c) => sql.ref(c).as(c)))
        .where(sql.ref('tenant_id'), '=', tenantId)
        .execute();
      for (const row of rows) {
        for (const column of columns) {
          const stored = row[column];
          if (typeof stored !== 'string') continue;
          try {
            const ref = parseEnvelope(stored);
            if (ref.keyId === keyId && ref.keyVersion === version) count += 1;
          } catch (err) {
            if (!isCryptoError(err)) throw err;
            count += 1;
          }
        }
      }
    }
    return count;
  };
}
