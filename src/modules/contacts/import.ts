import type { Readable } from 'node:stream';
import type { Kysely, Transaction } from 'kysely';
import type { Clock } from '../../clock.ts';
import type { Database } from '../../db/schema.ts';
import { authorize, scopeOf, type Actor, type Scope } from '../../core/policy/index.ts';
import { AppError } from '../../errors.ts';
import { newId } from '../../ids.ts';
import { isUniqueViolation, ownerInScope, ownerScopeOf } from '../records/repository.ts';
import { readCsvBatches, type CsvFault, type CsvRecord } from './csv-read.ts';
import { mapRow, resolveMapping, type ColumnMapping, type MappedRow } from './csv-mapping.ts';
import {
  IMPORT_BATCH_ROWS,
  findContactsByEmailHash,
  insertContacts,
  mergeContact,
  readContactColumns,
  resolveCompanies,
  type Db,
  type NewContact,
} from './import-store.ts';
import { toContactColumns, validateRow, type RowError } from './import-row.ts';
import { contactSpec } from './spec.ts';
import { normalizeEmail } from '../../core/crypto/normalize.ts';
import type { FieldCrypto } from '../records/field-crypto.ts';
import type { KeyService } from '../keys/service.ts';
import { auditActor } from '../audit/event.ts';
import type { AuditRecorder } from '../audit/service.ts';

export type ImportMode = 'all-or-nothing' | 'best-effort';
export type OnDuplicate = 'skip' | 'merge';
export type CompanyPolicy = 'match' | 'create';

export interface ImportOptions {
  /** Default all-or-nothing: a file is imported whole or not at all. */
  mode?: ImportMode;
  /** Same e-mail as an existing contact or an earlier row. Default skip: nothing overwritten. */
  onDuplicate?: OnDuplicate;
  /** A company column names a company the tenant lacks. Default create. */
  companies?: CompanyPolicy;
  /** CSV header -> import target (or null to ignore the column); wins over recognised names. */
  mapping?: Record<string, string | null>;
}

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

interface Pending {
  row: number;
  mapped: MappedRow;
  /** Known when the e-mail belongs to a contact this import already wrote (or may merge into). */
  existingId?: string;
  /** Later rows of the file with the same e-mail folded into this one (each counted updated). */
  folded?: number;
  /** The normalised e-mail (the key of `seen`), when the row has one. */
  key?: string;
}

/**
 * What an e-mail already seen stands for: a pending row, a contact this import wrote or may
 * merge into, or one out of the caller's update scope (`locked`: never merged, only skipped).
 */
type Seen = Pending | { id: string } | { locked: true };

class Rollback extends Error {}

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
  /** Subject keys, created one key-store transaction per batch. */
  keys: KeyService;
  /** The contacts' field crypto (the record service's, so the same index settings). */
  crypto: FieldCrypto;
  /** Records `contacts.imported` (see `importContacts`); absent only in benchmarks. */
  audit?: AuditRecorder | undefined;
}

/**
 * The reason code of `contacts.imported`: mode, source and row counts, never a value, e.g.
 * `mode=best-effort;source=api;created=3;merged=1;skipped=0;failed=2`.
 */
export function importReason(report: ImportReport, source: string): string {
  return [
    `mode=${report.mode}`,
    `source=${source}`,
    `created=${report.created}`,
    `merged=${report.updated}`,
    `skipped=${report.skipped}`,
    `failed=${report.failed}`,
  ].join(';');
}

/**
 * Imports contacts from a CSV byte stream into the actor's tenant: streamed (one batch of rows in
 * memory), validated row by row with the API's rules, de-duplicated by normalised e-mail within
 * the file and against the tenant, written with multi-row INSERTs. Returns the report; a refused
 * all-or-nothing import returns `committed: false` and has written nothing.
 *
 * Audited as one `contacts.imported` event (target `contact_import` with a fresh id, fields = the
 * imported field names, reason = `importReason`): all-or-nothing writes it in the import's
 * transaction, or, when it refuses the file, as a `failure` in its own transaction; best-effort
 * commits every batch (IMPORT_BATCH_ROWS rows) on its own, each with an event in its transaction:
 * the counts so far and `;batch=N` for the earlier batches, the final counts for the last one.
 * All events of one import share its target id.
 */
