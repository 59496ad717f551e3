import type { KeyObject } from 'node:crypto';
import type { Kysely } from 'kysely';
import type { Database } from '../../db/schema.ts';
import {
  AuditIntegrityError,
  CompactTree,
  hashFromHex,
  verifyLog,
  type LogVerificationSummary,
  type StoredAuditLeaf,
} from '../../core/audit/index.ts';
import { bodyFromRow, EVENT_COLUMNS, type AuditEventRow } from './event.ts';
import { createNodeChecker } from './node-check.ts';
import { allCheckpoints, prunedSize, readTree } from './repository.ts';

const PAGE = 5000;

/** The members of an event body in RFC 8785 order (sorted by code unit). */
const BODY_KEYS = [
  'actor',
  'fields',
  'id',
  'ip',
  'leafIndex',
  'occurredAt',
  'outcome',
  'reason',
  'requestId',
  'target',
  'tenantId',
  'type',
  'userAgent',
  'v',
].join();

/**
 * Do the row's columns say what its stored canonical bytes say? The bytes are parsed (JSON) and
 * compared member by member with the columns: far cheaper than canonicalising the columns again
 * (RFC 8785) and comparing bytes, and as strict: a member that differs, is missing or extra, or
 * bytes that are not JSON, fail. The bytes must also be canonical: members in sorted order
 * (checked) and serialised as JSON.stringify does (RFC 8785 shares its string and number forms),
 * so re-serialising the parsed value gives the stored text back. Whether the bytes hash to the
 * leaf is verifyLog's.
 */
function columnsMatch(row: AuditEventRow, parsed: unknown): boolean {
  if (typeof parsed !== 'object' || parsed === null || Array.isArray(parsed)) return false;
  const b = parsed as Record<string, unknown>;
  if (Object.keys(b).join() !== BODY_KEYS || b.v !== 1) return false;
  if (JSON.stringify(parsed) !== row.canonical) return false;
  const actor = b.actor as { kind?: unknown; id?: unknown } | null;
  const target = b.target as { type?: unknown; id?: unknown } | null;
  if (typeof actor !== 'object' || actor === null || Object.keys(actor).join() !== 'id,kind') {
    return false;
  }
  if (target === null) {
    if (row.target_type !== null || row.target_id !== null) return false;
  } else if (
    typeof target !== 'object' ||
    Object.keys(target).join() !== 'id,type' ||
    target.type !== row.target_type ||
    target.id !== row.target_id
  ) {
    return false;
  }
  let fields: unknown;
  try {
    fields = JSON.parse(row.fields);
  } catch {
    return false;
  }
  const stored = b.fields;
  return (
    b.tenantId === row.tenant_id &&
    b.leafIndex === Number(row.leaf_index) &&
    b.id === row.id &&
    b.type === row.type &&
    b.occurredAt === row.occurred_at &&
    actor.kind === row.actor_kind &&
    actor.id === row.actor_id &&
    b.ip === row.ip &&
    b.userAgent === row.user_agent &&
    b.requestId === row.request_id &&
    b.outcome === row.outcome &&
    b.reason === row.reason &&
    Array.isArray(stored) &&
    Array.isArray(fields) &&
    stored.length === fields.length &&
    stored.every((f, i) => typeof f === 'string' && f === fields[i])
  );
}

/**
 * Recomputes a tenant's whole audit log from the database with core/audit's `verifyLog`: every
 * event's columns against its canonical bytes, every leaf hash, the dense leaf order, every
 * signed checkpoint, and the stored tree head. Throws `AuditIntegrityError` naming the first bad
 * leaf; an event whose bytes carry another leaf index (moved, swapped, renumbered) is reported
 * as `LEAF_INDEX_ORDER`.
 *
 * Then the stored subtree hashes (`audit_nodes`) are checked against the leaves:
 * `NODE_UNAVAILABLE` names the first leaf of a missing or wrong subtree (proofs would fail).
 *
 * Checkpoint keys come from the caller, never from the database: whoever can write the database
 * could otherwise register a key of their own and sign a rewritten log.
 *
 * A log pruned by retention resumes at `audit_tree.pruned_size`: the pruned leaves' hashes (kept
 * in `audit_nodes` at level 0) rebuild the start frontier and are checked against the stored
 * subtree hashes; the checkpoint signed at the prune point then anchors them, and an
 * `audit.pruned` event naming that size or more must be among the retained events
 * (`PRUNE_UNANCHORED` otherwise: events removed without a recorded prune).
 */
