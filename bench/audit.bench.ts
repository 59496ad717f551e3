/**
 * `npm run bench:audit` (`npx tsx bench/audit.bench.ts`): the audit log's costs, each against a
 * baseline measured in the same run (alternating rounds, so machine noise hits both), on SQLite:
 *
 * 1. events appended/s with the Merkle tree maintained (one transaction per event, as a change
 *    does) vs plain inserts of the same rows, in the same kind of transaction, into a plain table
 *    of the same shape (the columns, generated ones included, key, foreign key and secondary
 *    indexes of `audit_events`), with the cheapest insert there is (one statement prepared once),
 *    after a warm-up round of each that is not counted; goal ratio >= 0.5;
 * 2. events verified/s; goal >= 100,000/s on one core:
 *    - core `verifyLog` over in-memory pages of the stored text (the verification code alone);
 *    - from the database: the audit service's `verify`, which `custos audit verify` runs (check
 *      that the event columns are still generated from the canonical bytes, read every row's
 *      bytes and leaf hash, leaf hashes, tree, stored subtree hashes, every signed checkpoint,
 *      then sign a head), over a log of
 *      BENCH_VERIFY_EVENTS (default 200,000) events appended through the real append path
 *      (1000 per transaction, to build it faster). Printed per run as events/s of wall time and
 *      of the process's CPU time (user + system): other processes share this machine's cores,
 *      and CPU time is what "one core" measures. With CUSTOS_BENCH_DATABASE_URL, the same log
 *      (its rows as appended, copied) is verified on PostgreSQL too, in a fresh database;
 * 3. inclusion and consistency proofs served from the database at 1,000,000 leaves (the tree is
 *    built directly as kept leaf hashes and subtree hashes, as after pruning); goal < 5 ms;
 * 4. the added cost of auditing a contact update: PATCH through the record service with the
 *    audit append vs the same service without it.
 *
 * BENCH_AUDIT_EVENTS (default 2000 per round), BENCH_ROUNDS (default 3) tune it.
 *
 * `npm run bench:audit` runs it with the V8 flag `bin/custos.js` gives the CLI
 * (`--max-semi-space-size=32`), so that verification is measured as `custos audit verify` runs;
 * the verify line says when it is missing. It also passes `--expose-gc`: each verification run
 * starts from a collected heap, as the CLI's own process does, instead of collecting the garbage
 * this process made appending the log.
 */
import { randomBytes } from 'node:crypto';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import SQLite from 'better-sqlite3';
import { sql, type Kysely } from 'kysely';
import pg from 'pg';
import { systemClock } from '../src/clock.ts';
import {
  CompactTree,
  hashFromHex,
  leafHash,
  nodeHash,
  toHex,
  verifyConsistency,
  verifyInclusion,
  verifyLog,
  type StoredAuditLeaf,
} from '../src/core/audit/index.ts';
import type { Actor } from '../src/core/policy/index.ts';
import { migrateToLatest, openDatabase } from '../src/db/database.ts';
import type { Database } from '../src/db/schema.ts';
import { runAsSystem } from '../src/db/tenant-scope.ts';
import { newId } from '../src/ids.ts';
import { WRITTEN_COLUMNS } from '../src/modules/audit/event.ts';
import { createAuditQueries } from '../src/modules/audit/queries.ts';
import { createAuditService } from '../src/modules/audit/service.ts';
import { verifyTenantLog } from '../src/modules/audit/verify.ts';
import { contactSpec } from '../src/modules/contacts/spec.ts';
import { createRecordService } from '../src/modules/records/service.ts';
import { openKeys } from '../src/modules/keys/open.ts';
import { loadConfig } from '../src/config.ts';

const EVENTS = Number(process.env.BENCH_AUDIT_EVENTS ?? 2000);
const ROUNDS = Number(process.env.BENCH_ROUNDS ?? 3);
const LEAVES = 1_000_000;
const PROOFS = 1000;
const VERIFY_EVENTS = Number(process.env.BENCH_VERIFY_EVENTS ?? 200_000);

