/**
 * A separate Custos process appending audit events, for the two-process serialisation test:
 * `node --import tsx test/helpers/audit-append-worker.ts <url> <dataDir> <tenantId> <count> <label>`.
 */
import { systemClock } from '../../src/clock.ts';
import { openDatabase } from '../../src/db/database.ts';
import { createAuditService } from '../../src/modules/audit/service.ts';
import { runInTenant } from '../../src/db/tenant-scope.ts';

const [url, dataDir, tenantId, count, label] = process.argv.slice(2);
if (!url || !dataDir || !tenantId || !count || !label) throw new TypeError('missing arguments');
const database = openDatabase({ databaseUrl: url, dataDir, poolSize: 4 });
const audit = createAuditService({
  db: database.db,
  dialect: database.dialect,
  clock: systemClock,
  dataDir,
  checkpointEvery: 16,
});
try {
  // Several appends in flight at once within this process too.
  const lanes = 4;
  const n = Number(count);
  // Behind the tenant walls, as the server's requests are: this tenant's rows only.
  await runInTenant(tenantId, () =>
    Promise.all(
      Array.from({ length: lanes }, async (_, lane) => {
        for (let i = lane; i < n; i += lanes) {
          await database.db.transaction().execute((trx) =>
            audit.append(trx, {
              tenantId,
              type: 'test.appended',
              actor: { kind: 'system', id: label },
              target: { type: 'worker', id: `${label}-${i}` },
            }),
          );
        }
      }),
    ),
  );
  process.stdout.write(`${label} appended ${n}\n`);
} finally {
  await database.close();
}
