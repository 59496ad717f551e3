// Measures audit appends on SQLite; not part of the module API. Run:
//   npx tsx src/modules/audit/measure-append.ts [events]
// Prints events/s appended with the tree maintained (one transaction per event, as a record
// change does) against plain inserts of the same rows into a table of the same shape (the audit
// table's DDL and indexes), then proof and verification times.
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { sql } from 'kysely';
import { systemClock } from '../../clock.ts';
import { migrateToLatest, openDatabase } from '../../db/database.ts';
import { newId } from '../../ids.ts';
import { EVENT_COLUMNS } from './event.ts';
import { createAuditQueries } from './queries.ts';
import { createAuditService } from './service.ts';
import { verifyTenantLog } from './verify.ts';

const EVENTS = Number(process.argv[2] ?? 20_000);
const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'custos-audit-measure-'));
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
const writer = database.writer!;
const audit = createAuditService({
  db,
  dialect: 'sqlite',
  clock: systemClock,
  dataDir: dir,
  writer,
});
const event = (tenantId: string, i: number) => ({
  tenantId,
  type: 'record.updated',
  actor: { kind: 'user' as const, id: '0190a1b2-c3d4-7e5f-8a9b-000000000001' },
  request: { ip: '203.0.113.7', userAgent: 'measure', requestId: newId() },
  target: { type: 'contact', id: `rec-${i}` },
  fields: ['email', 'phone'],
});

const rate = (n: number, ms: number) => `${Math.round((n / ms) * 1000)} events/s`;

let t0 = performance.now();
for (let i = 0; i < EVENTS; i++) {
  await db.transaction().execute((trx) => audit.append(trx, event(tenants[0]!.id, i)));
}
const withTree = performance.now() - t0;

// The same rows, inserted without locking, hashing or maintaining the tree, into a table of the
// same shape (audit_events' DDL and secondary indexes, renamed), with one prepared statement.
const ddl = await sql<{
  sql: string;
}>`select sql from sqlite_master where tbl_name = 'audit_events' and sql is not null order by type desc`.execute(
  db,
);
for (const r of ddl.rows)
  await sql.raw(r.sql.replace(/\baudit_events/g, 'plain_events')).execute(db);
const insertPlain = `insert into plain_events (${EVENT_COLUMNS.join(', ')}) values (${EVENT_COLUMNS.map(() => '?').join(', ')})`;
const rows = await db
  .selectFrom('audit_events')
  .select(EVENT_COLUMNS)
  .where('tenant_id', '=', tenants[0]!.id)
  .execute();
t0 = performance.now();
for (const row of rows) {
  const values = EVENT_COLUMNS.map((c) => (c === 'tenant_id' ? tenants[1]!.id : row[c]));
  await db.transaction().execute(async () => {
    writer.execute(insertPlain, values);
  });
}
const plain = performance.now() - t0;
console.log(`append with tree: ${rate(EVENTS, withTree)}; plain insert: ${rate(EVENTS, plain)}`);

const queries = createAuditQueries({ db });
const actor = {
  kind: 'system' as const,
  tenantId: tenants[0]!.id,
  job: 'measure',
  role: 'owner' as const,
  request: { requestId: 'm', ip: null, userAgent: null },
};
const PROOFS = 500;
t0 = performance.now();
for (let i = 0; i < PROOFS; i++) {
  await queries.inclusion(actor, (i * 7919) % EVENTS, EVENTS);
}
const incl = (performance.now() - t0) / PROOFS;
t0 = performance.now();
for (let i = 1; i <= PROOFS; i++) {
  await queries.consistency(actor, (i * 7919) % EVENTS || 1, EVENTS);
}
const cons = (performance.now() - t0) / PROOFS;
console.log(
  `at ${EVENTS} leaves: inclusion proof ${incl.toFixed(3)} ms, consistency proof ${cons.toFixed(3)} ms`,
);
t0 = performance.now();
await verifyTenantLog(db, tenants[0]!.id, [audit.signingKey().publicKey]);
console.log(`verify ${EVENTS} events: ${rate(EVENTS, performance.now() - t0)}`);
await database.close();
fs.rmSync(dir, { recursive: true, force: true });