const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'custos-audit-bench-'));
const database = openDatabase({ dataDir: dir });
const { db } = database;
await migrateToLatest(db);
const now = () => new Date().toISOString();
const tenants = ['a', 'b', 'proofs', 'verify'].map((slug) => ({ id: newId(), slug }));
for (const t of tenants) {
  await db
    .insertInto('tenants')
    .values({ ...t, name: t.slug, created_at: now() })
    .execute();
}
const [tenantA, tenantC, tenantP, tenantV] = tenants as [
  (typeof tenants)[0],
  (typeof tenants)[0],
  (typeof tenants)[0],
  (typeof tenants)[0],
];
// As the server composes it (compose.ts): appends use the connection's synchronous statements.
const writer = database.writer!;
const audit = createAuditService({
  db,
  dialect: 'sqlite',
  clock: systemClock,
  dataDir: dir,
  writer,
});
const rate = (n: number, ms: number) => (n / ms) * 1000;
const fmt = (n: number) => Math.round(n).toLocaleString('en');
const out = (line: string) => process.stdout.write(`${line}\n`);

// A plain table of the same shape: audit_events' own DDL (columns, the generated ones included,
// primary key, foreign key) and its secondary indexes, renamed; no tree, no lock, no hashing.
const ddl = await sql<{
  type: string;
  sql: string;
}>`select type, sql from sqlite_master where tbl_name = 'audit_events' and sql is not null order by type desc`.execute(
  db,
);
for (const { sql: text } of ddl.rows) {
  await sql.raw(text.replace(/\baudit_events/g, 'bench_plain_events')).execute(db);
}
const secondary = ddl.rows.filter((r) => r.type === 'index').length;
const insertPlain = `insert into bench_plain_events (${WRITTEN_COLUMNS.join(', ')}) values (${WRITTEN_COLUMNS.map(() => '?').join(', ')})`;

const event = (i: number) => ({
  tenantId: tenantA.id,
  type: 'record.updated',
  actor: { kind: 'user' as const, id: '0190a1b2-c3d4-7e5f-8a9b-000000000001' },
  request: { ip: '203.0.113.7', userAgent: 'bench', requestId: newId() },
  target: { type: 'contact', id: `rec-${i}` },
  fields: ['email', 'phone'],
});

// 1. Append vs plain insert, alternating rounds. Round 0 of each is a warm-up, not counted: both
// ran their first round slower than the later ones (in a scratch run of 8 rounds of 2000, the
// append x1.3-1.5 and the plain insert x1.2-1.3), and counting it measured V8 compiling the
// append's longer path more than the append.
let appendMs = 0;
let plainMs = 0;
const roundRatios: number[] = [];
for (let round = 0; round <= ROUNDS; round++) {
  const first = round * EVENTS;
  let t0 = performance.now();
  for (let i = first; i < first + EVENTS; i++) {
    await db.transaction().execute((trx) => audit.append(trx, event(i)));
  }
  const appendRound = performance.now() - t0;
  const rows = await db
    .selectFrom('audit_events')
    .select(WRITTEN_COLUMNS)
    .where('tenant_id', '=', tenantA.id)
    .where('leaf_index', '>=', first)
    .orderBy('leaf_index')
    .execute();
  t0 = performance.now();
  for (const row of rows) {
    const values = WRITTEN_COLUMNS.map((c) => row[c]);
    await db.transaction().execute(async () => {
      writer.execute(insertPlain, values);
    });
  }
  const plainRound = performance.now() - t0;
  if (round === 0) continue;
  appendMs += appendRound;
  plainMs += plainRound;
  roundRatios.push(plainRound / appendRound);
}
/** Events in tenant A's log: the warm-up round's and the counted rounds'. */
const appended = (ROUNDS + 1) * EVENTS;
const counted = ROUNDS * EVENTS;
const appendRate = rate(counted, appendMs);
const plainRate = rate(counted, plainMs);
out(
  `append with Merkle tree: ${fmt(appendRate)} events/s; plain insert of the same rows (same table shape: ${secondary} secondary indexes): ${fmt(plainRate)} events/s; ratio ${(appendRate / plainRate).toFixed(2)} (rounds: ${roundRatios.map((r) => r.toFixed(2)).join(', ')}; a warm-up round of each not counted) (goal >= 0.5)`,
);

// 2. Verification.
let t0 = performance.now();
const summary = await verifyTenantLog(db, tenantA.id, [audit.signingKey().publicKey]);
if (summary.leavesVerified !== appended) throw new Error('the appended log does not verify');
const stored = await db
  .selectFrom('audit_events')
  .select(['leaf_index', 'canonical', 'leaf_hash'])
  .where('tenant_id', '=', tenantA.id)
  .orderBy('leaf_index')
  .execute();
