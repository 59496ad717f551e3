/**
 * What the tenant walls cost on PostgreSQL: point lookups by primary key (the query every record
 * request makes) through the login role with no walls, through the walls with one tenant (the
 * connection keeps its settings), and through the walls alternating between two tenants (every
 * acquisition changes the settings: one more round trip). Alternating rounds, same run.
 *
 *   CUSTOS_BENCH_DATABASE_URL=postgres://postgres@127.0.0.1:5432/postgres \
 *     npx tsx bench/tenant-walls.bench.ts
 */
import os from 'node:os';
import fs from 'node:fs';
import path from 'node:path';
import { randomBytes, randomUUID } from 'node:crypto';
import pg from 'pg';
import { migrateToLatest, openDatabase, type DatabaseHandle } from '../src/db/database.ts';
import { runInTenant } from '../src/db/tenant-scope.ts';

const serverUrl = process.env.CUSTOS_BENCH_DATABASE_URL;
if (!serverUrl) throw new TypeError('set CUSTOS_BENCH_DATABASE_URL to a PostgreSQL server');
const QUERIES = Number(process.env.BENCH_QUERIES ?? 2000);
const ROUNDS = Number(process.env.BENCH_ROUNDS ?? 3);
const CONCURRENCY = 8;

const name = `custos_bench_${randomBytes(4).toString('hex')}`;
const admin = new pg.Client({ connectionString: serverUrl });
await admin.connect();
await admin.query(`CREATE DATABASE "${name}"`);
const url = new URL(serverUrl);
url.pathname = `/${name}`;
const dataDir = fs.mkdtempSync(path.join(os.tmpdir(), 'custos-bench-'));
const open = (tenantWalls: boolean) =>
  openDatabase({ databaseUrl: url.toString(), dataDir, poolSize: CONCURRENCY, tenantWalls });
const bare = open(false);
const walled = open(true);

try {
  await migrateToLatest(bare.db);
  const now = new Date().toISOString();
  const tenants = [randomUUID(), randomUUID()];
  const ids: Record<string, string[]> = {};
  for (const [i, id] of tenants.entries()) {
    await bare.db
      .insertInto('tenants')
      .values({ id, slug: `b${i}`, name: `B${i}`, created_at: now })
      .execute();
    ids[id] = [];
    for (let n = 0; n < 100; n++) {
      const contact = randomUUID();
      ids[id].push(contact);
      await bare.db
        .insertInto('contacts')
        .values({
          id: contact,
          tenant_id: id,
          owner_id: null,
          created_at: now,
          updated_at: now,
          version: 1,
        })
        .execute();
    }
  }

  const lookup = (handle: DatabaseHandle, tenantId: string, n: number) =>
    handle.db
      .selectFrom('contacts')
      .select(['id', 'version'])
      .where('tenant_id', '=', tenantId)
      .where('id', '=', ids[tenantId]![n % 100]!)
      .executeTakeFirstOrThrow();

  async function run(mode: 'bare' | 'one-tenant' | 'alternating'): Promise<number> {
    let next = 0;
    const started = process.hrtime.bigint();
    await Promise.all(
      Array.from({ length: CONCURRENCY }, async () => {
        while (next < QUERIES) {
          const n = next++;
          const tenantId = tenants[mode === 'alternating' ? n % 2 : 0]!;
          if (mode === 'bare') await lookup(bare, tenantId, n);
          else await runInTenant(tenantId, () => lookup(walled, tenantId, n));
        }
      }),
    );
    return QUERIES / (Number(process.hrtime.bigint() - started) / 1e9);
  }

  const modes = ['bare', 'one-tenant', 'alternating'] as const;
  const results: Record<string, number[]> = { bare: [], 'one-tenant': [], alternating: [] };
  for (const mode of modes) await run(mode); // warm-up
  for (let r = 0; r < ROUNDS; r++) for (const mode of modes) results[mode]!.push(await run(mode));
  const median = (xs: number[]) => [...xs].sort((x, y) => x - y)[Math.floor(xs.length / 2)]!;
  const base = median(results.bare!);
  for (const mode of modes) {
    const qps = median(results[mode]!);
    process.stdout.write(
      `${mode.padEnd(12)} ${qps.toFixed(0).padStart(7)} queries/s  ratio to bare ${(qps / base).toFixed(2)}\n`,
    );
  }
} finally {
  await bare.close();
  await walled.close();
  await admin.query(`DROP DATABASE IF EXISTS "${name}" WITH (FORCE)`);
  await admin.end();
  fs.rmSync(dataDir, { recursive: true, force: true });
}
