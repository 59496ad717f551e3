import type { Kysely, Transaction } from 'kysely';
import type { Clock } from '../../clock.ts';
import type { Database } from '../../db/schema.ts';
import { scopeOf, type Actor, type Scope } from '../../core/policy/index.ts';
import { newId } from '../../ids.ts';
import { isUniqueViolation, ownerInScope, ownerScopeOf } from '../records/repository.ts';
import type { CsvFault, CsvRecord } from './csv-read.ts';
import { mapRow, type ColumnMapping, type MappedRow } from './csv-mapping.ts';
import {
  findContactsByEmailHash,
  insertContacts,
  mergeContact,
  readContactColumns,
  resolveCompanies,
  type Db,
  type NewContact,
} from './import-store.ts';
import { toContactColumns, validateRow, type RowError } from './import-row.ts';
import { SEAL_INDEX_COLUMNS, SUBJECT_KEY_BYTES, type SealedBatch } from './import-seal.ts';
import type { ImportSealer, SealThread } from './import-sealer.ts';
import { contactSpec } from './spec.ts';
import { normalizeEmail } from '../../core/crypto/normalize.ts';
import type { FieldCrypto, TenantIndexing } from '../records/field-crypto.ts';
import type { IndexContext } from '../records/spec.ts';
import type { KeyService } from '../keys/service.ts';
import type { MadeSubjectKey, SubjectKeyWrapping } from '../keys/subject-keys.ts';
import type { AuditRecorder } from '../audit/service.ts';

/**
 * One import's run (see `importContacts` in import.ts): reads records, validates and de-duplicates
 * them, hands full batches to the sealer and writes the batch sealed before, in order.
 */

export type ImportMode = 'all-or-nothing' | 'best-effort';
export type OnDuplicate = 'skip' | 'merge';
export type CompanyPolicy = 'match' | 'create';

export interface ImportReport {
  mode: ImportMode;
  /** False when all-or-nothing refused the file: nothing was written. */
  committed: boolean;
  /** Data rows read (blank lines not counted). */
  total: number;
  created: number;
  updated: number;
  skipped: number;
  failed: number;
  companiesCreated: number;
  /** The first MAX_REPORTED_ERRORS problems; `failed` counts them all. */
  errors: RowError[];
  errorsTruncated: boolean;
  ignoredColumns: string[];
}

export const MAX_REPORTED_ERRORS = 1000;

/** All-or-nothing: new subject keys stored this many at a time (see `keepKeys`). */
const KEY_STORE_ROWS = 10_000;

interface Pending {
  row: number;
  mapped: MappedRow;
  /** Known when the e-mail belongs to a contact this import already wrote (or may merge into). */
  existingId?: string;
  /** Later rows of the file with the same e-mail folded into this one (each counted updated). */
  folded?: number;
  /** The normalised e-mail (the key of `seen`), when the row has one. */
  key?: string;
  /**
   * Set when its batch goes to the sealer (then no later row folds into it): the id the new
   * contact gets, and its place in the batch's `SealedBatch`.
   */
  id?: string;
  slot?: number;
  /**
   * Same e-mail as a row of a batch handed to the sealer before this row was read: what that row
   * became (created, merged, skipped, failed) is known once its batch is written, so this row is
   * resolved then (merged, skipped, or created), after the other rows of its batch.
   */
  deferred?: true;
}

/** A batch's sealed rows, the key wrapping they were made under, and which keys are stored. */
interface Sealed {
  batch: SealedBatch;
  wrapping: SubjectKeyWrapping;
  /** The phone region its regional index columns were computed in (`SealBatchKeys.context`). */
  context: IndexContext;
  /** Subject ids whose keys are in the key store (a retried write stores each once). */
  stored: Set<string>;
}

/** A batch handed to the sealer and not yet written. */
interface InFlight {
  rows: Pending[];
  sealed: Promise<Sealed | undefined>;
}

/**
 * What an e-mail already seen stands for: a pending row, a contact this import wrote or may
 * merge into, or one out of the caller's update scope (`locked`: never merged, only skipped).
 */
type Seen = Pending | { id: string } | { locked: true };

/**
 * Whether a record owner lies in `scope` for `actor` (`null` scope: none does), with the rule of
 * the record service (`ownerInScope`), remembered per owner for the import's length.
 */
