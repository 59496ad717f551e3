/**
 * `npm run bench:crypto` (`tsx bench/crypto.bench.ts`): the cost of field encryption, through
 * Custos' own `core/crypto` module, in one run.
 *
 * 1. Field encrypt / decrypt ops/s, and the alternatives measured before choosing how a record
 *    is encrypted: one AEAD per field vs one per record group, pooled vs per-call nonces,
 *    a `KeyObject` reused vs raw key bytes vs a `KeyObject` built per call.
 * 2. "Custos encrypt + blind index" per row vs ciphersweet-js (the established searchable-
 *    encryption library), same rows: 6 encrypted fields and 3 blind indexes (fast hash) each.
 *    Goal: Custos >= 2x ciphersweet-js.
 *
 * Every variant is measured in alternating rounds (so that the load of neighbours on a shared
 * machine hits all of them alike) and the median round is printed. `BENCH_ROUNDS` (default 5)
 * and `BENCH_ROUND_MS` (default 400) tune it.
 *
 * 3. Contacts inserted per second through the record service, encrypted vs plaintext (same rows,
 *    same SQLite database). Goal: >= 0.33.
 * 4. Authenticated `GET /api/v1/contacts/:id` over the whole HTTP stack, encrypted vs plaintext.
 *    Goal: >= 0.8. (3 and 4 come from bench/records-encryption.bench.ts, one setup for both.)
 *
 * Extending: each section is a `BenchSection` in `SECTIONS` at the bottom; its `run` sets up
 * what it needs, measures with `compare` (or its own loop) and returns its rows.
 */
import { createSecretKey, randomBytes, randomUUID, type KeyObject } from 'node:crypto';
import { createRequire } from 'node:module';
import {
  aesGcmDecrypt,
  aesGcmEncrypt,
  blindIndex,
  decryptField,
  decryptGroup,
  deriveBlindIndexKey,
  encryptField,
  encryptGroup,
  importAesKey,
  normalizeEmail,
  normalizeNationalId,
  normalizePhone,
  pooledRandomBytes,
  type FieldAd,
  type FieldKey,
} from '../src/core/crypto/index.ts';
import type { RecordsEncryptionResult } from './records-encryption.bench.ts';

const ROUNDS = Number(process.env.BENCH_ROUNDS ?? 5);
const ROUND_MS = Number(process.env.BENCH_ROUND_MS ?? 400);

// ---------------------------------------------------------------------------------------------
// Measuring

/** One measured variant: `run(n)` does n units of work (synchronously or not). */
export interface Variant {
  name: string;
  /** What one unit is, for the printed rate ("fields", "rows"...). */
  unit: string;
  run: (n: number) => void | Promise<void>;
}

export interface Rate {
  name: string;
  unit: string;
  /** Median of the rounds, units per second. */
  perSecond: number;
  /** Slowest and fastest round, units per second. */
  low: number;
  high: number;
  /** Every round's rate, in round order (round k of each variant ran back to back). */
  rounds: number[];
}

/** Units per second of one round of about `ROUND_MS`, in batches sized from a first probe. */
async function round(variant: Variant, batch: number): Promise<number> {
  let units = 0;
  const start = process.hrtime.bigint();
  let elapsed = 0;
  while (elapsed < ROUND_MS) {
    await variant.run(batch);
    units += batch;
    elapsed = Number(process.hrtime.bigint() - start) / 1e6;
  }
  return (units * 1000) / elapsed;
}

async function batchSize(variant: Variant): Promise<number> {
  let n = 16;
  for (;;) {
    const start = process.hrtime.bigint();
    await variant.run(n);
    const ms = Number(process.hrtime.bigint() - start) / 1e6;
    if (ms > 20 || n >= 1 << 20) return Math.max(1, Math.round((n * 20) / Math.max(ms, 1)));
    n *= 4;
  }
}

const median = (xs: number[]) => {
  const s = [...xs].sort((a, b) => a - b);
  return s[Math.floor(s.length / 2)] ?? 0;
};