// As the database gives them and `audit verify` passes them on: the canonical text and the hex
// leaf hash. (Bytes here would also teach V8 a second shape of leaf, and the database
// verification measured after this, in the same process, ran ~30% slower for it.)
const leaves: StoredAuditLeaf[] = stored.map((r) => ({
  leafIndex: Number(r.leaf_index),
  canonicalBytes: r.canonical,
  storedLeafHash: r.leaf_hash,
}));
const checkpoints = await db
  .selectFrom('audit_checkpoints')
  .select(['tenant_id', 'tree_size', 'root_hash', 'signed_at', 'key_id', 'signature'])
  .where('tenant_id', '=', tenantA.id)
  .execute();
const pages = Array.from({ length: Math.ceil(leaves.length / 1000) }, (_, p) =>
  leaves.slice(p * 1000, p * 1000 + 1000),
);
// The verification code alone: repeat the log until ~200,000 leaves have been checked.
const repeats = Math.max(1, Math.ceil(200_000 / leaves.length));
t0 = performance.now();
for (let k = 0; k < repeats; k++) {
  await verifyLog({
    tenantId: tenantA.id,
    leaves: pages,
    checkpoints: checkpoints.map((c) => ({
      tenantId: c.tenant_id,
      treeSize: Number(c.tree_size),
      rootHash: c.root_hash,
      timestamp: c.signed_at,
      keyId: c.key_id,
      signature: c.signature,
    })),
    publicKeys: [audit.signingKey().publicKey],
  });
}
const coreVerifyRate = rate(leaves.length * repeats, performance.now() - t0);
out(
  `verify: ${fmt(coreVerifyRate)} events/s by the verification code alone (verifyLog over the stored text in memory, ${fmt(leaves.length * repeats)} events; goal >= 100,000)`,
);

// 2b. audit verify from the database, as the CLI runs it, over a log of VERIFY_EVENTS events.
t0 = performance.now();
const BATCH = 1000;
for (let first = 0; first < VERIFY_EVENTS; first += BATCH) {
  await db.transaction().execute(async (trx) => {
    for (let i = first; i < Math.min(VERIFY_EVENTS, first + BATCH); i++) {
      await audit.append(trx, {
        ...event(i),
        tenantId: tenantV.id,
        // Some events with a reason or no target, as a real log has.
        ...(i % 7 === 0 ? { reason: 'bulk_export' } : {}),
        ...(i % 11 === 0 ? { target: null, type: 'auth.login_succeeded' } : {}),
      });
    }
  });
}
out(`appended ${fmt(VERIFY_EVENTS)} events to verify in ${fmt(performance.now() - t0)} ms`);

/** Runs `verify` ROUNDS times; returns a line of events/s per run, wall and CPU time. */
async function timeVerify(
  verify: () => Promise<{ summary: { leavesVerified: number; checkpointsVerified: number } }>,
): Promise<string> {
  const wall: number[] = [];
  const cpu: number[] = [];
  let checkpointsVerified = 0;
  for (let round = 0; round < ROUNDS; round++) {
    // `custos audit verify` runs in a process of its own: start each run from a collected heap,
    // not from the garbage of appending the log (with --expose-gc, as npm run bench:audit does).
    (globalThis as { gc?: () => void }).gc?.();
    const started = performance.now();
    const usage = process.cpuUsage();
    const { summary } = await verify();
    const used = process.cpuUsage(usage);
    if (summary.leavesVerified !== VERIFY_EVENTS) throw new Error('the log does not verify');
    checkpointsVerified = summary.checkpointsVerified;
    wall.push(rate(VERIFY_EVENTS, performance.now() - started));
    cpu.push(rate(VERIFY_EVENTS, (used.user + used.system) / 1000));
  }
  return `${fmt(VERIFY_EVENTS)} events, ${checkpointsVerified} checkpoints: ${wall.map(fmt).join(', ')} events/s (wall); ${cpu.map(fmt).join(', ')} events/s of CPU time (goal >= 100,000)`;
}

const asCli = process.execArgv.includes('--max-semi-space-size=32')
  ? ''
  : " [run without the CLI's --max-semi-space-size=32: use npm run bench:audit]";
out(
  `audit verify from the database, SQLite: ${await timeVerify(() => audit.verify(tenantV.id))}${asCli}`,
);

