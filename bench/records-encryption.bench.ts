/**
 * `npx tsx bench/records-encryption.bench.ts`: what field encryption costs the records layer, on
 * SQLite in a temporary directory, against a plaintext baseline measured in the same run over
 * the same database:
 *
 * - contacts created one by one through the record service (encrypted: a subject key per
 *   contact in the key store, five to eight AEAD calls, three blind indexes);
 * - an authenticated `GET /api/v1/contacts/:id` through the whole HTTP stack (`app.inject`).
 *
 * The plaintext baseline is the same service over a copy of the contact spec under an object the
 * data map classes as all internal (a benchmark-only trick: the product has no switch to turn
 * encryption off). Goals (issue 3): encrypted create >= 0.33 of plaintext, GET >= 0.8.
 *
 * `npm run bench:crypto` prints the same measurements as two of its sections
 * (`measureRecordsEncryption`).
 */
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { createManualClock } from '../src/clock.ts';
import { loadConfig } from '../src/config.ts';
import { createServices } from '../src/compose.ts';
import { migrateToLatest, openDatabase } from '../src/db/database.ts';
import { buildApp } from '../src/http/app.ts';
import { contactSpec } from '../src/modules/contacts/spec.ts';
import { openKeys } from '../src/modules/keys/open.ts';
import { createRecordService } from '../src/modules/records/service.ts';
import type { RecordSpec } from '../src/modules/records/spec.ts';
import { setupTenant } from '../src/modules/tenants/service.ts';
import type { Actor } from '../src/core/policy/index.ts';
import type { Rate } from './crypto.bench.ts';

const CREATES = Number(process.env.BENCH_CREATES ?? 2000);
const GETS = Number(process.env.BENCH_GETS ?? 1000);
/** GET rounds per side, alternating; many short rounds so that bursts of load hit both sides. */
const ROUNDS = Number(process.env.BENCH_GET_ROUNDS ?? 12);
const WARM_UP = 10_000;

/** Both measurements, each side's rounds (units per second); creates first, then GETs. */
export interface RecordsEncryptionResult {
  creates: [plain: Rate, encrypted: Rate];
  /** GET of a contact with personal fields: what encryption costs a read (the goal). */
  gets: [plain: Rate, encrypted: Rate];
  /** GET of a contact with sensitive fields too (both sides append the mandatory read event). */
  getsSensitive: [plain: Rate, encrypted: Rate];
  notes: { creates: string; gets: string; getsSensitive: string };
}