/**
 * Measures several variants in alternating rounds (variant A, B, C, A, B, C...) after a warm-up,
 * so that they share the same machine conditions. Returns the median rate of each.
 */
export async function compare(variants: Variant[]): Promise<Rate[]> {
  const batches: number[] = [];
  for (const v of variants) batches.push(await batchSize(v)); // warm-up (JIT) and sizing
  const rates: number[][] = variants.map(() => []);
  for (let r = 0; r < ROUNDS; r++) {
    for (const [i, v] of variants.entries()) rates[i]!.push(await round(v, batches[i]!));
  }
  return variants.map((v, i) => ({
    name: v.name,
    unit: v.unit,
    perSecond: median(rates[i]!),
    low: Math.min(...rates[i]!),
    high: Math.max(...rates[i]!),
    rounds: rates[i]!,
  }));
}

// ---------------------------------------------------------------------------------------------
// Printing

export interface BenchSection {
  title: string;
  /** Measures and returns what to print: a table of rates and free lines (ratios, verdicts). */
  run: () => Promise<{ rates: Rate[]; notes: string[] }>;
}

const fmt = (x: number) => Math.round(x).toLocaleString('en-US');

function printSection(title: string, rates: Rate[], notes: string[]) {
  console.log(`\n## ${title}\n`);
  const width = Math.max(...rates.map((r) => r.name.length), 10);
  for (const r of rates) {
    console.log(
      `  ${r.name.padEnd(width)}  ${fmt(r.perSecond).padStart(11)} ${r.unit}/s` +
        `   (rounds ${fmt(r.low)} .. ${fmt(r.high)})`,
    );
  }
  if (notes.length > 0) console.log('');
  for (const n of notes) console.log(`  ${n}`);
}

const ratio = (a: Rate, b: Rate) => a.perSecond / b.perSecond;

/**
 * Median of the per-round ratios a/b. Round k of both ran back to back, so a burst of load on
 * the machine hits both sides of each ratio; steadier than the ratio of two medians.
 */
const pairedRatio = (a: Rate, b: Rate) => median(a.rounds.map((x, k) => x / (b.rounds[k] ?? NaN)));
const byName = (rates: Rate[], name: string) => {
  const r = rates.find((x) => x.name === name);
  if (!r) throw new Error(`no variant ${name}`);
  return r;
};

// ---------------------------------------------------------------------------------------------
// Data: the same generated contacts for every section

export interface BenchRow {
  id: string;
  email: string;
  phone: string;
  dateOfBirth: string;
  nationalId: string;
  address: string;
  notes: string;
}

/** The six protected contact fields of a row (what `personal`/`sensitive` classify). */
export const ROW_FIELDS = [
  'email',
  'phone',
  'dateOfBirth',
  'nationalId',
  'address',
  'notes',
] as const;

/** Fields with a blind index. */
export const INDEXED_FIELDS = ['email', 'phone', 'nationalId'] as const;

export function generateRows(count: number): BenchRow[] {
  return Array.from({ length: count }, (_, i) => ({
    id: randomUUID(),
    email: `Person.${i}@Example.COM `,
    phone: `+44 20 7946 ${String(i % 10000).padStart(4, '0')}`,
    dateOfBirth: `19${String(50 + (i % 50))}-0${1 + (i % 9)}-1${i % 10}`,
    nationalId: `QQ ${String(i % 100).padStart(2, '0')} 34 56 C`,
    address: `${i} Analytical Engine Street, London EC1A 1BB`,
    notes: `Met at the conference; prefers e-mail. Follow up about renewal #${i}.`,
  }));
}

const ROWS = generateRows(1000);
const TENANT = randomUUID();

// ---------------------------------------------------------------------------------------------
// Section 1: field encrypt / decrypt and the alternatives

const fieldAd = (field: string, recordId: string): FieldAd => ({
  tenantId: TENANT,
  object: 'contact',
  field,
  recordId,
});