function ownerCheck(trx: () => Db, actor: Actor, scope: Scope | null) {
  if (scope === null) return async () => false;
  const filter = ownerScopeOf(actor, scope);
  if (filter === undefined) return async () => true;
  const known = new Map<string | null, boolean>();
  return async (ownerId: string | null) => {
    let inScope = known.get(ownerId);
    if (inScope === undefined) {
      inScope = await ownerInScope(trx(), actor.tenantId, filter, ownerId);
      known.set(ownerId, inScope);
    }
    return inScope;
  };
}
export interface ImportDeps {
  db: Kysely<Database>;
  clock: Clock;
  /** Stores the subject keys the import makes (see `ImportRun.keepKeys`). */
  keys: KeyService;
  /** The contacts' field crypto (the record service's, so the same index settings). */
  crypto: FieldCrypto;
  /** Records `contacts.imported` (see `importContacts`); absent only in benchmarks. */
  audit?: AuditRecorder | undefined;
  /** Where batches are sealed (default `auto`: a thread for files of more than one batch). */
  sealThread?: SealThread | undefined;
  /** Rows per batch (default IMPORT_BATCH_ROWS); tests use small batches. */
  batchRows?: number | undefined;
}
export type InTransaction = (work: (trx: Transaction<Database>) => Promise<void>) => Promise<void>;

/** The protected values of an existing contact, opened, under their API names. */
async function readProtected(
  trx: Db,
  tenantId: string,
  id: string,
  crypto: FieldCrypto,
): Promise<Record<string, unknown>> {
  const columns = crypto.fields.map((f) => contactSpec.fields[f] as string);
  const row = await readContactColumns(trx, tenantId, id, columns);
  if (row === undefined) return {};
  const [opened = row] = await crypto.open(tenantId, [row]);
  const out: Record<string, unknown> = {};
  for (const f of crypto.fields) out[f] = opened[contactSpec.fields[f] as string] ?? null;
  return out;
}

interface RunDeps extends ImportDeps {
  sealer: ImportSealer;
  batchRows: number;
}

const EMAIL_EQ = SEAL_INDEX_COLUMNS.indexOf(contactSpec.blindIndexes?.email?.uniqueColumn ?? '');
/** Fields whose index depends on the tenant's phone region (the phone). */
const REGIONAL = Object.entries(contactSpec.blindIndexes ?? {})
  .filter(([, ix]) => ix.regional === true)
  .map(([field]) => field);

/** Does the row hold a field whose index depends on the phone region? */
function hasRegional(p: Pending): boolean {
  return REGIONAL.some((f) => f in p.mapped.values);
}

export class ImportRun {
  readonly report: ImportReport;
  private batch: Pending[] = [];
  /** The batch being sealed while the one before is written and the next one read. */
  private inFlight: InFlight | undefined;
  /** Normalised e-mail -> the pending row or the contact written for it. */
  private seen = new Map<string, Seen>();
  private readonly now: string;
  private readonly ownerId: string | null;
  /** Protected field -> its column in a `SealedBatch`; index column -> its place. */
  private readonly sealedAt = new Map<string, number>();
  private readonly indexAt = new Map<string, number>();
  /** The transaction of the batch being written (the scope checks read through it). */
  private trx: Db | undefined;
  /** The index keys and region read in that transaction (see `indexingIn`). */
  private indexing: TenantIndexing | undefined;
  /**
   * What batches are sealed with: the tenant's index keys and phone region as last read (by
   * `start`, before any transaction, then by every write transaction that reads the region).
   * The thread never waits for a transaction; a write whose transaction reads another region
   * computes the regional columns again (`writeRows`).
   */
  private sealIndexing: { keys: TenantIndexing['keys']; context: IndexContext } | undefined;
  /** New subject keys not stored yet, by the wrapping they were made under (see `keepKeys`). */
  private unstored: { wrapping: SubjectKeyWrapping; keys: MadeSubjectKey[] }[] = [];
  private unstoredCount = 0;
  /**
   * Merge only into contacts the caller may update (break-glass widens reading, never this),
   * link only companies the caller may read: an out-of-scope company is an unknown name, as
   * the record service answers a reference out of read scope like a missing one.
   */
  private readonly mayUpdateContact: (ownerId: string | null) => Promise<boolean>;
  private readonly mayReadCompany: (ownerId: string | null) => Promise<boolean>;