/** Sets up a temporary SQLite database and server, measures, and removes them. */
export async function measureRecordsEncryption(): Promise<RecordsEncryptionResult> {
  const dataDir = fs.mkdtempSync(path.join(os.tmpdir(), 'custos-bench-records-'));
  const database = openDatabase({ dataDir });
  await migrateToLatest(database.db);
  const clock = createManualClock();
  const config = loadConfig({ CUSTOS_DATA_DIR: dataDir, CUSTOS_LOG_LEVEL: 'error' });
  const keys = await openKeys(config, { clock });
  const services = createServices({ config, database, clock, keys: keys.service });
  const password = 'correct horse battery staple';
  const { tenant, ownerId } = await setupTenant(
    { db: database.db, clock, users: services.userCrypto },
    { slug: 'bench', name: 'Bench', ownerEmail: 'owner@bench.example', ownerName: 'O', password },
  );
  const actor: Actor = {
    kind: 'system',
    tenantId: tenant.id,
    job: 'bench',
    role: 'owner',
    request: { requestId: 'bench', ip: null, userAgent: null },
  };
  // Same table, fields and code path; 'deal' classes none of these fields as protected.
  const plainSpec: RecordSpec = {
    ...contactSpec,
    object: 'deal',
    blindIndexes: undefined,
    subjectOf: undefined,
    shredOnDelete: false,
    uniqueConflict: undefined,
    filters: {},
  };
  // Audited like the real service: record.created/updated/deleted are appended for every object,
  // protected or not, so they are not a cost of encryption and both sides pay them.
  const plain = createRecordService(plainSpec, {
    db: database.db,
    clock,
    reader: database.reader,
    keys: keys.service,
    audit: services.auditLog,
    auditPolicy: services.auditSettings,
  });
  const encrypted = services.contacts;

  const row = (i: number, tag: string) => ({
    firstName: `First${i}`,
    lastName: `Last${i}`,
    email: `${tag}${i}@example.com`,
    phone: `+1 415 555 ${String(1000 + (i % 9000))}`,
    title: 'Analyst',
    dateOfBirth: '1970-01-01',
    nationalId: `123-45-${String(i % 10000).padStart(4, '0')}`,
    address: `${i} Main Street, Springfield`,
    notes: 'Met at the trade fair; prefers e-mail.',
    ownerId,
  });

  async function creates(service: typeof plain, tag: string): Promise<number> {
    const started = performance.now();
    for (let i = 0; i < CREATES; i++) await service.create(actor, row(i, tag));
    return CREATES / ((performance.now() - started) / 1000);
  }

  const median = (xs: number[]) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)]!;

  // Creates: alternate the order so that neither side always gets the warmer database.
  const createRates = { plain: [] as number[], encrypted: [] as number[] };
  for (let r = 0; r < 3; r++) {
    const first = r % 2 === 0;
    if (first) createRates.plain.push(await creates(plain, `p${r}-`));
    createRates.encrypted.push(await creates(encrypted, `e${r}-`));
    if (!first) createRates.plain.push(await creates(plain, `p${r}-`));
  }

  // GETs over HTTP: one app per service, the same session.
  const encApp = await buildApp({ config, services });
  const plainApp = await buildApp({ config, services: { ...services, contacts: plain } });
  const login = await encApp.inject({
    method: 'POST',
    url: '/api/v1/auth/login',
    payload: { tenant: 'bench', email: 'owner@bench.example', password },
  });
  const cookie = login.cookies.find((c) => c.name === '__Host-custos_session');
  if (!cookie) throw new Error(`login failed: ${login.statusCode}`);
  const headers = { cookie: `${cookie.name}=${cookie.value}` };
  // Two contacts per side. `personal`: names, e-mail, phone, address (personal fields, encrypted;
  // reading them is recorded only when the tenant asks for it, off here) — this isolates what
  // encryption costs a read. `sensitive`: the same plus date of birth, national id and notes;
  // reading those in clear always appends a record.read event (issue 6's mandatory category), on
  // both sides: read auditing follows the spec's `resource` (contact, in both), encryption its
  // `object`. That pair measures encryption of a larger record under an audited read.
  const personal = (tag: string) => ({
    ...row(0, tag),
    dateOfBirth: undefined,
    nationalId: undefined,
    notes: undefined,
  });
  const ids = {
    personal: {
      encrypted: (await encrypted.create(actor, personal('get-pe'))).id,
      plain: (await plain.create(actor, personal('get-pp'))).id,
    },
    sensitive: {
      encrypted: (await encrypted.create(actor, row(999_999, 'get-e'))).id,
      plain: (await plain.create(actor, row(999_998, 'get-p'))).id,
    },
  };

  // One event-loop turn per request, as a server takes: `inject` answers through promises only,
  // and without a turn the callbacks Node queues with setImmediate for every response pile up
  // (thousands of finished requests kept alive), which made garbage collection, not the
  // requests, most of what a round measured.
  const turn = () => new Promise<void>((resolve) => setImmediate(resolve));
  async function gets(app: typeof encApp, id: string, count = GETS): Promise<number> {
    const started = performance.now();
    for (let i = 0; i < count; i++) {
      const res = await app.inject({ url: `/api/v1/contacts/${id}`, headers });
      if (res.statusCode !== 200) throw new Error(`GET ${res.statusCode} ${res.body}`);
      await turn();
    }
    return count / ((performance.now() - started) / 1000);
  }
  const getRates = {
    personal: { plain: [] as number[], encrypted: [] as number[] },
    sensitive: { plain: [] as number[], encrypted: [] as number[] },
  };
  for (const kind of ['personal', 'sensitive'] as const) {
    await gets(encApp, ids[kind].encrypted, WARM_UP);
    await gets(plainApp, ids[kind].plain, WARM_UP);
    for (let r = 0; r < ROUNDS; r++) {
      // Alternate which side goes first, as for creates.
      if (r % 2 === 0) getRates[kind].plain.push(await gets(plainApp, ids[kind].plain));
      getRates[kind].encrypted.push(await gets(encApp, ids[kind].encrypted));
      if (r % 2 === 1) getRates[kind].plain.push(await gets(plainApp, ids[kind].plain));
    }
  }

  await encApp.close();
  await plainApp.close();
  await services.throttleStore.close();
  await keys.service.close();
  await database.close();
  fs.rmSync(dataDir, { recursive: true, force: true });

  const rate = (name: string, unit: string, rounds: number[]): Rate => ({
    name,
    unit,
    perSecond: median(rounds),
    low: Math.min(...rounds),
    high: Math.max(...rounds),
    rounds,
  });
  return {
    creates: [
      rate('plaintext (same spec, nothing protected)', 'contacts', createRates.plain),
      rate('encrypted (subject key, AEAD, 3 blind indexes)', 'contacts', createRates.encrypted),
    ],
    gets: [
      rate('plaintext', 'requests', getRates.personal.plain),
      rate('encrypted', 'requests', getRates.personal.encrypted),
    ],
    getsSensitive: [
      rate('plaintext + record.read event', 'requests', getRates.sensitive.plain),
      rate('encrypted + record.read event', 'requests', getRates.sensitive.encrypted),
    ],
    notes: {
      creates: `record service create, ${CREATES} contacts x 3 alternating runs, SQLite (WAL) in a temporary directory`,
      gets: `GET /api/v1/contacts/:id of a contact with personal fields (names, e-mail, phone, address) with a session cookie through app.inject, ${GETS} x ${ROUNDS} rounds`,
      getsSensitive: `the same GET of a contact that also has date of birth, national id and notes: both sides append the mandatory record.read event for sensitive fields read in clear (read auditing follows the contact resource, which both share)`,
    },
  };
}