async function fieldSection(): Promise<{ rates: Rate[]; notes: string[] }> {
  const bytes = randomBytes(32);
  const key = importAesKey(bytes);
  const ref = { keyId: `subject:${randomUUID()}`, keyVersion: 1 };
  const fieldKey: FieldKey = { ...ref, key };
  const values = ROWS.map((r) => r.email);
  const ads = ROWS.map((r) => fieldAd('email', r.id));
  const stored = values.map((v, i) => encryptField(key, ref, ads[i]!, v));
  // A record group: the six protected fields of a row under one AEAD call (`encryptGroup`,
  // what the records layer stores), against six `encryptField` calls.
  const groups = ROWS.map((r) => ROW_FIELDS.map((f) => [f, r[f]] as [string, string]));
  const groupAds = ROWS.map((r) => ({ tenantId: TENANT, object: 'contact', recordId: r.id }));
  const storedGroups = groups.map((g, i) =>
    encryptGroup(key, ref, groupAds[i]!, g).map((v, k) => [g[k]![0], v] as [string, string]),
  );
  let i = 0;
  let sink = 0;
  const next = () => (i = (i + 1) % ROWS.length);

  const variants: Variant[] = [
    {
      name: 'encryptField (KeyObject reused, pooled nonce)',
      unit: 'fields',
      run: (n) => {
        for (let k = 0; k < n; k++, next())
          sink += encryptField(key, ref, ads[i]!, values[i]!).length;
      },
    },
    {
      name: 'decryptField (KeyObject reused)',
      unit: 'fields',
      run: (n) => {
        for (let k = 0; k < n; k++, next())
          sink += decryptField(fieldKey, ads[i]!, stored[i]!).length;
      },
    },
    {
      name: 'encryptField, nonce from randomBytes(12)',
      unit: 'fields',
      run: (n) => {
        for (let k = 0; k < n; k++, next()) {
          sink += encryptField(key, ref, ads[i]!, values[i]!, { random: randomBytes }).length;
        }
      },
    },
    {
      name: 'encryptField, KeyObject built per call',
      unit: 'fields',
      run: (n) => {
        for (let k = 0; k < n; k++, next()) {
          sink += encryptField(createSecretKey(bytes), ref, ads[i]!, values[i]!).length;
        }
      },
    },
    {
      name: 'aesGcmEncrypt only, KeyObject key',
      unit: 'fields',
      run: (n) => {
        const aad = Buffer.from('custos/field/v1');
        for (let k = 0; k < n; k++, next()) {
          sink += aesGcmEncrypt(key, pooledRandomBytes(12), aad, values[i]!).tag.length;
        }
      },
    },
    {
      name: 'aesGcmEncrypt only, raw key bytes',
      unit: 'fields',
      run: (n) => {
        const aad = Buffer.from('custos/field/v1');
        for (let k = 0; k < n; k++, next()) {
          sink += aesGcmEncrypt(bytes, pooledRandomBytes(12), aad, values[i]!).tag.length;
        }
      },
    },
    {
      name: 'one AEAD per record group (encryptGroup, 6 fields): encrypt',
      unit: 'fields',
      run: (n) => {
        // n fields = n/6 groups; rounds up so that tiny batches still do work.
        for (let k = 0; k < n; k += 6, next()) {
          sink += encryptGroup(key, ref, groupAds[i]!, groups[i]!).length;
        }
      },
    },
    {
      name: 'one AEAD per record group (decryptGroup, 6 fields): decrypt',
      unit: 'fields',
      run: (n) => {
        for (let k = 0; k < n; k += 6, next()) {
          sink += decryptGroup(fieldKey, groupAds[i]!, storedGroups[i]!).length;
        }
      },
    },
    {
      name: 'aesGcmDecrypt only, KeyObject key',
      unit: 'fields',
      run: (n) => {
        const aad = Buffer.from('custos/field/v1');
        const iv = pooledRandomBytes(12);
        const { ciphertext, tag } = aesGcmEncrypt(key, iv, aad, values[0]!);
        for (let k = 0; k < n; k++) sink += aesGcmDecrypt(key, iv, aad, ciphertext, tag).length;
      },
    },
  ];
  const rates = await compare(variants);
  if (sink === 0) throw new Error('nothing measured');
  const enc = rates[0]!;
  const dec = rates[1]!;
  const groupEnc = rates[6]!;
  return {
    rates,
    notes: [
      `field encrypt: ${fmt(enc.perSecond)} fields/s (${(1e6 / enc.perSecond).toFixed(1)} us); ` +
        `decrypt: ${fmt(dec.perSecond)} fields/s (${(1e6 / dec.perSecond).toFixed(1)} us); 32-byte e-mail values`,
      `pooled nonce vs randomBytes(12): x${ratio(enc, rates[2]!).toFixed(2)}; ` +
        `KeyObject reused vs built per call: x${ratio(enc, rates[3]!).toFixed(2)}; ` +
        `KeyObject vs raw bytes (bare AES-GCM): x${ratio(rates[4]!, rates[5]!).toFixed(2)}`,
      `one AEAD per record group vs per field: x${ratio(groupEnc, enc).toFixed(2)} on encrypt, ` +
        `x${ratio(rates[7]!, dec).toFixed(2)} on decrypt (per field equivalent)`,
    ],
  };
}