  constructor(
    private readonly deps: RunDeps,
    private readonly actor: Actor,
    private readonly columns: ColumnMapping,
    mode: ImportMode,
    private readonly onDuplicate: OnDuplicate,
    private readonly companies: CompanyPolicy = 'create',
  ) {
    this.now = deps.clock.now().toISOString();
    this.ownerId = actor.kind === 'system' ? null : actor.userId;
    deps.crypto.fields.forEach((f, i) => this.sealedAt.set(f, i));
    SEAL_INDEX_COLUMNS.forEach((c, i) => this.indexAt.set(c, i));
    const trx = () => {
      if (this.trx === undefined) throw new TypeError('scope check outside a batch');
      return this.trx;
    };
    this.mayUpdateContact = ownerCheck(trx, actor, scopeOf(actor, 'update', 'contact'));
    this.mayReadCompany = ownerCheck(trx, actor, scopeOf(actor, 'read', 'company'));
    this.report = {
      mode,
      committed: true,
      total: 0,
      created: 0,
      updated: 0,
      skipped: 0,
      failed: 0,
      companiesCreated: 0,
      errors: [],
      errorsTruncated: false,
      ignoredColumns: columns.ignoredColumns,
    };
  }

  /**
   * Reads what the first batches are sealed with (the index keys, the phone region), before any
   * transaction of the import: the sealing of a batch must not wait for one (all-or-nothing
   * holds one for the whole import).
   */
  async start() {
    const { crypto, db } = this.deps;
    const indexing = await crypto.indexKeys(this.actor.tenantId, db);
    this.sealIndexing = { keys: indexing.keys, context: indexing.context ?? { phoneRegion: null } };
  }

  /** `last` runs in the transaction of the final batch (best-effort: even an empty one). */
  async consume(
    first: (CsvRecord | CsvFault)[],
    rest: AsyncIterator<(CsvRecord | CsvFault)[]>,
    inTrx: InTransaction,
    last?: (trx: Transaction<Database>) => Promise<void>,
  ) {
    const r = this.report;
    reading: for (let items = first; ;) {
      for (const item of items) {
        if (!('values' in item)) {
          r.total++;
          this.fail([{ row: item.row, field: null, reason: item.reason }]);
          break reading;
        }
        if (this.take(item)) await this.handOver(inTrx);
      }
      const next = await rest.next();
      if (next.done) break;
      items = next.value;
    }
    if (r.mode === 'best-effort' || r.failed === 0) {
      await this.handOver(inTrx);
      const final = this.inFlight ?? { rows: [], sealed: Promise.resolve(undefined) };
      this.inFlight = undefined;
      if (final.rows.length > 0 || last !== undefined) await this.flush(inTrx, final, last);
    }
    // All-or-nothing refused the file: a batch still being sealed is dropped unwritten.
    this.inFlight = undefined;
  }

  /** One record: validated, then queued. True when the batch is full (time to hand it over). */
  private take(item: CsvRecord): boolean {
    const r = this.report;
    if (item.values.every((v) => v.trim() === '')) return false;
    r.total++;
    if (item.values.length > this.columns.headers.length) {
      const extra = item.values.slice(this.columns.headers.length);
      if (extra.some((v) => v.trim() !== '')) {
        this.fail([
          {
            row: item.row,
            field: null,
            reason: `has ${item.values.length} values but the header names ${this.columns.headers.length} columns`,
          },
        ]);
        return false;
      }
    }
    const mapped = mapRow(this.columns, item.values);
    const errors = validateRow(item.row, mapped);
    if (errors.length > 0) {
      this.fail(errors);
      return false;
    }
    // After a failure all-or-nothing only reads on, to report every bad row.
    if (r.mode === 'all-or-nothing' && r.failed > 0) return false;
    this.enqueue({ row: item.row, mapped });
    return this.batch.length >= this.deps.batchRows;
  }

  rolledBack() {
    const r = this.report;
    r.committed = false;
    r.created = r.updated = r.companiesCreated = 0;
  }

  private fail(errors: RowError[]) {
    const r = this.report;
    r.failed++;
    for (const e of errors) {
      if (r.errors.length < MAX_REPORTED_ERRORS) r.errors.push(e);
      else r.errorsTruncated = true;
    }
  }