if (process.env.CUSTOS_BENCH_DATABASE_URL) {
  const serverUrl = process.env.CUSTOS_BENCH_DATABASE_URL;
  const name = `custos_bench_${randomBytes(4).toString('hex')}`;
  const admin = new pg.Client({ connectionString: serverUrl });
  await admin.connect();
  await admin.query(`CREATE DATABASE "${name}"`);
  const url = new URL(serverUrl);
  url.pathname = `/${name}`;
  // Set up past the tenant walls; verify as the CLI does (custos_app, system scope).
  const owner = openDatabase({ databaseUrl: url.toString(), dataDir: dir, tenantWalls: false });
  const app = openDatabase({ databaseUrl: url.toString(), dataDir: dir, poolSize: 2 });
  try {
    await migrateToLatest(owner.db);
    t0 = performance.now();
    await copyLog(owner.db, tenantV);
    out(`copied the log to PostgreSQL in ${fmt(performance.now() - t0)} ms`);
    const pgAudit = createAuditService({
      db: app.db,
      dialect: 'postgres',
      clock: systemClock,
      dataDir: dir,
    });
    const line = await runAsSystem('cli', () => timeVerify(() => pgAudit.verify(tenantV.id)));
    out(`audit verify from the database, PostgreSQL: ${line}`);
  } finally {
    await app.close();
    await owner.close();
    await admin.query(`DROP DATABASE "${name}"`);
    await admin.end();
  }
}

/** The tenant's audit rows exactly as the append path wrote them on SQLite, into `target`. */
async function copyLog(target: Kysely<Database>, tenant: { id: string; slug: string }) {
  await target
    .insertInto('tenants')
    .values({ ...tenant, name: tenant.slug, created_at: now() })
    .execute();
  const keys = await db
    .selectFrom('audit_signing_keys')
    .select(['key_id', 'public_key', 'created_at'])
    .execute();
  await target.insertInto('audit_signing_keys').values(keys).execute();
  // Pages in primary key order (audit_nodes has no rowid on SQLite).
  const orderBy: Record<string, string> = {
    audit_tree: 'tenant_id',
    audit_events: 'leaf_index',
    audit_nodes: 'level, idx',
    audit_checkpoints: 'tree_size, key_id',
  };
  const copy = async <
    T extends 'audit_events' | 'audit_nodes' | 'audit_checkpoints' | 'audit_tree',
  >(
    table: T,
  ) => {
    for (let offset = 0; ; offset += 2000) {
      // Of the events, what an append writes (the other columns are generated from it).
      const columns = sql.raw(table === 'audit_events' ? WRITTEN_COLUMNS.join(', ') : '*');
      const rows = await sql<
        Record<string, unknown>
      >`select ${columns} from ${sql.table(table)} where tenant_id = ${tenant.id} order by ${sql.raw(orderBy[table]!)} limit 2000 offset ${offset}`.execute(
        db,
      );
      if (rows.rows.length === 0) return;
      const names = Object.keys(rows.rows[0]!);
      await sql`insert into ${sql.table(table)} (${sql.join(names.map((c) => sql.ref(c)))}) values ${sql.join(
        rows.rows.map((r) => sql`(${sql.join(names.map((c) => r[c]))})`),
      )}`.execute(target);
    }
  };
  for (const table of ['audit_tree', 'audit_events', 'audit_nodes', 'audit_checkpoints'] as const) {
    await copy(table);
  }
  await sql`analyze`.execute(target);
}