// ---------------------------------------------------------------------------------------------
// Section 2: a row (6 encrypted fields + 3 blind indexes), Custos vs ciphersweet-js

/** Custos' work for one contact row, as the records layer does it: subject key, tenant indexes. */
function custosRowEncryptor(options: { normalise: boolean }) {
  const tenantKey = importAesKey(randomBytes(32));
  const indexKeys = Object.fromEntries(
    INDEXED_FIELDS.map((f) => [
      f,
      deriveBlindIndexKey(tenantKey, { tenantId: TENANT, object: 'contact', field: f }),
    ]),
  ) as Record<(typeof INDEXED_FIELDS)[number], KeyObject>;
  // One subject key per contact, as in the key hierarchy; here a small set reused round-robin
  // (the key cache keeps unwrapped keys as KeyObjects, which is what this models).
  const subjects = Array.from({ length: 64 }, () => ({
    key: importAesKey(randomBytes(32)),
    ref: { keyId: `subject:${randomUUID()}`, keyVersion: 1 },
  }));
  const normalised = (field: (typeof INDEXED_FIELDS)[number], value: string) => {
    if (!options.normalise) return value;
    const n =
      field === 'email'
        ? normalizeEmail(value)
        : field === 'phone'
          ? normalizePhone(value, 'GB')
          : normalizeNationalId(value);
    if (n === null) throw new Error(`bench row ${field} does not normalise`);
    return n;
  };
  return (row: BenchRow, n: number) => {
    const subject = subjects[n % subjects.length]!;
    const out: Record<string, string> = {};
    // One AEAD call for the row's protected fields, as the records layer stores them.
    const sealed = encryptGroup(
      subject.key,
      subject.ref,
      { tenantId: TENANT, object: 'contact', recordId: row.id },
      ROW_FIELDS.map((f) => [f, row[f]] as const),
    );
    ROW_FIELDS.forEach((field, k) => (out[field] = sealed[k]!));
    for (const field of INDEXED_FIELDS) {
      out[`${field}_bidx`] = blindIndex(indexKeys[field], normalised(field, row[field]));
    }
    return out;
  };
}

/* The slice of ciphersweet-js (CommonJS, untyped) this benchmark uses. */
interface CsEncryptedRow {
  addTextField(name: string, aadSource?: string): CsEncryptedRow;
  addBlindIndex(column: string, index: unknown): CsEncryptedRow;
  prepareRowForStorage(row: Record<string, string>): Promise<[object, object]>;
}
interface CipherSweetModule {
  CipherSweet: new (provider: unknown, backend: unknown) => unknown;
  StringProvider: new (hexKey: string) => unknown;
  EncryptedRow: new (engine: unknown, table: string) => CsEncryptedRow;
  BlindIndex: new (name: string, transforms: unknown[], bits: number, fastHash: boolean) => unknown;
  ModernCrypto: new () => unknown;
  FIPSCrypto: new () => unknown;
  BoringCrypto: new () => unknown;
}