  private enqueue(p: Pending) {
    const email = p.mapped.values.email;
    if (typeof email !== 'string') {
      this.batch.push(p);
      return;
    }
    // Validated as an e-mail address, so it normalises; the raw text is a safe fallback key.
    const key = normalizeEmail(email) ?? email;
    p.key = key;
    const earlier = this.seen.get(key);
    if (earlier === undefined) {
      this.seen.set(key, p);
      this.batch.push(p);
    } else if (this.onDuplicate === 'skip' || 'locked' in earlier) {
      this.report.skipped++;
    } else if ('mapped' in earlier && earlier.id === undefined) {
      // The earlier row is not sealed yet: this row's values complete or overwrite it.
      Object.assign(earlier.mapped.values, p.mapped.values);
      earlier.mapped.company = p.mapped.company ?? earlier.mapped.company;
      earlier.folded = (earlier.folded ?? 0) + 1;
      this.report.updated++;
    } else if ('mapped' in earlier) {
      // Sealed already (its batch is being written or sealed): merged into it once it exists.
      this.batch.push({ ...p, deferred: true });
    } else {
      this.batch.push({ ...p, existingId: earlier.id });
    }
  }

  /**
   * Hands the rows read so far to the sealer, then writes the batch handed over before them:
   * the crypto of one batch (on the import's thread) overlaps with writing the previous batch
   * and reading the next.
   */
  private async handOver(inTrx: InTransaction) {
    const rows = this.batch;
    this.batch = [];
    const previous = this.inFlight;
    this.inFlight = rows.length > 0 ? { rows, sealed: this.seal(rows) } : undefined;
    if (previous !== undefined) await this.flush(inTrx, previous);
  }

  /**
   * Starts sealing the rows that would create a contact (not the known duplicates): each gets
   * its id now. The promise is observed at once: a batch dropped unwritten (a refused file, an
   * error) must not leave an unhandled rejection.
   */
  private seal(rows: Pending[]): Promise<Sealed | undefined> {
    const fields = this.deps.crypto.fields;
    const ids: string[] = [];
    const values: (string | null)[] = [];
    for (const p of rows) {
      if (p.existingId !== undefined || p.deferred) continue;
      p.id = newId();
      p.slot = ids.length;
      ids.push(p.id);
      for (const f of fields) values.push(p.mapped.values[f] ?? null);
    }
    if (ids.length === 0) return Promise.resolve(undefined);
    const { keys, crypto, sealer } = this.deps;
    const tenantId = this.actor.tenantId;
    const indexing = this.sealIndexing;
    if (indexing === undefined) throw new TypeError('ImportRun.start was not called');
    const { context } = indexing;
    const sealed = (async () => {
      const wrapping = await keys.subjectKeyWrapping(tenantId);
      const batch = await sealer.seal(
        {
          tenantId,
          wrapping: { key: wrapping.key, wrappingId: wrapping.wrappingId },
          index: indexing.keys,
          context,
          bits: crypto.indexBits,
        },
        { ids, fields, values },
      );
      return { batch, wrapping, context, stored: new Set<string>() };
    })();
    sealed.catch(() => undefined);
    return sealed;
  }

  private async flush(
    inTrx: InTransaction,
    flight: InFlight,
    last?: (trx: Transaction<Database>) => Promise<void>,
  ) {
    const { rows } = flight;
    // Sealed before the transaction opens: it never waits for the thread.
    const sealed = await flight.sealed;
    const before = { ...this.report, errors: this.report.errors.length };
    const seenBefore = rows.flatMap((p) => (p.key ? [[p.key, this.seen.get(p.key)] as const] : []));
    const work = async (trx: Transaction<Database>) => {
      if (rows.length > 0) await this.write(trx, rows, sealed);
      await last?.(trx);
    };
    try {
      await inTrx(work);
    } catch (error) {
      if (!isUniqueViolation(error) || this.report.mode !== 'best-effort') throw error;
      // Another writer created one of these e-mails meanwhile: read again and retry once.
      Object.assign(this.report, { ...before, errors: this.report.errors.slice(0, before.errors) });
      for (const [key, value] of seenBefore) {
        if (value === undefined) this.seen.delete(key);
        else this.seen.set(key, value);
      }
      await inTrx(work);
    } finally {
      sealed?.batch.keys.fill(0);
    }
  }