// 3. Proofs at 1,000,000 leaves, served from the database like the API does.
t0 = performance.now();
const raw = new SQLite(database.file);
raw.pragma('synchronous = OFF');
const insertNode = raw.prepare(
  'insert into audit_nodes (tenant_id, level, idx, hash) values (?, ?, ?, ?)',
);
const tree = new CompactTree();
const stack: Uint8Array[] = [];
const seed = new Uint8Array(8);
const view = new DataView(seed.buffer);
raw.transaction(() => {
  for (let i = 0; i < LEAVES; i++) {
    view.setUint32(0, i);
    const leaf = leafHash(seed);
    insertNode.run(tenantP.id, 0, i, toHex(leaf));
    let hash = leaf;
    let index = i;
    let level = 0;
    while (index % 2 === 1) {
      hash = nodeHash(stack.pop()!, hash);
      index = (index - 1) / 2;
      level++;
      insertNode.run(tenantP.id, level, index, toHex(hash));
    }
    stack.push(hash);
    tree.append(leaf);
  }
  raw
    .prepare(
      'insert into audit_tree (tenant_id, tree_size, frontier, checkpoint_size, checkpoint_at, pruned_size) values (?, ?, ?, 0, null, ?)',
    )
    .run(tenantP.id, LEAVES, JSON.stringify(tree.toState()), LEAVES);
})();
raw.close();
out(`built a ${fmt(LEAVES)}-leaf tree in the database in ${fmt(performance.now() - t0)} ms`);
const queries = createAuditQueries({ db });
const system: Actor = {
  kind: 'system',
  tenantId: tenantP.id,
  job: 'bench',
  role: 'owner',
  request: { requestId: 'bench', ip: null, userAgent: null },
};
const root = tree.root();
const pick = (k: number) => (k * 7_919 + 13) % LEAVES;
t0 = performance.now();
for (let k = 0; k < PROOFS; k++) {
  const p = await queries.inclusion(system, pick(k), LEAVES);
  if (
    k % 100 === 0 &&
    !verifyInclusion(pick(k), LEAVES, hashFromHex(p.leafHash), p.proof.map(hashFromHex), root)
  ) {
    throw new Error('inclusion proof does not verify');
  }
}
const inclusionMs = (performance.now() - t0) / PROOFS;
t0 = performance.now();
for (let k = 0; k < PROOFS; k++) await queries.consistency(system, 1 + pick(k), LEAVES);
const consistencyMs = (performance.now() - t0) / PROOFS;
// One consistency proof checked end to end against the root of its old size.
{
  const m = 1 + pick(7);
  const old = new CompactTree();
  for (let i = 0; i < m; i++) {
    view.setUint32(0, i);
    old.append(leafHash(seed));
  }
  const p = await queries.consistency(system, m, LEAVES);
  if (!verifyConsistency(m, LEAVES, old.root(), root, p.proof.map(hashFromHex))) {
    throw new Error('consistency proof does not verify');
  }
}
out(
  `at ${fmt(LEAVES)} leaves: inclusion proof ${inclusionMs.toFixed(3)} ms, consistency proof ${consistencyMs.toFixed(3)} ms (mean of ${PROOFS}, from the database; goal < 5 ms)`,
);

// 4. A contact update with and without its audit append, alternating rounds.
const actor: Actor = {
  kind: 'system',
  tenantId: tenantC.id,
  job: 'bench',
  role: 'owner',
  request: { requestId: 'bench', ip: '203.0.113.7', userAgent: 'bench' },
};
// Contacts are encrypted (field encryption): both services share one key store.
const keys = await openKeys(loadConfig({ CUSTOS_DATA_DIR: dir }), { clock: systemClock });
const audited = createRecordService(contactSpec, {
  db,
  clock: systemClock,
  audit,
  keys: keys.service,
});
const bare = createRecordService(contactSpec, { db, clock: systemClock, keys: keys.service });
const withAudit = await audited.create(actor, { firstName: 'Ada', lastName: 'Audited' });
const withoutAudit = await bare.create(actor, { firstName: 'Ada', lastName: 'Bare' });
let auditedMs = 0;
let bareMs = 0;
let vA = withAudit.version;
let vB = withoutAudit.version;
for (let round = 0; round < ROUNDS; round++) {
  t0 = performance.now();
  for (let i = 0; i < EVENTS / 2; i++) {
    vA = (await audited.update(actor, withAudit.id, vA, { title: `t${round}-${i}` })).version;
  }
  auditedMs += performance.now() - t0;
  t0 = performance.now();
  for (let i = 0; i < EVENTS / 2; i++) {
    vB = (await bare.update(actor, withoutAudit.id, vB, { title: `t${round}-${i}` })).version;
  }
  bareMs += performance.now() - t0;
}
const updates = ROUNDS * (EVENTS / 2);
const auditedUs = (auditedMs / updates) * 1000;
const bareUs = (bareMs / updates) * 1000;
out(
  `contact update: ${fmt(bareUs)} us without audit, ${fmt(auditedUs)} us with the audit append: +${fmt(auditedUs - bareUs)} us (x${(auditedUs / bareUs).toFixed(2)})`,
);

await database.close();
await keys.service.close();
fs.rmSync(dir, { recursive: true, force: true });