if (
  import.meta.url === `file://${process.argv[1]}` ||
  process.argv[1]?.endsWith('records-encryption.bench.ts')
) {
  const { creates, gets, getsSensitive } = await measureRecordsEncryption();
  const pairedMedian = (a: number[], b: number[]) => {
    const r = a.map((x, k) => x / b[k]!).sort((x, y) => x - y);
    return r[Math.floor(r.length / 2)]!;
  };
  const [cp, ce] = creates;
  const [gp, ge] = gets;
  const [sp, se] = getsSensitive;
  console.log(
    `create (record service, ${CREATES} x 3): plaintext ${Math.round(cp.perSecond)}/s, encrypted ${Math.round(ce.perSecond)}/s, ratio ${(ce.perSecond / cp.perSecond).toFixed(2)} (goal >= 0.33)`,
  );
  console.log(
    `GET /contacts/:id (HTTP, ${GETS} x ${ROUNDS}): plaintext ${Math.round(gp.perSecond)}/s, encrypted ${Math.round(ge.perSecond)}/s, ratio ${(ge.perSecond / gp.perSecond).toFixed(2)}, median of per-round ratios ${pairedMedian(ge.rounds, gp.rounds).toFixed(2)} (goal >= 0.8)`,
  );
  console.log(
    `GET /contacts/:id with sensitive fields (+ record.read event on both sides): plaintext ${Math.round(sp.perSecond)}/s, encrypted ${Math.round(se.perSecond)}/s, ratio ${(se.perSecond / sp.perSecond).toFixed(2)} (no goal; see the note)`,
  );
}