const require = createRequire(import.meta.url);
const cs = require('ciphersweet-js') as CipherSweetModule;

/** The libsodium binding sodium-plus picked for ciphersweet-js (sodium-native or wasm). */
async function sodiumBackend(): Promise<string> {
  const fromCiphersweet = createRequire(require.resolve('ciphersweet-js'));
  const { SodiumPlus } = fromCiphersweet('sodium-plus') as {
    SodiumPlus: { auto(): Promise<{ getBackendName(): string }> };
  };
  return (await SodiumPlus.auto()).getBackendName();
}

type Backend = 'ModernCrypto' | 'FIPSCrypto' | 'BoringCrypto';

/** ciphersweet-js for the same row: 6 text fields (AAD = the row id), 3 fast-hash 32-bit indexes. */
function ciphersweetRow(backend: Backend): CsEncryptedRow {
  const engine = new cs.CipherSweet(
    new cs.StringProvider(randomBytes(32).toString('hex')),
    new cs[backend](),
  );
  const row = new cs.EncryptedRow(engine, 'contacts');
  for (const f of ROW_FIELDS) row.addTextField(f, 'id');
  for (const f of INDEXED_FIELDS)
    row.addBlindIndex(f, new cs.BlindIndex(`${f}_bidx`, [], 32, true));
  return row;
}

const plainRow = (r: BenchRow): Record<string, string> => ({ ...r });

async function rowSection(): Promise<{ rates: Rate[]; notes: string[] }> {
  const csVersion = (require('ciphersweet-js/package.json') as { version: string }).version;
  const custos = custosRowEncryptor({ normalise: false });
  const custosNormalising = custosRowEncryptor({ normalise: true });
  const modern = ciphersweetRow('ModernCrypto');
  const fips = ciphersweetRow('FIPSCrypto');
  const boring = ciphersweetRow('BoringCrypto');
  // Sanity: both produce what they claim, once, before timing.
  const sample = ROWS[0]!;
  const [csStored, csIndexes] = await modern.prepareRowForStorage(plainRow(sample));
  if (Object.keys(csIndexes).length !== 3 || !('email' in csStored)) {
    throw new Error('ciphersweet-js row is not 6 fields + 3 indexes');
  }
  if (Object.keys(custos(sample, 0)).length !== 9) throw new Error('custos row is not 6 + 3');

  let i = 0;
  let sink = 0;
  const csVariant = (name: string, row: CsEncryptedRow): Variant => ({
    name,
    unit: 'rows',
    run: async (n) => {
      for (let k = 0; k < n; k++, i = (i + 1) % ROWS.length) {
        const [stored] = await row.prepareRowForStorage(plainRow(ROWS[i]!));
        sink += Object.keys(stored).length;
      }
    },
  });
  const rates = await compare([
    {
      name: 'Custos encrypt + blind index',
      unit: 'rows',
      run: (n) => {
        for (let k = 0; k < n; k++, i = (i + 1) % ROWS.length) {
          sink += Object.keys(custos(ROWS[i]!, i)).length;
        }
      },
    },
    {
      name: 'Custos encrypt + blind index, normalising (E.164 etc.)',
      unit: 'rows',
      run: (n) => {
        for (let k = 0; k < n; k++, i = (i + 1) % ROWS.length) {
          sink += Object.keys(custosNormalising(ROWS[i]!, i)).length;
        }
      },
    },
    csVariant('ciphersweet-js ModernCrypto, fast hash', modern),
    csVariant('ciphersweet-js FIPSCrypto, fast hash', fips),
    csVariant('ciphersweet-js BoringCrypto, fast hash', boring),
  ]);
  if (sink === 0) throw new Error('nothing measured');
  const c = byName(rates, 'Custos encrypt + blind index');
  const cn = byName(rates, 'Custos encrypt + blind index, normalising (E.164 etc.)');
  const m = byName(rates, 'ciphersweet-js ModernCrypto, fast hash');
  const best = rates.slice(2).reduce((a, b) => (b.perSecond > a.perSecond ? b : a));
  const goal = Math.min(ratio(c, best), pairedRatio(c, best)) >= 2 ? 'met' : 'NOT met';
  return {
    rates,
    notes: [
      'Rows: 6 encrypted text fields, 3 blind indexes of 32 bits (email, phone, national id).',
      'Custos: AES-256-GCM, one call per row (record group) under a per-contact subject key, AD =',
      '  (tenant, object, record id, each field name and length); HMAC-SHA256 blind indexes under',
      '  per-tenant-and-field HKDF keys.',
      `ciphersweet-js ${csVersion}: EncryptedRow, every field with the row id as AAD, BlindIndex(fastHash);` +
        ` libsodium via sodium-plus ${await sodiumBackend()}.`,
      `Custos / ciphersweet-js ModernCrypto: x${ratio(c, m).toFixed(2)} ` +
        `(median of per-round ratios x${pairedRatio(c, m).toFixed(2)}; ` +
        `normalising: x${ratio(cn, m).toFixed(2)}, per-round x${pairedRatio(cn, m).toFixed(2)}); ` +
        `vs the fastest backend (${best.name.replace('ciphersweet-js ', '').replace(', fast hash', '')}): ` +
        `x${ratio(c, best).toFixed(2)}. Goal >= 2x: ${goal}.`,
    ],
  };
}

