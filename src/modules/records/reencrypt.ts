import { setTimeout as sleep } from 'node:timers/promises';
import { sql, type Kysely } from 'kysely';
import { isCryptoError, parseEnvelope } from '../../core/crypto/index.ts';
import type { FieldKey } from '../../core/crypto/index.ts';
import type { Database } from '../../db/schema.ts';
import { AppError } from '../../errors.ts';
import type { KeyService } from '../keys/service.ts';
import { tenantKeyId } from '../keys/tenant-keys.ts';
import { isProtected } from '../../core/privacy/index.ts';
import { createFieldCrypto } from './field-crypto.ts';
import { isUniqueViolation } from './repository.ts';
import type { SealedSpec } from './spec.ts';

/**
 * Re-encryption after a tenant key rotation, and encryption of values left in clear.
 *
 * Rotating the tenant data key re-wraps subject keys (see keys/rotation.ts); the values sealed
 * directly under the tenant key (users' e-mail and name, activities without a contact) must be
 * opened and sealed again under the new version before the old one can be retired. The same pass
 * encrypts protected values still stored in clear (contacts written before migration 0007, users
 * before 0019) and computes their blind indexes. What is left to do is read from the data (values
 * whose envelope names an older version, or that are not envelopes at all), so a killed job
 * simply runs again.
 *
 * A row is written back only if it is still the row that was read: same `version` and the same
 * stored values (compare-and-set). A user's write in between wins; the row is taken up again in a
 * later pass. The version and `updated_at` are not changed (the content is the same), so an
 * ETag a user holds stays valid.
 *
 * Relies on field-crypto's `fields`, `open`, `writeKey` and `seal`, and on `parseEnvelope` to
 * read which key a stored value names.
 */

type Row = Record<string, unknown>;
type AnyDb = Kysely<Record<string, Row>>;

/** What one stored value is: clear text, an envelope naming a key, or neither. */
export type StoredValue =
  { kind: 'clear' } | { kind: 'damaged' } | { kind: 'sealed'; keyId: string; keyVersion: number };

/** A value that is not an envelope and does not even look like one was written in clear. */
const ENVELOPE_LIKE = /^cv[0-9]+\./;

export function classifyStored(stored: string): StoredValue {
  try {
    const ref = parseEnvelope(stored);
    return { kind: 'sealed', keyId: ref.keyId, keyVersion: ref.keyVersion };
  } catch (err) {
    if (!isCryptoError(err)) throw err;
    // Damaged envelopes are never "encrypted as clear text": that would bless tampering.
    return ENVELOPE_LIKE.test(stored) ? { kind: 'damaged' } : { kind: 'clear' };
  }
}

/** How a tenant's protected values are stored. */
export interface ValueCensus {
  /** Values sealed directly under each tenant data key version. */
  byVersion: Map<number, number>;
  /** Values under subject keys (their protection follows the subject key's wrapping). */
  subjectValues: number;
  /** Values still stored in clear (written before encryption). */
  clear: number;
  /** Values that are neither clear nor a readable envelope (never retired on doubt). */
  damaged: number;
}

const PAGE = 1000;

/** The data map's protected fields of a record type, with their columns. */
function protectedColumns(spec: SealedSpec): [field: string, column: string][] {
  return Object.entries(spec.fields).filter(([field]) => isProtected(spec.object, field as never));
}

/** Pages through a tenant's rows of `spec` by id, `size` rows at a time. */
async function* pages(
  db: Kysely<Database>,
  spec: SealedSpec,
  tenantId: string,
  columns: readonly string[],
  size: number,
  from?: string,
): AsyncGenerator<Row[]> {
  let after: string | undefined = from;
  for (;;) {
    let query = (db as unknown as AnyDb)
      .selectFrom(spec.table)
      .select(['id', ...columns].map((c) => sql.ref(c).as(c)))
      .where(sql.ref('tenant_id'), '=', tenantId);
    if (after !== undefined) query = query.where(sql.ref('id'), '>', after);
    const rows = await query.orderBy(sql.ref('id')).limit(size).execute();
    if (rows.length === 0) return;
    yield rows;
    if (rows.length < size) return;
    after = String(rows.at(-1)?.id);
  }
}

/**
 * Counts how a tenant's protected values are stored: per tenant key version, under subject keys,
 * in clear, damaged. Reads every protected column of the tenant's records (an operator's check).
 */