  /**
   * A new contact's row: its sealed values and index columns (`regional`: its regional ones
   * computed again in the write's region), the clear ones as they are.
   */
  private newRow(
    p: Pending,
    sealed: Sealed,
    companyId: string | undefined,
    regional: Record<string, unknown> | undefined,
  ): NewContact {
    const values = p.mapped.values;
    const { batch } = sealed;
    const width = this.deps.crypto.fields.length;
    const base = (p.slot as number) * width;
    const indexBase = (p.slot as number) * SEAL_INDEX_COLUMNS.length;
    /** A protected field's sealed value, never its clear one; other fields as they are. */
    const v = (field: string): string | null => {
      const at = this.sealedAt.get(field);
      return at === undefined ? (values[field] ?? null) : (batch.sealed[base + at] ?? null);
    };
    const ix = (column: string): string | null => {
      if (regional !== undefined && column in regional) {
        return (regional[column] as string | null) ?? null;
      }
      const at = this.indexAt.get(column);
      return at === undefined ? null : (batch.index[indexBase + at] ?? null);
    };
    return {
      id: p.id as string,
      tenant_id: this.actor.tenantId,
      owner_id: this.ownerId,
      created_at: this.now,
      updated_at: this.now,
      version: 1,
      first_name: v('firstName'),
      last_name: v('lastName'),
      email: v('email'),
      email_bidx: ix('email_bidx'),
      email_eq: ix('email_eq'),
      phone: v('phone'),
      phone_bidx: ix('phone_bidx'),
      title: v('title'),
      company_id: companyId ?? null,
      date_of_birth: v('dateOfBirth'),
      national_id: v('nationalId'),
      national_id_bidx: ix('national_id_bidx'),
      address: v('address'),
      notes: v('notes'),
    };
  }

  private async write(trx: Db, rows: Pending[], sealed: Sealed | undefined) {
    this.trx = trx;
    this.indexing = undefined;
    try {
      await this.writeRows(trx, rows, sealed);
    } finally {
      this.trx = undefined;
      this.indexing = undefined;
    }
  }

  /**
   * The index keys in the write's transaction, with the phone region read (and, on PostgreSQL,
   * locked until commit: tenant-settings/phone-region.ts) when `regional` says the rows written
   * hold a regional field. Later batches are sealed in the region read.
   */
  private async indexingIn(trx: Db, regional: boolean): Promise<TenantIndexing> {
    const known = this.indexing;
    if (known !== undefined && (known.context !== undefined || !regional)) return known;
    const indexing = await this.deps.crypto.indexKeys(
      this.actor.tenantId,
      trx,
      regional ? undefined : {},
    );
    this.indexing = indexing;
    if (indexing.context !== undefined) {
      this.sealIndexing = { keys: indexing.keys, context: indexing.context };
    }
    return indexing;
  }

  /**
   * The regional index columns of a new contact when its batch was sealed in another region
   * than `indexing`'s (undefined when the sealed ones stand): never a stale index.
   */
  private regionalColumns(
    p: Pending,
    sealed: Sealed,
    indexing: TenantIndexing,
  ): Record<string, unknown> | undefined {
    const context = indexing.context;
    if (context === undefined || context.phoneRegion === sealed.context.phoneRegion) {
      return undefined;
    }
    const values: Record<string, unknown> = {};
    for (const field of REGIONAL) values[field] = p.mapped.values[field] ?? null;
    return this.deps.crypto.indexColumnsWith(indexing, values);
  }

  /** Company ids by name for the rows (created when the policy says so). */
  private async companyIds(trx: Db, rows: Pending[]): Promise<Map<string, string>> {
    const tenant = { tenantId: this.actor.tenantId, ownerId: this.ownerId, now: this.now };
    const names = [
      ...new Set(rows.map((p) => p.mapped.company).filter((n): n is string => n !== null)),
    ];
    const ids = await resolveCompanies(trx, tenant, names, false, this.mayReadCompany);
    const unknown = names.filter((n) => !ids.has(n));
    if (this.companies === 'create' && unknown.length > 0) {
      const created = await resolveCompanies(trx, tenant, unknown, true, this.mayReadCompany);
      for (const [name, id] of created) ids.set(name, id);
      this.report.companiesCreated += unknown.length;
    }
    return ids;
  }

