/**
 * `npm run bench:import`: 100,000 generated contacts (deterministic CSV, built in memory) imported
 * through the contact import service into a fresh database, against a baseline measured in the
 * same run: the same rows inserted with plain multi-row Kysely INSERTs of 500 rows, in one
 * transaction, with no parsing, validation or de-duplication. Prints rows/s and the ratio.
 * SQLite in a temporary directory; PostgreSQL too when CUSTOS_BENCH_DATABASE_URL is set.
 * Goal: >= 20,000 rows/s on SQLite.
 */
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { randomBytes } from 'node:crypto';
import { Readable } from 'node:stream';
import pg from 'pg';
import { createManualClock } from '../src/clock.ts';
import { migrateToLatest, openDatabase, type DatabaseHandle } from '../src/db/database.ts';
import { newId } from '../src/ids.ts';
import { importContacts } from '../src/modules/contacts/import.ts';
import { contactSpec } from '../src/modules/contacts/spec.ts';
import { createFieldCrypto } from '../src/modules/records/field-crypto.ts';
import { openKeys } from '../src/modules/keys/open.ts';
import { createUserCrypto } from '../src/modules/users/crypto.ts';
import { loadConfig } from '../src/config.ts';
import { setupTenant } from '../src/modules/tenants/service.ts';
import { runAsSystem, runInTenant } from '../src/db/tenant-scope.ts';
import type { Actor } from '../src/core/policy/index.ts';

const ROWS = Number(process.env.BENCH_IMPORT_ROWS ?? 100_000);
const BATCH = 500;

function generateCsv(rows: number): Buffer {
  const lines = ['first_name,last_name,email,phone,title,company,date_of_birth,notes'];
  let seed = 42;
  const next = () => (seed = (seed * 1103515245 + 12345) % 2 ** 31);
  for (let i = 0; i < rows; i++) {
    const n = next();
    const dob = `19${50 + (n % 50)}-${String(1 + (n % 12)).padStart(2, '0')}-${String(1 + (n % 28)).padStart(2, '0')}`;
    lines.push(
      `First${i},Last${n % 9973},person${i}@example${n % 97}.com,+1 415 555 ${String(n % 10000).padStart(4, '0')},Analyst,"Company ${n % 500}, Inc",${dob},"Met at event ${n % 31}; prefers ""email"""`,
    );
  }
  return Buffer.from(`${lines.join('\n')}\n`, 'utf8');
}

async function freshDatabase(url: string | undefined) {
  const dataDir = fs.mkdtempSync(path.join(os.tmpdir(), 'custos-bench-import-'));
  let name: string | undefined;
  let databaseUrl: string | undefined;
  if (url) {
    name = `custos_bench_${randomBytes(4).toString('hex')}`;
    const c = new pg.Client({ connectionString: url });
    await c.connect();
    await c.query(`CREATE DATABASE "${name}"`);
    await c.end();
    const u = new URL(url);
    u.pathname = `/${name}`;
    databaseUrl = u.toString();
  }
  const handle = openDatabase({ databaseUrl, dataDir, poolSize: 2 });
  await migrateToLatest(handle.db);
  const clock = createManualClock();
  // PostgreSQL's tenant walls: the tenant is created as the CLI does, the rest runs in it.
  const keys = await openKeys(
    loadConfig({
      CUSTOS_DATA_DIR: dataDir,
      ...(databaseUrl ? { CUSTOS_DATABASE_URL: databaseUrl } : {}),
    }),
    { clock },
  );
  const { tenant } = await runAsSystem('cli', () =>
    setupTenant(
      { db: handle.db, clock, users: createUserCrypto({ keys: keys.service }) },
      {
        slug: 'bench',
        name: 'Bench',
        ownerEmail: 'owner@bench.example',
        ownerName: 'Owner',
        password: 'correct horse battery staple',
      },
    ),
  );
  await keys.service.close();
  const drop = async () => {
    await handle.close();
    fs.rmSync(dataDir, { recursive: true, force: true });
    if (url && name) {
      const c = new pg.Client({ connectionString: url });
      await c.connect();
      await c.query(`DROP DATABASE IF EXISTS "${name}" WITH (FORCE)`);
      await c.end();
    }
  };
  return { handle, clock, tenantId: tenant.id, dataDir, databaseUrl, drop };
}

async function baseline(handle: DatabaseHandle, tenantId: string, rows: number): Promise<number> {
  const now = new Date().toISOString();
  const started = performance.now();
  await handle.db.transaction().execute(async (trx) => {
    for (let i = 0; i < rows; i += BATCH) {
      const values = [];
      for (let j = i; j < Math.min(rows, i + BATCH); j++) {
        values.push({
          id: newId(),
          tenant_id: tenantId,
          owner_id: null,
          created_at: now,
          updated_at: now,
          version: 1,
          first_name: `First${j}`,
          last_name: `Last${j}`,
          email: `person${j}@example.com`,
          phone: '+1 415 555 0100',
          title: 'Analyst',
          date_of_birth: '1970-01-01',
          notes: 'Met at event',
        });
      }
      await trx.insertInto('contacts').values(values).execute();
    }
  });
  return rows / ((performance.now() - started) / 1000);
}

async function measure(label: string, url: string | undefined, csv: Buffer) {
  const base = await freshDatabase(url);
  const bare = await runInTenant(base.tenantId, () => baseline(base.handle, base.tenantId, ROWS));
  await base.drop();

  const run = await freshDatabase(url);
  const actor: Actor = {
    kind: 'system',
    tenantId: run.tenantId,
    job: 'bench',
    role: 'owner',
    request: { requestId: 'bench', ip: null, userAgent: null },
  };
  // Field encryption: subject keys in the key store beside the data (file root key).
  const config = loadConfig({
    CUSTOS_DATA_DIR: run.dataDir,
    ...(run.databaseUrl ? { CUSTOS_DATABASE_URL: run.databaseUrl } : {}),
  });
  const keys = await openKeys(config, { clock: run.clock });
  const crypto = createFieldCrypto(contactSpec, { keys: keys.service });
  const chunks: Buffer[] = [];
  for (let i = 0; i < csv.length; i += 64 * 1024) chunks.push(csv.subarray(i, i + 64 * 1024));
  const started = performance.now();
  const report = await runInTenant(run.tenantId, () =>
    importContacts(
      { db: run.handle.db, clock: run.clock, keys: keys.service, crypto },
      actor,
      Readable.from(chunks),
      { mode: 'all-or-nothing' },
    ),
  );
  const seconds = (performance.now() - started) / 1000;
  await keys.service.close();
  await run.drop();
  if (report.created !== ROWS) throw new Error(`created ${report.created} of ${ROWS}`);
  const rate = ROWS / seconds;
  console.log(
    `${label}: import ${Math.round(rate)} rows/s (${seconds.toFixed(2)} s, ${report.companiesCreated} companies), ` +
      `bare INSERT ${Math.round(bare)} rows/s, ratio ${(rate / bare).toFixed(2)}`,
  );
  return rate;
}

const csv = generateCsv(ROWS);
console.log(`${ROWS} rows, ${(csv.length / 1e6).toFixed(1)} MB of CSV`);
const sqliteRate = await measure('sqlite', undefined, csv);
if (process.env.CUSTOS_BENCH_DATABASE_URL) {
  await measure('postgres', process.env.CUSTOS_BENCH_DATABASE_URL, csv);
}
if (sqliteRate < 20_000) {
  console.log('below the goal of 20,000 rows/s on SQLite');
  process.exitCode = 1;
}