export async function censusOfValues(
  db: Kysely<Database>,
  specs: readonly SealedSpec[],
  tenantId: string,
): Promise<ValueCensus> {
  const census: ValueCensus = { byVersion: new Map(), subjectValues: 0, clear: 0, damaged: 0 };
  const tenantKey = tenantKeyId(tenantId);
  for (const spec of specs) {
    const columns = protectedColumns(spec).map(([, c]) => c);
    if (columns.length === 0) continue;
    for await (const rows of pages(db, spec, tenantId, columns, PAGE)) {
      for (const row of rows) {
        for (const column of columns) {
          const stored = row[column];
          if (typeof stored !== 'string') continue;
          const value = classifyStored(stored);
          if (value.kind === 'clear') census.clear += 1;
          else if (value.kind === 'damaged') census.damaged += 1;
          else if (value.keyId === tenantKey) {
            census.byVersion.set(
              value.keyVersion,
              (census.byVersion.get(value.keyVersion) ?? 0) + 1,
            );
          } else census.subjectValues += 1;
        }
      }
    }
  }
  return census;
}

/** Where a run stopped: the last record done in a table (record types go in `specs` order). */
export interface ReencryptCursor {
  table: string;
  id: string;
}

export interface ReencryptOptions {
  /** Rows read per batch. Default 200. */
  batchSize?: number;
  /** Pause after a batch that wrote something, so the job yields to live traffic. Default 50 ms. */
  pauseMs?: number;
  /** Stops after the current row (a shutdown, a test's "kill"); running again resumes. */
  signal?: AbortSignal;
  onProgress?: (progress: ReencryptProgress) => void;
  /**
   * Starts the first pass after this record instead of at the beginning (a run resumed from its
   * saved cursor). Rows before it are not read again unless a later pass is needed.
   */
  resumeAfter?: ReencryptCursor | undefined;
  /** The census to start from (a resumed run's saved one), instead of counting all values. */
  census?: ValueCensus | undefined;
  /**
   * Awaited after every batch with the cursor of its last row (the server job saves it and
   * renews its lease there); a throw stops the run and is passed on.
   */
  onBatch?: (progress: ReencryptProgress, cursor: ReencryptCursor) => Promise<void>;
}

export interface ReencryptProgress {
  tenantId: string;
  /** The tenant data key version values are moved to. */
  targetVersion: number;
  /** Values sealed again under the target version (or their subject's key) by this run. */
  reencrypted: number;
  /** Values found in clear and encrypted by this run. */
  encryptedClear: number;
  /** Rows left for a later pass because a user changed them meanwhile. */
  raced: number;
  /** Rows that could not be done wholly (a damaged value, a destroyed key); left as they are. */
  failed: number;
  /** Clear e-mail addresses already used by another contact: encrypted, not unique-checked. */
  duplicates: number;
  /** Values still under an older version or in clear (damaged ones not included). */
  remaining: number;
  /**
   * How the tenant's values are stored: counted at the start (or given), kept current with the
   * job's own writes, counted again at the end. Users' writes meanwhile show at the next count.
   */
  census: ValueCensus;
  done: boolean;
}

export function copyCensus(census: ValueCensus): ValueCensus {
  return { ...census, byVersion: new Map(census.byVersion) };
}

export interface ReencryptDeps {
  db: Kysely<Database>;
  keys: KeyService;
  specs: readonly SealedSpec[];
  /** Blind-index truncation in bits (as the record services use). */
  indexBits?: number | undefined;
}

/**
 * @example
 * ```ts
 * const job = createReencryptionJob({ db, keys, specs: [contactSpec, activitySpec] });
 * const result = await job.run(tenantId, { batchSize: 200, pauseMs: 50, signal });
 * if (result.done) await keys.retireVersion(tenantId, result.targetVersion - 1);
 * ```
 */