export async function importContacts(
  deps: ImportDeps,
  actor: Actor,
  input: Readable,
  options: ImportOptions = {},
): Promise<ImportReport> {
  authorize(actor, 'import', 'contact');
  const mode = options.mode ?? 'all-or-nothing';
  const onDuplicate = options.onDuplicate ?? 'skip';
  const records = readCsvBatches(input)[Symbol.asyncIterator]();
  try {
    const first = await records.next();
    const header = first.done ? undefined : first.value[0];
    if (header === undefined || !('values' in header) || header.values.every((v) => !v.trim())) {
      throw new AppError('invalid', 'import.invalid_header', 'no header line', {
        detail: 'The file is empty or its first line cannot be read as column names.',
      });
    }
    const columns = resolveMapping(header.values, options.mapping);
    // The rows that came with the header line, then the rest of the file.
    const rows = first.done ? [] : first.value.slice(1);
    const run = new ImportRun(deps, actor, columns, mode, onDuplicate, options.companies);
    const importId = newId();
    const source = actor.kind === 'system' ? actor.job : 'api';
    /** The event with the counts so far; `batch` names an earlier batch of a best-effort import. */
    const record = (trx: Transaction<Database>, outcome: 'success' | 'failure', batch?: number) =>
      deps.audit?.append(trx, {
        tenantId: actor.tenantId,
        type: 'contacts.imported',
        ...auditActor(actor),
        target: { type: 'contact_import', id: importId },
        outcome,
        reason: `${importReason(run.report, source)}${batch === undefined ? '' : `;batch=${batch}`}`,
        fields: [...columns.sources.keys()],
      });
    if (mode === 'best-effort') {
      // Every committed batch carries an event in its own transaction, so an import stopped
      // midway (killed, or a later batch failing) leaves no committed rows unaudited: earlier
      // batches record the counts so far with `batch=N`, the last one the final counts.
      let batches = 0;
      let final = false;
      await run.consume(
        rows,
        records,
        (work) =>
          deps.db.transaction().execute(async (trx) => {
            await work(trx);
            if (!final) await record(trx, 'success', ++batches);
          }),
        async (trx) => {
          final = true;
          await record(trx, 'success');
        },
      );
    } else {
      try {
        await deps.db.transaction().execute(async (trx) => {
          await run.consume(rows, records, (work) => work(trx));
          if (run.report.failed > 0) throw new Rollback();
          await record(trx, 'success');
        });
      } catch (error) {
        if (!(error instanceof Rollback)) throw error;
        run.rolledBack();
        // Nothing was written; the refusal is recorded on its own.
        await deps.db.transaction().execute(async (trx) => void (await record(trx, 'failure')));
      }
    }
    return run.report;
  } finally {
    await records.return?.(undefined);
  }
}

type InTransaction = (work: (trx: Transaction<Database>) => Promise<void>) => Promise<void>;

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

class ImportRun {
  readonly report: ImportReport;
  private batch: Pending[] = [];
  /** Normalised e-mail -> the pending row or the contact written for it. */
  private seen = new Map<string, Seen>();
  private readonly now: string;
  private readonly ownerId: string | null;
  /** The transaction of the batch being written (the scope checks read through it). */
  private trx: Db | undefined;
  /**
   * Merge only into contacts the caller may update (break-glass widens reading, never this),
   * link only companies the caller may read: an out-of-scope company is an unknown name, as
   * the record service answers a reference out of read scope like a missing one.
   */
  private readonly mayUpdateContact: (ownerId: string | null) => Promise<boolean>;
  private readonly mayReadCompany: (ownerId: string | null) => Promise<boolean>;