  /**
   * Writes a batch: new contacts with the sealer's values (their subject keys stored first, in
   * one key-store transaction), rows matching an existing contact merged or skipped; then the
   * deferred rows, whose earlier row is written by now.
   */
  private async writeRows(trx: Db, rows: Pending[], sealed: Sealed | undefined) {
    const r = this.report;
    const tenantId = this.actor.tenantId;
    const companyIds = await this.companyIds(trx, rows);
    const hashOf = (p: Pending) =>
      p.slot === undefined || sealed === undefined || EMAIL_EQ < 0
        ? null
        : (sealed.batch.index[p.slot * SEAL_INDEX_COLUMNS.length + EMAIL_EQ] ?? null);
    const hashes: string[] = [];
    for (const p of rows) {
      const hash = hashOf(p);
      if (hash !== null) hashes.push(hash);
    }
    const existing = await findContactsByEmailHash(trx, tenantId, hashes);
    const fresh: { p: Pending; companyId: string | undefined }[] = [];
    const deferred: Pending[] = [];
    for (const p of rows) {
      if (p.deferred) {
        deferred.push(p);
        continue;
      }
      const companyId = this.companyOf(p, companyIds);
      if (companyId === null) continue;
      const key = p.key;
      const hash = hashOf(p);
      const found = hash === null ? undefined : existing.get(hash);
      if (p.existingId === undefined && found !== undefined) {
        if (!(await this.mayUpdateContact(found.ownerId))) {
          // Another's contact: a duplicate e-mail, as the API's create answers it; never merged.
          // The rows folded into this one were not merged either.
          if (key) this.seen.set(key, { locked: true });
          r.updated -= p.folded ?? 0;
          r.skipped += 1 + (p.folded ?? 0);
          continue;
        }
      }
      const existingId = p.existingId ?? found?.id;
      if (existingId !== undefined) {
        if (key) this.seen.set(key, { id: existingId });
        if (this.onDuplicate === 'skip') {
          r.skipped++;
          continue;
        }
        await this.merge(trx, existingId, p.mapped.values, companyId);
        r.updated++;
        continue;
      }
      if (sealed === undefined || p.id === undefined) throw new TypeError('a new row not sealed');
      fresh.push({ p, companyId });
      if (key) this.seen.set(key, { id: p.id });
    }
    if (sealed !== undefined && fresh.length > 0) {
      const indexing = await this.indexingIn(
        trx,
        fresh.some(({ p }) => hasRegional(p)),
      );
      await this.keepKeys(
        sealed,
        fresh.map(({ p }) => p),
      );
      await insertContacts(
        trx,
        fresh.map(({ p, companyId }) =>
          this.newRow(p, sealed, companyId, this.regionalColumns(p, sealed, indexing)),
        ),
      );
      r.created += fresh.length;
    }
    if (deferred.length > 0) await this.writeDeferred(trx, deferred);
  }

  /**
   * Stores the new contacts' subject keys before their rows commit. Best-effort commits every
   * batch: its keys are stored at once. All-or-nothing commits once, at the end: keys are kept
   * (copied; the batch's buffer is zeroed after its write) and stored KEY_STORE_ROWS at a time,
   * before a merge (which reads keys from the store) and before the commit (`storeKeys`): the
   * key store syncs every transaction to disk, and the event loop waits for it.
   */
  private async keepKeys(sealed: Sealed, rows: Pending[]) {
    const made: MadeSubjectKey[] = [];
    for (const p of rows) {
      const id = p.id as string;
      if (sealed.stored.has(id)) continue;
      sealed.stored.add(id);
      const at = (p.slot as number) * SUBJECT_KEY_BYTES;
      const key = sealed.batch.keys.subarray(at, at + SUBJECT_KEY_BYTES);
      made.push({
        subjectId: id,
        key: this.report.mode === 'best-effort' ? key : Uint8Array.from(key),
        wrapped: sealed.batch.wrapped[p.slot as number] as string,
      });
    }
    if (made.length === 0) return;
    const group = this.unstored.at(-1);
    // One key-store transaction per tenant key version the keys are wrapped under.
    if (group?.wrapping.version === sealed.wrapping.version) group.keys.push(...made);
    else this.unstored.push({ wrapping: sealed.wrapping, keys: made });
    this.unstoredCount += made.length;
    if (this.report.mode === 'best-effort' || this.unstoredCount >= KEY_STORE_ROWS) {
      await this.storeKeys();
    }
  }

