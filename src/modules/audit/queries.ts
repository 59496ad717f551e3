import type { Kysely } from 'kysely';
import type { Database } from '../../db/schema.ts';
import { authorize, type Actor } from '../../core/policy/index.ts';
import {
  AuditIntegrityError,
  consistencyProofPlan,
  inclusionProofPlan,
  proofFromPlan,
  toHex,
  type ProofPlan,
} from '../../core/audit/index.ts';
import { AppError } from '../../errors.ts';
import { bodyFromRow, EVENT_COLUMNS, type AuditEventBody } from './event.ts';
import { readTree, subtreeHashes } from './repository.ts';

export interface EventFilters {
  type?: string | undefined;
  targetType?: string | undefined;
  targetId?: string | undefined;
  from?: string | undefined;
  to?: string | undefined;
  cursor?: string | undefined;
  limit: number;
}

export type ApiAuditEvent = Omit<AuditEventBody, 'v' | 'tenantId'> & {
  leafHash: string;
  canonical: string;
};

const badCursor = () =>
  new AppError('invalid', 'request.invalid_cursor', 'bad audit cursor', {
    detail: 'The cursor is not one this API returned.',
  });

function instant(name: string, value: string | undefined): string | undefined {
  if (value === undefined) return undefined;
  const t = Date.parse(value);
  if (Number.isNaN(t)) {
    throw new AppError('invalid', 'request.invalid', 'bad date filter', {
      detail: `querystring/${name} is not a valid date-time`,
      errors: [{ field: `querystring/${name}`, reason: 'is not a valid date-time' }],
    });
  }
  return new Date(t).toISOString();
}

function rangeError(error: unknown): never {
  if (error instanceof AuditIntegrityError && error.code === 'TREE_RANGE_INVALID') {
    throw new AppError('invalid', 'audit.tree_range_invalid', error.message, {
      detail: 'The leaf index or tree sizes lie outside the current audit tree.',
      cause: error,
    });
  }
  throw error;
}

/** Reads of the audit log (the `audit` capability: owners, admins, auditors): events, proofs. */
export function createAuditQueries(deps: { db: Kysely<Database> }) {
  const { db } = deps;

  async function listEvents(actor: Actor, f: EventFilters) {
    authorize(actor, 'read', 'audit');
    let after = -1;
    if (f.cursor !== undefined) {
      const raw = Buffer.from(f.cursor, 'base64url').toString('utf8');
      if (!/^(0|[1-9][0-9]{0,15})$/.test(raw)) throw badCursor();
      after = Number(raw);
    }
    let query = db
      .selectFrom('audit_events')
      .select(EVENT_COLUMNS)
      .where('tenant_id', '=', actor.tenantId)
      .where('leaf_index', '>', after);
    if (f.type !== undefined) query = query.where('type', '=', f.type);
    if (f.targetType !== undefined) query = query.where('target_type', '=', f.targetType);
    if (f.targetId !== undefined) query = query.where('target_id', '=', f.targetId);
    const from = instant('from', f.from);
    const to = instant('to', f.to);
    if (from !== undefined) query = query.where('occurred_at', '>=', from);
    if (to !== undefined) query = query.where('occurred_at', '<', to);
    const rows = await query
      .orderBy('leaf_index')
      .limit(f.limit + 1)
      .execute();
    const page = rows.slice(0, f.limit);
    const items: ApiAuditEvent[] = page.map((row) => {
      const body = bodyFromRow(row);
      if ('malformed' in body) throw new TypeError(`audit event ${row.id} is malformed`);
      return {
        leafIndex: body.leafIndex,
        id: body.id,
        type: body.type,
        occurredAt: body.occurredAt,
        actor: body.actor,
        ip: body.ip,
        userAgent: body.userAgent,
        requestId: body.requestId,
        target: body.target,
        outcome: body.outcome,
        reason: body.reason,
        fields: body.fields,
        ...(body.breakGlassId === undefined ? {} : { breakGlassId: body.breakGlassId }),
        leafHash: row.leaf_hash,
        canonical: row.canonical,
      };
    });
    const last = page.at(-1);
    const nextCursor =
      rows.length > f.limit && last
        ? Buffer.from(String(Number(last.leaf_index))).toString('base64url')
        : null;
    return { items, nextCursor };
  }

  async function resolve(tenantId: string, plan: ProofPlan): Promise<string[]> {
    const hashes = await subtreeHashes(db, tenantId, plan.flat());
    if (hashes.some((h) => h === undefined)) {
      throw new AuditIntegrityError('NODE_UNAVAILABLE', 'a subtree hash is missing');
    }
    return proofFromPlan(plan, hashes as Uint8Array[]).map(toHex);
  }

  async function currentSize(tenantId: string): Promise<number> {
    return (await readTree(db, tenantId)).size;
  }

  async function inclusion(actor: Actor, leafIndex: number, treeSize: number) {
    authorize(actor, 'read', 'audit');
    let plan: ProofPlan;
    try {
      if (treeSize > (await currentSize(actor.tenantId))) {
        throw new AuditIntegrityError('TREE_RANGE_INVALID', `tree is smaller than ${treeSize}`);
      }
      plan = inclusionProofPlan(leafIndex, treeSize);
    } catch (error) {
      rangeError(error);
    }
    const [leaf] = await subtreeHashes(db, actor.tenantId, [{ level: 0, index: leafIndex }]);
    if (leaf === undefined) throw new AuditIntegrityError('NODE_UNAVAILABLE', 'leaf missing');
    return {
      leafIndex,
      treeSize,
      leafHash: toHex(leaf),
      proof: await resolve(actor.tenantId, plan),
    };
  }

  async function consistency(actor: Actor, from: number, to: number) {
    authorize(actor, 'read', 'audit');
    let plan: ProofPlan;
    try {
      if (to > (await currentSize(actor.tenantId))) {
        throw new AuditIntegrityError('TREE_RANGE_INVALID', `tree is smaller than ${to}`);
      }
      plan = consistencyProofPlan(from, to);
    } catch (error) {
      rangeError(error);
    }
    return { from, to, proof: await resolve(actor.tenantId, plan) };
  }

  return { listEvents, inclusion, consistency };
}

export type AuditQueries = ReturnType<typeof createAuditQueries>;