// ---------------------------------------------------------------------------------------------
// Sections 3 and 4: the records layer on a database and over HTTP, encrypted vs plaintext, both
// measured in one setup by bench/records-encryption.bench.ts (loaded only when these run).

let records: Promise<RecordsEncryptionResult> | undefined;
const recordsOnce = async (): Promise<RecordsEncryptionResult> => {
  const { measureRecordsEncryption } = await import('./records-encryption.bench.ts');
  return (records ??= measureRecordsEncryption());
};

function plainVsEncrypted(
  pair: [plain: Rate, encrypted: Rate],
  goal: number | undefined,
  note: string,
) {
  const [plain, encrypted] = pair;
  const r = ratio(encrypted, plain);
  const verdict =
    goal === undefined ? 'No goal.' : `Goal >= ${goal}: ${r >= goal ? 'met' : 'NOT met'}.`;
  return {
    rates: [plain, encrypted],
    notes: [
      note,
      `Encrypted / plaintext: ${r.toFixed(2)} (median of per-round ratios ${pairedRatio(encrypted, plain).toFixed(2)}). ${verdict}`,
    ],
  };
}

async function insertSection() {
  const result = await recordsOnce();
  return plainVsEncrypted(result.creates, 0.33, result.notes.creates);
}

async function getSection() {
  const result = await recordsOnce();
  return plainVsEncrypted(result.gets, 0.8, result.notes.gets);
}

async function getSensitiveSection() {
  const result = await recordsOnce();
  return plainVsEncrypted(result.getsSensitive, undefined, result.notes.getsSensitive);
}

// ---------------------------------------------------------------------------------------------
// Sections, in print order. Each `BenchSection` measures both sides in the same run.

export const SECTIONS: BenchSection[] = [
  { title: 'Field encryption through core/crypto (one 32-byte value per call)', run: fieldSection },
  { title: 'Encrypt + blind index per row: Custos vs ciphersweet-js', run: rowSection },
  {
    title: 'Contacts inserted per second: encrypted vs plaintext (same rows, same database)',
    run: insertSection,
  },
  { title: 'Authenticated GET of one contact: encrypted vs plaintext', run: getSection },
  {
    title:
      'Authenticated GET of a contact with sensitive fields (read event on both sides): encrypted vs plaintext',
    run: getSensitiveSection,
  },
];

export async function runSections(sections: BenchSection[]) {
  console.log(
    `# Custos crypto benchmark: Node ${process.version}, ${ROUNDS} rounds of ${ROUND_MS} ms per variant (median)`,
  );
  for (const s of sections) {
    const { rates, notes } = await s.run();
    printSection(s.title, rates, notes);
  }
}

if (
  import.meta.url === `file://${process.argv[1]}` ||
  process.argv[1]?.endsWith('crypto.bench.ts')
) {
  await runSections(SECTIONS);
}