export async function verifyTenantLog(
  db: Kysely<Database>,
  tenantId: string,
  trustedKeys: readonly KeyObject[],
): Promise<LogVerificationSummary> {
  const checkpoints = await allCheckpoints(db, tenantId);
  const stored = await readTree(db, tenantId);
  const misplaced = new Set<number>();
  const nodes = createNodeChecker(db, tenantId);
  const pruned = await prunedSize(db, tenantId);
  const start = await prunedFrontier(db, tenantId, pruned, nodes);
  let pruneRecorded = false;
  const encoder = new TextEncoder();

  async function* leaves(): AsyncGenerator<StoredAuditLeaf[]> {
    let after = pruned - 1;
    for (;;) {
      const rows = await db
        .selectFrom('audit_events')
        .select(EVENT_COLUMNS)
        .where('tenant_id', '=', tenantId)
        .where('leaf_index', '>', after)
        .orderBy('leaf_index')
        .limit(PAGE)
        .execute();
      if (rows.length === 0) return;
      const page = rows.map((row): StoredAuditLeaf => {
        const leafIndex = Number(row.leaf_index);
        let parsed: unknown;
        try {
          parsed = JSON.parse(row.canonical);
        } catch {
          parsed = undefined;
        }
        if ((parsed as { leafIndex?: unknown } | undefined)?.leafIndex !== leafIndex) {
          misplaced.add(leafIndex);
        }
        if (
          row.type === 'audit.pruned' &&
          row.target_type === 'audit_log' &&
          Number(row.target_id) >= pruned
        ) {
          // Pruning announces its end point first, then removes leaves up to it in chunks.
          pruneRecorded = true;
        }
        let storedLeafHash: Uint8Array;
        try {
          storedLeafHash = hashFromHex(row.leaf_hash);
        } catch {
          storedLeafHash = new Uint8Array(0);
        }
        // Only a row whose columns disagree goes through verifyLog's own (canonicalising)
        // comparison, which then fails at that leaf, in order with every other check.
        const agrees = columnsMatch(row, parsed);
        return {
          leafIndex,
          canonicalBytes: encoder.encode(row.canonical),
          ...(agrees ? {} : { event: bodyFromRow(row) }),
          storedLeafHash,
        };
      });
      await nodes.page(page.map((l) => ({ leafIndex: l.leafIndex, hash: l.storedLeafHash })));
      yield page;
      after = Number(rows.at(-1)!.leaf_index);
    }
  }

  let summary: LogVerificationSummary;
  try {
    summary = await verifyLog({
      tenantId,
      leaves: leaves(),
      checkpoints,
      publicKeys: trustedKeys,
      expectedTreeSize: stored.size,
      start,
    });
  } catch (error) {
    if (
      error instanceof AuditIntegrityError &&
      error.code === 'LEAF_HASH_MISMATCH' &&
      error.leafIndex !== undefined &&
      misplaced.has(error.leafIndex)
    ) {
      throw new AuditIntegrityError(
        'LEAF_INDEX_ORDER',
        `event at leaf ${error.leafIndex} was recorded at another position`,
        { leafIndex: error.leafIndex, cause: error },
      );
    }
    throw error;
  }
  const frontier = stored.toState();
  if (JSON.stringify(frontier) !== JSON.stringify(summary.frontier)) {
    throw new AuditIntegrityError('ROOT_MISMATCH', 'stored tree head differs from the events', {
      leafIndex: summary.anchoredTreeSize,
    });
  }
  if (pruned > 0 && !pruneRecorded) {
    // Checked after verifyLog: the event's columns matched its signed bytes.
    throw new AuditIntegrityError(
      'PRUNE_UNANCHORED',
      `events below leaf ${pruned} are gone but no audit.pruned event records it`,
      { leafIndex: 0 },
    );
  }
  const bad = nodes.firstBad();
  if (bad !== undefined) {
    // The events are intact; the subtree hashes proofs are served from are not.
    throw new AuditIntegrityError(
      'NODE_UNAVAILABLE',
      `stored subtree hash level ${bad.level} index ${bad.index} is missing or wrong`,
      { leafIndex: bad.index * 2 ** bad.level },
    );
  }
  return summary;
}

/**
 * The tree of the first `pruned` leaves, rebuilt from the leaf hashes retention kept; each page
 * also goes through the node checker, so the stored subtree hashes above them are checked too.
 */
async function prunedFrontier(
  db: Kysely<Database>,
  tenantId: string,
  pruned: number,
  nodes: ReturnType<typeof createNodeChecker>,
): Promise<CompactTree> {
  const tree = new CompactTree();
  while (tree.size < pruned) {
    const rows = await db
      .selectFrom('audit_nodes')
      .select(['idx', 'hash'])
      .where('tenant_id', '=', tenantId)
      .where('level', '=', 0)
      .where('idx', '>=', tree.size)
      .where('idx', '<', pruned)
      .orderBy('idx')
      .limit(PAGE * 10)
      .execute();
    const page: { leafIndex: number; hash: Uint8Array }[] = [];
    for (const row of rows) {
      const leafIndex = Number(row.idx);
      let hash: Uint8Array | undefined;
      try {
        hash = hashFromHex(row.hash);
      } catch {
        hash = undefined;
      }
      if (leafIndex !== tree.size || hash === undefined) break;
      tree.append(hash);
      page.push({ leafIndex, hash });
    }
    if (page.length === 0) {
      throw new AuditIntegrityError(
        'NODE_UNAVAILABLE',
        `the kept hash of pruned leaf ${tree.size} is missing or malformed`,
        { leafIndex: tree.size },
      );
    }
    await nodes.page(page);
  }
  return tree;
}
