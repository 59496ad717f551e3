import type { Kysely } from 'kysely';
import type { Clock } from '../../clock.ts';
import type { Database } from '../../db/schema.ts';
import { authorize, fieldAccess, requireFreshAuth, type Actor } from '../../core/policy/index.ts';
import { AppError } from '../../errors.ts';
import { auditActor } from '../audit/event.ts';
import type { AuditRecorder } from '../audit/service.ts';
import type { RecordService } from './service.ts';

export const REVEAL_REASON_MIN = 10;
export const REVEAL_REASON_MAX = 500;

export interface RevealResult {
  id: string;
  /** The clear value of each field asked for (null when the field is empty). */
  values: Record<string, unknown>;
}

/**
 * Reveal: the clear values of fields the caller otherwise sees masked (or not at all), one record
 * at a time, when `fieldAccess` says `reveal` for each of them. A reason is required, the session
 * must have proven its user within five minutes (step-up), and `record.revealed` (field names and
 * the reason, never values) is written in the transaction that reads the values: no audit, no
 * values.
 */
export function createRevealService(deps: {
  db: Kysely<Database>;
  clock: Clock;
  audit: AuditRecorder;
  records: RecordService;
}) {
  const { spec } = deps.records;
  const revealable = new Set(Object.keys(spec.fields));

  return async function reveal(
    actor: Actor,
    id: string,
    input: { fields: readonly string[]; reason: string },
  ): Promise<RevealResult> {
    authorize(actor, 'read', spec.resource);
    const fields = [...new Set(input.fields)];
    const reason = input.reason.trim();
    const bad = [
      ...fields
        .filter((f) => !revealable.has(f))
        .map((f) => ({ field: 'body/fields', reason: `${f} is not a field of a ${spec.noun}` })),
      ...(fields.length === 0 ? [{ field: 'body/fields', reason: 'names no field' }] : []),
      ...(reason.length < REVEAL_REASON_MIN
        ? [{ field: 'body/reason', reason: `must have at least ${REVEAL_REASON_MIN} characters` }]
        : []),
    ];
    if (bad.length > 0) {
      throw new AppError('invalid', 'request.invalid', 'invalid reveal request', {
        detail: bad.map((b) => `${b.field} ${b.reason}`).join('; '),
        errors: bad,
      });
    }
    const refused = fields.filter((f) => !fieldAccess(actor, spec.resource, f).reveal);
    if (refused.length > 0) {
      throw new AppError('forbidden', 'policy.reveal_forbidden', 'reveal refused', {
        detail: `Your role may not reveal ${refused.join(', ')} of a ${spec.noun}.`,
        errors: refused.map((f) => ({
          field: `body/fields/${f}`,
          reason: 'your role may not reveal it',
        })),
      });
    }
    requireFreshAuth(actor, deps.clock);
    return deps.db.transaction().execute(async (trx) => {
      const values = await deps.records.readClear(trx, actor, id, fields);
      await deps.audit.append(trx, {
        tenantId: actor.tenantId,
        type: 'record.revealed',
        ...auditActor(actor),
        target: { type: spec.resource, id },
        fields,
        reason,
      });
      return { id, values };
    });
  };
}

export type RevealService = ReturnType<typeof createRevealService>;
