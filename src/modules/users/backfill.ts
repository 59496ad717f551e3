import { sql } from 'kysely';
import type { DatabaseHandle } from '../../db/database.ts';
import type { KeyService } from '../keys/service.ts';
import { createReencryptionJob } from '../records/reencrypt.ts';
import { userSpec } from './spec.ts';

export interface ClearUsersResult {
  /** Tenants that had users stored in clear. */
  tenants: number;
  /** Values (e-mails and names) encrypted now. */
  encrypted: number;
  /** Users that could not be done (a damaged value): left as they are, and counted. */
  failed: number;
}

/**
 * Seals the e-mail and name of users stored in clear (rows written before migration 0019, which
 * could not encrypt: migrations have no keys) and gives them their blind index and unique hash.
 * Runs at start-up before the server listens (and before the CLI's `setup`), so that sign-in
 * finds every user by the index. Idempotent: it looks for rows without an index and leaves sealed
 * values alone (the re-encryption job's pass over `users`, in batches, compare-and-set per row).
 *
 * On SQLite, once something was encrypted, the file is rewritten (VACUUM) and the write-ahead log
 * emptied, so that pages freed by the migration's rebuild and by these updates no longer hold the
 * clear values.
 *
 * @example
 * ```ts
 * const result = await encryptClearUsers({ database, keys });
 * if (result.failed > 0) log.warn(result, 'users left in clear');
 * ```
 */
export async function encryptClearUsers(
  deps: {
    database: Pick<DatabaseHandle, 'db' | 'dialect'>;
    keys: KeyService;
    indexBits?: number | undefined;
  },
  options: { batchSize?: number } = {},
): Promise<ClearUsersResult> {
  const { db } = deps.database;
  const tenants = await db
    .selectFrom('users')
    .select('tenant_id')
    .distinct()
    .where('email_bidx', 'is', null)
    .execute();
  const result: ClearUsersResult = { tenants: tenants.length, encrypted: 0, failed: 0 };
  if (tenants.length === 0) return result;
  const job = createReencryptionJob({
    db,
    keys: deps.keys,
    specs: [userSpec],
    indexBits: deps.indexBits,
  });
  for (const { tenant_id: tenantId } of tenants) {
    const progress = await job.run(tenantId, { batchSize: options.batchSize ?? 200, pauseMs: 0 });
    result.encrypted += progress.encryptedClear;
    result.failed += progress.failed;
  }
  if (result.encrypted > 0 && deps.database.dialect === 'sqlite') {
    await sql`VACUUM`.execute(db);
    await sql`PRAGMA wal_checkpoint(TRUNCATE)`.execute(db);
  }
  return result;
}
