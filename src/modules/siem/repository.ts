import { sql, type Kysely } from 'kysely';
import type { Database } from '../../db/schema.ts';
import type { AuditEventBody } from '../audit/event.ts';
import type { SiemEvent } from './format.ts';

/** Tenants with events past the destination's cursor, and where that cursor stands. */
export async function pendingTenants(
  db: Kysely<Database>,
  destination: string,
): Promise<{ tenantId: string; next: number; treeSize: number }[]> {
  const rows = await db
    .selectFrom('audit_tree as t')
    .leftJoin('siem_cursors as c', (join) =>
      join.onRef('c.tenant_id', '=', 't.tenant_id').on('c.destination', '=', destination),
    )
    .select(['t.tenant_id', 't.tree_size', 'c.next_leaf_index'])
    .where(sql<boolean>`t.tree_size > coalesce(c.next_leaf_index, 0)`)
    .orderBy('t.tenant_id')
    .execute();
  return rows.map((r) => ({
    tenantId: r.tenant_id,
    next: Number(r.next_leaf_index ?? 0),
    treeSize: Number(r.tree_size),
  }));
}

/** Up to `limit` events of the tenant from leaf `from` on, in log order. */
export async function eventsFrom(
  db: Kysely<Database>,
  tenantId: string,
  from: number,
  limit: number,
): Promise<(SiemEvent & { leafIndex: number })[]> {
  const rows = await db
    .selectFrom('audit_events')
    .select(['leaf_index', 'canonical', 'leaf_hash'])
    .where('tenant_id', '=', tenantId)
    .where('leaf_index', '>=', from)
    .orderBy('leaf_index')
    .limit(limit)
    .execute();
  // The canonical bytes are exactly the leaf body (RFC 8785 JSON), the log's own truth.
  return rows.map((r) => ({
    leafIndex: Number(r.leaf_index),
    body: JSON.parse(r.canonical) as AuditEventBody,
    leafHash: r.leaf_hash,
  }));
}

export async function cursorOf(
  db: Kysely<Database>,
  destination: string,
  tenantId: string,
): Promise<number> {
  const row = await db
    .selectFrom('siem_cursors')
    .select('next_leaf_index')
    .where('destination', '=', destination)
    .where('tenant_id', '=', tenantId)
    .executeTakeFirst();
  return Number(row?.next_leaf_index ?? 0);
}

/**
 * Moves the cursor forward to `next`, never back: two nodes delivering the same batch (allowed:
 * at least once) cannot rewind each other.
 */
export async function advanceCursor(
  db: Kysely<Database>,
  destination: string,
  tenantId: string,
  next: number,
  now: string,
): Promise<void> {
  await db
    .insertInto('siem_cursors')
    .values({ destination, tenant_id: tenantId, next_leaf_index: next, updated_at: now })
    .onConflict((oc) =>
      oc
        .columns(['destination', 'tenant_id'])
        .doUpdateSet({ next_leaf_index: next, updated_at: now })
        .where('siem_cursors.next_leaf_index', '<', next),
    )
    .execute();
}