export function createReencryptionJob(deps: ReencryptDeps) {
  const { db, keys } = deps;
  const targets = deps.specs
    .map((spec) => ({
      spec,
      crypto: createFieldCrypto(spec, { keys, indexBits: deps.indexBits }),
      protectedColumns: protectedColumns(spec),
      // Every field's column: `subjectOf` decides the key from the clear ones.
      columns: ['version', ...Object.values(spec.fields)],
    }))
    .filter((t) => t.protectedColumns.length > 0);

  const pending = (census: ValueCensus, target: number): number => {
    let n = census.clear;
    for (const [version, count] of census.byVersion) if (version !== target) n += count;
    return n;
  };

  /** Moves the values of `columns` just re-sealed under `key` in the census. */
  function count(
    census: ValueCensus,
    tenantId: string,
    row: Row,
    columns: readonly (readonly [string, string])[],
    key: FieldKey,
  ): void {
    const add = (version: number, n: number) =>
      census.byVersion.set(version, Math.max(0, (census.byVersion.get(version) ?? 0) + n));
    for (const [, column] of columns) {
      const stored = row[column];
      if (typeof stored !== 'string') continue;
      const before = classifyStored(stored);
      if (before.kind === 'clear') census.clear = Math.max(0, census.clear - 1);
      else if (before.kind !== 'sealed') continue;
      else if (before.keyId === tenantKeyId(tenantId)) add(before.keyVersion, -1);
      else census.subjectValues = Math.max(0, census.subjectValues - 1);
      if (key.keyId === tenantKeyId(tenantId)) add(key.keyVersion, 1);
      else census.subjectValues += 1;
    }
  }

  /** Seals one row again; 'raced' when the stored row changed since it was read. */
  async function redo(
    t: (typeof targets)[number],
    tenantId: string,
    row: Row,
    progress: ReencryptProgress,
  ): Promise<'unchanged' | 'done' | 'raced' | 'failed'> {
    const { spec, crypto } = t;
    const id = String(row.id);
    const clearColumns = new Set<string>();
    // Damaged values stay as they are (and the row counts as failed); the rest is still done.
    const damagedColumns = new Set<string>();
    let moved = 0;
    for (const [, column] of t.protectedColumns) {
      const stored = row[column];
      if (typeof stored !== 'string') continue;
      const value = classifyStored(stored);
      if (value.kind === 'clear') clearColumns.add(column);
      else if (value.kind === 'damaged') damagedColumns.add(column);
      else if (value.keyId === tenantKeyId(tenantId) && value.keyVersion !== progress.targetVersion)
        moved += 1;
    }
    const failed = damagedColumns.size > 0 ? 'failed' : 'unchanged';
    if (clearColumns.size === 0 && moved === 0) return failed;
    // Open the sealed values (old versions decrypt until retired); clear ones are taken as is.
    const sealedOnly: Row = { ...row };
    for (const column of [...clearColumns, ...damagedColumns]) sealedOnly[column] = null;
    let opened: Row;
    try {
      [opened = sealedOnly] = await crypto.open(tenantId, [sealedOnly]);
    } catch (err) {
      if (err instanceof AppError) return 'failed';
      throw err;
    }
    const record: Row = {};
    const values: Row = {};
    for (const [field, column] of Object.entries(spec.fields)) {
      record[field] = clearColumns.has(column) ? row[column] : (opened[column] ?? null);
    }
    const redone = t.protectedColumns.filter(([, column]) => !damagedColumns.has(column));
    for (const [field] of redone) values[field] = record[field] ?? null;
    let sealed: { values: Row; key: FieldKey };
    try {
      const key = await crypto.writeKey(tenantId, id, record);
      sealed = { ...(await crypto.seal(tenantId, id, values, record, key)), key };
    } catch (err) {
      // A destroyed subject key (an erased person whose row remains) is left alone.
      if (err instanceof AppError) return 'failed';
      throw err;
    }
    const key = sealed.key;
    const changes: Row = {};
    for (const [field, column] of redone) changes[column] = sealed.values[field] ?? null;
    // The index columns in the write's transaction: the tenant's phone region (which a regional
    // index is computed in) cannot change before it commits.
    const write = (set: Row) =>
      db.transaction().execute(async (trx) => {
        const indexing = await crypto.indexKeys(tenantId, trx, values);
        return writeIf(trx, { ...crypto.indexColumnsWith(indexing, values), ...set });
      });
    const writeIf = async (trx: Kysely<Database>, set: Row) => {
      let query = (trx as unknown as AnyDb)
        .updateTable(spec.table)
        .set(set)
        .where(sql.ref('tenant_id'), '=', tenantId)
        .where(sql.ref('id'), '=', id)
        .where(sql.ref('version'), '=', row.version);
      // Compare-and-set on the values read: a user's write meanwhile is never overwritten.
      for (const [, column] of t.protectedColumns) {
        const stored = row[column];
        query =
          typeof stored === 'string'
            ? query.where(sql.ref(column), '=', stored)
            : query.where(sql.ref(column), 'is', null);
      }
      const result = await query.executeTakeFirst();
      return Number(result.numUpdatedRows) === 1;
    };
    let written: boolean;
    try {
      written = await write(changes);
    } catch (err) {
      const unique = Object.values(spec.blindIndexes ?? {})
        .map((ix) => ix.uniqueColumn)
        .filter((c): c is string => c !== undefined);
      if (!isUniqueViolation(err) || unique.length === 0) throw err;
      // Two contacts stored in clear with the same e-mail (allowed before encryption): the
      // value is encrypted and searchable; only the uniqueness hash is left out.
      for (const c of unique) changes[c] = null;
      written = await write(changes);
      if (written) progress.duplicates += 1;
    }
    if (!written) return 'raced';
    count(progress.census, tenantId, row, redone, key);
    progress.reencrypted += moved;
    progress.encryptedClear += clearColumns.size;
    progress.remaining = Math.max(0, progress.remaining - moved - clearColumns.size);
    return damagedColumns.size > 0 ? 'failed' : 'done';
  }

  /**
   * Moves every value of the tenant sealed under an older tenant key version to the active
   * one, and encrypts values left in clear, in throttled batches; `done` once none is left.
   */
  async function run(tenantId: string, options: ReencryptOptions = {}): Promise<ReencryptProgress> {
    const batchSize = options.batchSize ?? 200;
    const pauseMs = options.pauseMs ?? 50;
    if (!Number.isInteger(batchSize) || batchSize < 1) throw new RangeError('batchSize >= 1');
    const stopped = (): boolean => options.signal?.aborted === true;
    const { keyVersion: target } = await keys.tenantDataKey(tenantId);
    const census = options.census ?? (await censusOfValues(db, deps.specs, tenantId));
    const progress: ReencryptProgress = {
      tenantId,
      targetVersion: target,
      reencrypted: 0,
      encryptedClear: 0,
      raced: 0,
      failed: 0,
      duplicates: 0,
      remaining: pending(census, target),
      census: copyCensus(census),
      done: false,
    };
    const failed = new Set<string>();
    // Rows a user changed meanwhile are taken up by another pass (a few at most).
    // A resumed run starts after its cursor: at its table, after its record.
    let resume = options.resumeAfter;
    if (resume !== undefined && !targets.some((t) => t.spec.table === resume?.table)) {
      resume = undefined;
    }
    for (let pass = 0; pass < 5 && (progress.remaining > 0 || resume) && !stopped(); pass += 1) {
      let raced = 0;
      for (const t of targets) {
        if (resume !== undefined && t.spec.table !== resume.table) continue;
        const from = resume?.id;
        resume = undefined;
        for await (const rows of pages(db, t.spec, tenantId, t.columns, batchSize, from)) {
          let wrote = false;
          let last: string | undefined;
          for (const row of rows) {
            if (stopped()) break;
            const outcome = await redo(t, tenantId, row, progress);
            if (outcome === 'raced') raced += 1;
            else if (outcome === 'failed') failed.add(`${t.spec.table}:${String(row.id)}`);
            if (outcome === 'done') wrote = true;
            last = String(row.id);
          }
          progress.failed = failed.size;
          if (last !== undefined) {
            await options.onBatch?.({ ...progress }, { table: t.spec.table, id: last });
          }
          if (stopped()) break;
          if (wrote) {
            options.onProgress?.({ ...progress });
            if (pauseMs > 0) {
              await sleep(pauseMs, undefined, { signal: options.signal }).catch(() => undefined);
            }
          }
        }
        if (stopped()) break;
      }
      progress.raced += raced;
      progress.failed = failed.size;
      if (raced === 0) break;
    }
    // A stopped run keeps its running count; a finished one counts again (users' writes too).
    if (!stopped()) progress.census = await censusOfValues(db, deps.specs, tenantId);
    progress.remaining = pending(progress.census, target);
    progress.done = progress.remaining === 0 && !stopped();
    return progress;
  }

  return { run };
}

export type ReencryptionJob = ReturnType<typeof createReencryptionJob>;