  constructor(
    private readonly deps: ImportDeps,
    private readonly actor: Actor,
    private readonly columns: ColumnMapping,
    mode: ImportMode,
    private readonly onDuplicate: OnDuplicate,
    private readonly companies: CompanyPolicy = 'create',
  ) {
    this.now = deps.clock.now().toISOString();
    this.ownerId = actor.kind === 'system' ? null : actor.userId;
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
        if (this.take(item)) await this.flush(inTrx);
      }
      const next = await rest.next();
      if (next.done) break;
      items = next.value;
    }
    if (r.mode === 'best-effort' || r.failed === 0) await this.flush(inTrx, last);
  }

  /** One record: validated, then queued. True when the batch is full (time to write it). */
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
    return this.batch.length >= IMPORT_BATCH_ROWS;
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
    } else if ('mapped' in earlier) {
      // The earlier row is not written yet: this row's values complete or overwrite it.
      Object.assign(earlier.mapped.values, p.mapped.values);
      earlier.mapped.company = p.mapped.company ?? earlier.mapped.company;
      earlier.folded = (earlier.folded ?? 0) + 1;
      this.report.updated++;
    } else {
      this.batch.push({ ...p, existingId: earlier.id });
    }
  }

  private async flush(inTrx: InTransaction, last?: (trx: Transaction<Database>) => Promise<void>) {
    if (this.batch.length === 0 && last === undefined) return;
    const batch = this.batch;
    this.batch = [];
    const before = { ...this.report, errors: this.report.errors.length };
    const work = async (trx: Transaction<Database>) => {
      if (batch.length > 0) await this.write(trx, batch);
      await last?.(trx);
    };
    try {
      await inTrx(work);
    } catch (error) {
      if (!isUniqueViolation(error) || this.report.mode !== 'best-effort') throw error;
      // Another writer created one of these e-mails meanwhile: read again and retry once.
      Object.assign(this.report, { ...before, errors: this.report.errors.slice(0, before.errors) });
      await inTrx(work);
    }
  }

  /**
   * A fixed-shape row (the hot path of a large import: no spreads). `v` holds the sealed
   * values, `ix` the index columns computed from the clear ones.
   */
  private newRow(
    id: string,
    v: Record<string, unknown>,
    companyId: string | undefined,
    ix: Record<string, unknown>,
  ): NewContact {
    const text = (x: unknown) => (typeof x === 'string' ? x : null);
    return {
      id,
      tenant_id: this.actor.tenantId,
      owner_id: this.ownerId,
      created_at: this.now,
      updated_at: this.now,
      version: 1,
      first_name: text(v.firstName),
      last_name: text(v.lastName),
      email: text(v.email),
      email_bidx: text(ix.email_bidx),
      email_eq: text(ix.email_eq),
      phone: text(v.phone),
      phone_bidx: text(ix.phone_bidx),
      title: text(v.title),
      company_id: companyId ?? null,
      date_of_birth: text(v.dateOfBirth),
      national_id: text(v.nationalId),
      national_id_bidx: text(ix.national_id_bidx),
      address: text(v.address),
      notes: text(v.notes),
    };
  }

  private async write(trx: Db, batch: Pending[]) {
    this.trx = trx;
    try {
      await this.writeBatch(trx, batch);
    } finally {
      this.trx = undefined;
    }
  }

  private async writeBatch(trx: Db, batch: Pending[]) {
    const r = this.report;
    const tenantId = this.actor.tenantId;
    const names = [
      ...new Set(batch.map((p) => p.mapped.company).filter((n): n is string => n !== null)),
    ];
    const companyIds = await resolveCompanies(
      trx,
      { tenantId, ownerId: this.ownerId, now: this.now },
      names,
      false,
      this.mayReadCompany,
    );
    const unknown = names.filter((n) => !companyIds.has(n));
    if (this.companies === 'create' && unknown.length > 0) {
      const created = await resolveCompanies(
        trx,
        { tenantId, ownerId: this.ownerId, now: this.now },
        unknown,
        true,
        this.mayReadCompany,
      );
      for (const [name, id] of created) companyIds.set(name, id);
      r.companiesCreated += unknown.length;
    }
    const { crypto } = this.deps;
    const ixKeys = await crypto.indexKeys(tenantId, trx);
    // Index columns of every row, from its clear values; e-mail duplicates by the exact hash.
    const indexOf = new Map<Pending, Record<string, unknown>>();
    for (const p of batch) indexOf.set(p, crypto.indexColumnsWith(ixKeys, p.mapped.values));
    const hashes = batch
      .filter((p) => p.existingId === undefined)
      .map((p) => indexOf.get(p)?.email_eq)
      .filter((h): h is string => typeof h === 'string');
    const existing = await findContactsByEmailHash(trx, tenantId, hashes);
    const fresh: { id: string; p: Pending; companyId: string | undefined }[] = [];
    for (const p of batch) {
      const { values, company } = p.mapped;
      const fields: Record<string, unknown> = { ...values };
      const key = p.key;
      const hash = indexOf.get(p)?.email_eq;
      if (company !== null) {
        const companyId = companyIds.get(company);
        if (companyId === undefined) {
          if (key) this.seen.delete(key);
          this.fail([
            {
              row: p.row,
              field: p.mapped.columnOf.company ?? 'company',
              reason: 'names no company of this tenant (import with companies=create to add it)',
            },
          ]);
          continue;
        }
        fields.companyId = companyId;
      }
      const found = typeof hash === 'string' ? existing.get(hash) : undefined;
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
        // Sealed under the existing contact's own key, with its other protected values: they
        // form one group (see field-crypto.ts), re-sealed whole.
        const current = await readProtected(trx, tenantId, existingId, crypto);
        const sealed = await crypto.seal(tenantId, existingId, fields, { ...current, ...fields });
        const columns = {
          ...toContactColumns(sealed.values),
          ...crypto.indexColumnsWith(ixKeys, fields),
        };
        await mergeContact(trx, tenantId, existingId, columns, this.now);
        r.updated++;
        continue;
      }
      const id = newId();
      fresh.push({ id, p, companyId: fields.companyId as string | undefined });
      if (key) this.seen.set(key, { id });
    }
    // One key-store transaction for the batch's new data subjects.
    const subjectKeys = await this.deps.keys.createSubjectKeys(
      tenantId,
      fresh.map((f) => f.id),
    );
    const inserts: NewContact[] = fresh.map(({ id, p, companyId }) => {
      const key = subjectKeys.get(id);
      if (key === undefined) throw new TypeError('no subject key for a new contact');
      const sealed = crypto.sealWith(key, tenantId, id, p.mapped.values);
      return this.newRow(id, sealed, companyId, indexOf.get(p) ?? {});
    });
    await insertContacts(trx, inserts);
    r.created += inserts.length;
  }
}
