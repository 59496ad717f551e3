import type { Kysely } from 'kysely';
import type { Database } from '../../db/schema.ts';
import type { AuditEventInput } from '../audit/event.ts';
import type { AuditRecorder } from '../audit/service.ts';

/**
 * Key-management audit events, keyed by `type`. They name key versions and counts, never key
 * material. The key store is another database than the audit log, so the two cannot share a
 * transaction (and on SQLite the key operation may read the data database, e.g. `retire`
 * counting protected values, which a held transaction would block): `withKeyEvent` runs the key
 * operation, then appends its events in one transaction. An operation that fails records
 * nothing; if the append fails the command fails saying so (the key change that already
 * committed in the key store is not undone).
 */
export type KeyEventType =
  /** A new tenant data key version is active; older ones decrypt only. */
  | 'keys.rotated'
  /** A re-encryption run to the active version began (once per run, not per batch). */
  | 'keys.reencryption_started'
  /** Every subject key and value of the tenant is under the active version (job finished). */
  | 'keys.reencrypted'
  /** A data key version was destroyed; the minimum decryption version rose. */
  | 'keys.version_retired'
  /** A root (wrapping) key was created in the HSM; recorded in every tenant's log. */
  | 'keys.root_key_created';

export interface KeyEvent {
  type: KeyEventType;
  tenantId: string;
  actor: AuditEventInput['actor'];
  request?: AuditEventInput['request'];
  /** The key the event is about: `tenant_data_key` `v<n>`, or `root_key` `<provider>:<label>`. */
  target: { type: 'tenant_data_key' | 'root_key'; id: string };
  /** A code with counts, e.g. `previous_v1`, `values_12;subject_keys_40`. */
  reason?: string;
}

/** The system actor of `custos keys ...` commands. */
export const CLI_ACTOR: AuditEventInput['actor'] = { kind: 'system', id: 'cli' };

export function keyEventInput(event: KeyEvent): AuditEventInput {
  return {
    tenantId: event.tenantId,
    type: event.type,
    actor: event.actor,
    ...(event.request === undefined ? {} : { request: event.request }),
    target: event.target,
    outcome: 'success',
    reason: event.reason ?? null,
  };
}

/**
 * Runs a key operation, then records its events in one transaction of the data database.
 *
 * @example
 * ```ts
 * await withKeyEvent({ db, audit }, async () => {
 *   const { version } = await keys.rotateTenantKey(tenantId);
 *   return { result: version, events: [{ type: 'keys.rotated', tenantId, actor: CLI_ACTOR, target: { type: 'tenant_data_key', id: `v${version}` } }] };
 * });
 * ```
 */
export async function withKeyEvent<T>(
  deps: { db: Kysely<Database>; audit: AuditRecorder },
  operation: () => Promise<{ result: T; events: readonly KeyEvent[] }>,
): Promise<T> {
  const { result, events } = await operation();
  if (events.length === 0) return result;
  try {
    await deps.db.transaction().execute(async (trx) => {
      for (const event of events) await deps.audit.append(trx, keyEventInput(event));
    });
  } catch (err) {
    throw new Error(
      `the key change was made but its audit event (${events[0]?.type}) was not recorded`,
      {
        cause: err,
      },
    );
  }
  return result;
}
