import type { Readable } from 'node:stream';
import type { Kysely } from 'kysely';
import type { Clock } from '../../clock.ts';
import type { Database } from '../../db/schema.ts';
import { requireFreshAuth, type Actor } from '../../core/policy/index.ts';
import type { RecordService } from '../records/service.ts';
import { exportContacts } from './export.ts';
import { importContacts, type ImportOptions, type ImportReport } from './import.ts';

export type { ImportOptions, ImportReport } from './import.ts';

/**
 * CSV import and export of contacts. `contacts` is the record service whose rules the import
 * shares (its spec gives columns and lookup normalisation).
 */
export function createContactTransfer(deps: {
  db: Kysely<Database>;
  clock: Clock;
  contacts: RecordService;
  /** Refuses an export a detection response blocked (src/modules/detection). */
  exportGuard?: (actor: Actor) => Promise<void>;
}) {
  const { db, clock } = deps;
  return {
    /** See `importContacts`: streamed, validated, de-duplicated by e-mail. */
    import(actor: Actor, input: Readable, options?: ImportOptions): Promise<ImportReport> {
      return importContacts({ db, clock }, actor, input, options);
    },
    /** Throws while a detection response blocks the actor's exports; call before `export`. */
    async assertExportAllowed(actor: Actor): Promise<void> {
      await deps.exportGuard?.(actor);
    },
    /** See `exportContacts`: CSV stream with formula cells neutralised. */
    export(actor: Actor): Readable {
      // The whole contact base in one file: a session must have proven its user recently.
      requireFreshAuth(actor, clock);
      return exportContacts({ db }, actor);
    },
  };
}

export type ContactTransfer = ReturnType<typeof createContactTransfer>;
