// SIEM delivery throughput on SQLite to a private rsyslog (Debian's rsyslogd). Run:
//   npx tsx bench/siem.bench.ts [events]
// Appends the events (two tenants), then times a full drain of the outbox per transport, format
// and batch size, and checks every event arrived.
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { systemClock } from '../src/clock.ts';
import { migrateToLatest, openDatabase } from '../src/db/database.ts';
import { newId } from '../src/ids.ts';
import { createAuditService } from '../src/modules/audit/service.ts';
import { createSyslogDestination } from '../src/modules/siem/destinations.ts';
import { createSiemWorker } from '../src/modules/siem/worker.ts';
import { freePort, Rsyslog, selfSignedCertificate } from '../test/helpers/rsyslog.ts';

const EVENTS = Number(process.argv[2] ?? 20_000);
const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'custos-siem-bench-'));
const database = openDatabase({ dataDir: dir });
const { db } = database;
await migrateToLatest(db);
const tenants = ['a', 'b'].map((slug) => ({ id: newId(), slug }));
for (const t of tenants) {
  await db
    .insertInto('tenants')
    .values({ ...t, name: t.slug, created_at: new Date().toISOString() })
    .execute();
}
const audit = createAuditService({ db, dialect: 'sqlite', clock: systemClock, dataDir: dir });
for (let i = 0; i < EVENTS; i += 500) {
  await db.transaction().execute(async (trx) => {
    for (let j = i; j < Math.min(EVENTS, i + 500); j++) {
      await audit.append(trx, {
        tenantId: tenants[j % 2]!.id,
        type: 'record.updated',
        actor: { kind: 'user', id: '0190a1b2-c3d4-7e5f-8a9b-000000000001' },
        request: { ip: '203.0.113.7', userAgent: 'bench', requestId: newId() },
        target: { type: 'contact', id: `rec-${j}` },
        fields: ['email', 'phone'],
      });
    }
  });
}

const certs = selfSignedCertificate(dir);
const runs = [
  { transport: 'tcp', format: 'json', batch: 100 },
  { transport: 'tcp', format: 'json', batch: 1000 },
  { transport: 'tcp', format: 'cef', batch: 1000 },
  { transport: 'tls', format: 'json', batch: 100 },
  { transport: 'tls', format: 'json', batch: 1000 },
] as const;
for (const run of runs) {
  const port = await freePort();
  const rsyslog = new Rsyslog(port, run.transport === 'tls' ? certs : undefined);
  await rsyslog.start();
  await db.deleteFrom('siem_cursors').execute();
  const worker = createSiemWorker({
    db,
    clock: systemClock,
    batchSize: run.batch,
    destinations: [
      createSyslogDestination({
        url: `${run.transport}://127.0.0.1:${port}`,
        format: run.format,
        ca: run.transport === 'tls' ? fs.readFileSync(certs.cert, 'utf8') : undefined,
      }),
    ],
  });
  const t0 = performance.now();
  const result = await worker.runOnce();
  const ms = performance.now() - t0;
  const lines = await rsyslog.waitFor((l) => l.length >= EVENTS, 60_000);
  await rsyslog.dispose();
  console.log(
    `${run.transport.padEnd(3)} ${run.format.padEnd(4)} batch ${String(run.batch).padStart(4)}: ` +
      `${result.delivered} events confirmed in ${ms.toFixed(0)} ms = ` +
      `${Math.round((result.delivered / ms) * 1000)} events/s; ${lines.length} lines received` +
      (result.failed.length > 0 ? ` (FAILED: ${result.failed.join(',')})` : ''),
  );
}
await database.close();
fs.rmSync(dir, { recursive: true, force: true });