  /** Stores the subject keys kept so far (see `keepKeys`). */
  async storeKeys() {
    while (this.unstored.length > 0) {
      const group = this.unstored[0] as (typeof this.unstored)[number];
      await this.deps.keys.storeSubjectKeys(this.actor.tenantId, group.wrapping, group.keys);
      this.unstored.shift();
      this.unstoredCount -= group.keys.length;
      if (this.report.mode === 'all-or-nothing') for (const k of group.keys) k.key.fill(0);
    }
  }

  /** Zeroes the key bytes kept and not stored (a refused or failed import). */
  dispose() {
    for (const group of this.unstored) for (const k of group.keys) k.key.fill(0);
    this.unstored = [];
    this.unstoredCount = 0;
  }

  /**
   * Rows whose e-mail an earlier batch brought: merged into the contact it became, skipped when
   * that contact is another's; created when the earlier row failed (then the next deferred rows
   * with that e-mail fold into it, as rows of one batch do).
   */
  private async writeDeferred(trx: Db, rows: Pending[]) {
    const r = this.report;
    const revived = new Map<string, Pending>();
    let companyIds: Map<string, string> | undefined;
    for (const p of rows) {
      const key = p.key as string;
      const again = revived.get(key);
      if (again !== undefined) {
        Object.assign(again.mapped.values, p.mapped.values);
        again.mapped.company = p.mapped.company ?? again.mapped.company;
        again.folded = (again.folded ?? 0) + 1;
        r.updated++;
        continue;
      }
      // A row still pending here belongs to a later batch (the earlier row failed, and a row
      // after this one took its place): this row comes first, so it creates the contact, and
      // that later row will find it by its e-mail hash and merge into it.
      const earlier = this.seen.get(key);
      if (earlier !== undefined && 'locked' in earlier) {
        r.skipped++;
      } else if (earlier !== undefined && !('mapped' in earlier)) {
        companyIds ??= await this.companyIds(trx, rows);
        const companyId = this.companyOf(p, companyIds);
        if (companyId === null) continue;
        await this.merge(trx, earlier.id, p.mapped.values, companyId);
        r.updated++;
      } else {
        const row: Pending = { row: p.row, mapped: p.mapped, key };
        revived.set(key, row);
        this.seen.set(key, row);
      }
    }
    if (revived.size === 0) return;
    const again = [...revived.values()];
    await this.writeRows(trx, again, await this.seal(again));
  }

  /** The row's company id (undefined: none named); null when it names no company (failed). */
  private companyOf(p: Pending, companyIds: Map<string, string>): string | undefined | null {
    const company = p.mapped.company;
    if (company === null) return undefined;
    const companyId = companyIds.get(company);
    if (companyId !== undefined) return companyId;
    if (p.key) this.seen.delete(p.key);
    this.fail([
      {
        row: p.row,
        field: p.mapped.columnOf.company ?? 'company',
        reason: 'names no company of this tenant (import with companies=create to add it)',
      },
    ]);
    return null;
  }

  /**
   * Merges a row into an existing contact: sealed under the contact's own key, with its other
   * protected values: they form one group (see field-crypto.ts), re-sealed whole.
   */
  private async merge(
    trx: Db,
    id: string,
    values: Record<string, string | null>,
    companyId: string | undefined,
  ) {
    // The contact may be one this import created: its key must be in the store to read it.
    await this.storeKeys();
    const { crypto } = this.deps;
    const tenantId = this.actor.tenantId;
    const fields: Record<string, unknown> = { ...values };
    if (companyId !== undefined) fields.companyId = companyId;
    const current = await readProtected(trx, tenantId, id, crypto);
    const sealed = await crypto.seal(tenantId, id, fields, { ...current, ...fields });
    const indexing = await this.indexingIn(
      trx,
      REGIONAL.some((f) => f in fields),
    );
    const columns = {
      ...toContactColumns(sealed.values),
      ...crypto.indexColumnsWith(indexing, fields),
    };
    await mergeContact(trx, tenantId, id, columns, this.now);
  }
}
