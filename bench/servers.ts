/**
 * Starts one server for the API benchmark in its own process, so the load generator does not
 * share the event loop with it: `custos` (the real app, authenticated) or `bare` (Fastify and
 * better-sqlite3 doing the same select/insert with no security at all). Prints one JSON line
 * with the port and what the client needs, then serves until killed.
 */
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { randomUUID } from 'node:crypto';
import inspector from 'node:inspector';
import SQLite from 'better-sqlite3';
import Fastify from 'fastify';
import { systemClock } from '../src/clock.ts';
import { loadConfig } from '../src/config.ts';
import { createServices } from '../src/compose.ts';
import { migrateToLatest, openDatabase } from '../src/db/database.ts';
import { buildApp } from '../src/http/app.ts';
import { setupTenant } from '../src/modules/tenants/service.ts';

const SEED = 2_000;
const mode = process.argv[2];
const dataDir = fs.mkdtempSync(path.join(os.tmpdir(), `custos-bench-${mode}-`));
// BENCH_PROFILE=<file>: a CPU profile of the serving phase only (after seeding), for tuning.
const profile = process.env.BENCH_PROFILE ? new inspector.Session() : undefined;
const post = (method: string) =>
  new Promise<unknown>((resolve, reject) =>
    profile?.post(method, (err, result) => (err ? reject(err) : resolve(result))),
  );
for (const signal of ['SIGTERM', 'SIGINT'] as const) {
  process.on(signal, () => {
    const finish = () => {
      fs.rmSync(dataDir, { recursive: true, force: true });
      process.exit(0);
    };
    if (!profile) return finish();
    void post('Profiler.stop').then((r) => {
      fs.writeFileSync(
        process.env.BENCH_PROFILE!,
        JSON.stringify((r as { profile: unknown }).profile),
      );
      finish();
    });
  });
}
async function serving() {
  if (!profile) return;
  profile.connect();
  await post('Profiler.enable');
  await post('Profiler.start');
}

const contact = (i: number) => ({
  firstName: `First${i}`,
  lastName: `Last${i}`,
  email: `person${i}@bench.example`,
  phone: `+1415555${String(i).padStart(4, '0')}`,
  title: 'Buyer',
});

if (mode === 'custos') {
  const config = loadConfig({
    CUSTOS_DATA_DIR: dataDir,
    CUSTOS_LOG_LEVEL: 'silent',
    CUSTOS_PORT: '0',
  });
  const database = openDatabase({ dataDir });
  await migrateToLatest(database.db);
  const services = createServices({ config, database, clock: systemClock });
  const password = 'bench password that is long enough';
  await setupTenant(
    { db: database.db, clock: systemClock, users: services.userCrypto },
    {
      slug: 'bench',
      name: 'Bench',
      ownerEmail: 'owner@bench.example',
      ownerName: 'Owner',
      password,
    },
  );
  const app = await buildApp({ config, services });
  await app.listen({ host: '127.0.0.1', port: 0 });
  const login = await app.inject({
    method: 'POST',
    url: '/api/v1/auth/login',
    payload: { tenant: 'bench', email: 'owner@bench.example', password },
  });
  const cookie = login.cookies.find((c) => c.name === '__Host-custos_session');
  const headers = {
    cookie: `${cookie?.name}=${cookie?.value}`,
    'x-csrf-token': login.json<{ csrfToken: string }>().csrfToken,
  };
  const ids: string[] = [];
  for (let i = 0; i < SEED; i++) {
    const res = await app.inject({
      method: 'POST',
      url: '/api/v1/contacts',
      headers,
      payload: contact(i),
    });
    ids.push(res.json<{ id: string }>().id);
  }
  const address = app.addresses()[0] as { port: number } | undefined;
  await serving();
  process.stdout.write(`${JSON.stringify({ port: address?.port, headers, ids })}\n`);
} else if (mode === 'bare') {
  const db = new SQLite(path.join(dataDir, 'bare.db'));
  db.pragma('journal_mode = WAL');
  db.pragma('synchronous = NORMAL');
  db.exec(`CREATE TABLE contacts (id TEXT PRIMARY KEY, first_name TEXT, last_name TEXT, email TEXT,
    phone TEXT, title TEXT, created_at TEXT NOT NULL)`);
  const insert = db.prepare(
    'INSERT INTO contacts (id, first_name, last_name, email, phone, title, created_at) VALUES (?, ?, ?, ?, ?, ?, ?)',
  );
  const select = db.prepare(
    'SELECT id, first_name, last_name, email, phone, title, created_at FROM contacts WHERE id = ?',
  );
  const app = Fastify({ logger: false });
  app.get('/contacts/:id', async (request, reply) => {
    const row = select.get((request.params as { id: string }).id);
    return row ?? reply.code(404).send({});
  });
  app.post('/contacts', async (request, reply) => {
    const b = request.body as ReturnType<typeof contact>;
    const id = randomUUID();
    insert.run(id, b.firstName, b.lastName, b.email, b.phone, b.title, new Date().toISOString());
    return reply.code(201).send({ id, ...b });
  });
  const ids: string[] = [];
  for (let i = 0; i < SEED; i++) {
    const id = randomUUID();
    const c = contact(i);
    insert.run(id, c.firstName, c.lastName, c.email, c.phone, c.title, new Date().toISOString());
    ids.push(id);
  }
  await app.listen({ host: '127.0.0.1', port: 0 });
  const address = app.addresses()[0] as { port: number } | undefined;
  await serving();
  process.stdout.write(`${JSON.stringify({ port: address?.port, headers: {}, ids })}\n`);
} else {
  throw new Error('usage: servers.ts custos|bare');
}
