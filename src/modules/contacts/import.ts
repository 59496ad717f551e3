import type { Readable } from 'node:stream';
import type { Transaction } from 'kysely';
import type { Database } from '../../db/schema.ts';
import { authorize, type Actor } from '../../core/policy/index.ts';
import { AppError } from '../../errors.ts';
import { newId } from '../../ids.ts';
import { readCsvBatches } from './csv-read.ts';
import { resolveMapping } from './csv-mapping.ts';
import { IMPORT_BATCH_ROWS } from './import-store.ts';
import { createImportSealer } from './import-sealer.ts';
import { auditActor } from '../audit/event.ts';
import {
  ImportRun,
  MAX_REPORTED_ERRORS,
  type CompanyPolicy,
  type ImportDeps,
  type ImportMode,
  type ImportReport,
  type OnDuplicate,
} from './import-run.ts';

export { MAX_REPORTED_ERRORS };
export type {
  CompanyPolicy,
  ImportDeps,
  ImportMode,
  ImportReport,
  OnDuplicate,
} from './import-run.ts';

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

class Rollback extends Error {}

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
  const batchRows = deps.batchRows ?? IMPORT_BATCH_ROWS;
  const sealer = createImportSealer({ thread: deps.sealThread, threshold: batchRows });
  let dispose = () => {};
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
    const run = new ImportRun(
      { ...deps, sealer, batchRows },
      actor,
      columns,
      mode,
      onDuplicate,
      options.companies,
    );
    dispose = () => run.dispose();
    await run.start();
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
          // Every key before the rows sealed under it commit.
          await run.storeKeys();
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
    dispose();
    await sealer.close();
    await records.return?.(undefined);
  }
}
