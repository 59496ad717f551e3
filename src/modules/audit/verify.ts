import type { KeyObject } from 'node:crypto';
import type { Kysely } from 'kysely';
import type { Database } from '../../db/schema.ts';
import {
  AuditIntegrityError,
  CompactTree,
  hashFromHex,
  verifyLog,
  type FrontierState,
  type LogVerificationSummary,
  type StoredAuditLeaf,
} from '../../core/audit/index.ts';
import { canonicalTextOfColumns, columnsSpellCanonical } from './canonical-columns.ts';
import { bodyFromRow, type AuditEventRow } from './event.ts';
import { createNodeChecker } from './node-check.ts';
import { withAuditSnapshot, type AuditSnapshot, type EventTuple } from './verify-source.ts';

/**
 * Events per read: one await per page. Small enough that a page's rows die young (a page of
 * 10,000 rows outlives the young generation and doubled the time spent collecting garbage).
 */
const PAGE = 1000;
/** Stored subtree hashes compared per round of queries (one per level). */
const NODE_BATCH = 8192;

function rowOf(tenantId: string, t: EventTuple): AuditEventRow {
  return {
    tenant_id: tenantId,
    leaf_index: t[0],
    canonical: t[1],
    leaf_hash: t[2],
    id: t[3],
    type: t[4],
    occurred_at: t[5],
    actor_kind: t[6],
    actor_id: t[7],
    ip: t[8],
    user_agent: t[9],
    request_id: t[10],
    target_type: t[11],
    target_id: t[12],
    outcome: t[13],
    reason: t[14],
    fields: t[15],
    break_glass_id: t[16],
  };
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
 *
 * Everything is read from one snapshot (see `withAuditSnapshot`): events appended while it runs
 * are neither seen nor mistaken for a log longer than its stored head.
 */
export async function verifyTenantLog(
  db: Kysely<Database>,
  tenantId: string,
  trustedKeys: readonly KeyObject[],
): Promise<LogVerificationSummary> {
  return withAuditSnapshot(db, tenantId, (snapshot) =>
    verifySnapshot(snapshot, tenantId, trustedKeys),
  );
}

async function verifySnapshot(
  snapshot: AuditSnapshot,
  tenantId: string,
  trustedKeys: readonly KeyObject[],
): Promise<LogVerificationSummary> {
  const head = await snapshot.head();
  const checkpoints = await snapshot.checkpoints();
  const stored = head
    ? CompactTree.fromState(JSON.parse(head.frontier) as FrontierState)
    : new CompactTree();
  const pruned = head?.prunedSize ?? 0;
  const misplaced = new Set<number>();
  const nodes = createNodeChecker(snapshot);
  const start = await prunedFrontier(snapshot, pruned, nodes);
  let pruneRecorded = false;

  function toLeaf(row: EventTuple): StoredAuditLeaf {
    const [rawIndex, canonical, leafHashHex, , type, , , , , , , targetType, targetId] = row;
    const leafIndex = Number(rawIndex);
    if (type === 'audit.pruned' && targetType === 'audit_log' && Number(targetId) >= pruned) {
      // Pruning announces its end point first, then removes leaves up to it in chunks.
      pruneRecorded = true;
    }
    // Compared as hex in place by verifyLog; a non-string is malformed there.
    const storedLeafHash = typeof leafHashHex === 'string' ? leafHashHex : '';
    if (
      typeof canonical === 'string' &&
      (columnsSpellCanonical(tenantId, row) || canonical === canonicalTextOfColumns(tenantId, row))
    ) {
      return { leafIndex, canonicalBytes: canonical, storedLeafHash };
    }
    // The columns disagree with the bytes (or need the general canonicaliser): the event goes
    // through verifyLog's own comparison, which fails at this leaf, in order with every other
    // check, unless the two are the same JSON after all.
    let parsed: unknown;
    try {
      parsed = JSON.parse(String(canonical));
    } catch {
      parsed = undefined;
    }
    if ((parsed as { leafIndex?: unknown } | undefined)?.leafIndex !== leafIndex) {
      misplaced.add(leafIndex);
    }
    return {
      leafIndex,
      canonicalBytes: canonical,
      event: bodyFromRow(rowOf(tenantId, row)),
      storedLeafHash,
    };
  }

  async function* leaves(): AsyncGenerator<StoredAuditLeaf[]> {
    const events = snapshot.events(pruned - 1);
    let ahead: Promise<EventTuple[]> | undefined;
    for (;;) {
      // The subtrees the leaves verified so far complete, checked a few thousand at a time
      // (one query per level) while the next page is read.
      const [rows] = await Promise.all([ahead ?? events.next(PAGE), nodes.flush(NODE_BATCH)]);
      if (rows.length === 0) return;
      if (rows.length < PAGE) ahead = Promise.resolve([]);
      else if (snapshot.readAhead) {
        // The server reads the next page while this one is verified; a failure surfaces when
        // awaited, or not at all if verification stopped first.
        ahead = events.next(PAGE);
        ahead.catch(() => undefined);
      } else ahead = undefined;
      const page = new Array<StoredAuditLeaf>(rows.length);
      for (let i = 0; i < rows.length; i++) page[i] = toLeaf(rows[i]!);
      yield page;
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
      onSubtree: nodes.add,
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
  await nodes.flush(); // the subtrees the last leaf completed
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
 * The tree of the first `pruned` leaves, rebuilt from the leaf hashes retention kept; the
 * subtrees they complete go to the node checker, so the stored subtree hashes above them are
 * checked too.
 */
async function prunedFrontier(
  snapshot: AuditSnapshot,
  pruned: number,
  nodes: ReturnType<typeof createNodeChecker>,
): Promise<CompactTree> {
  const tree = new CompactTree();
  while (tree.size < pruned) {
    const rows = await snapshot.keptLeafHashes(tree.size, pruned, PAGE * 5);
    const before = tree.size;
    for (const [idx, hex] of rows) {
      let hash: Uint8Array | undefined;
      try {
        hash = hashFromHex(hex);
      } catch {
        hash = undefined;
      }
      if (Number(idx) !== tree.size || hash === undefined) break;
      tree.append(hash, nodes.add);
    }
    if (tree.size === before) {
      throw new AuditIntegrityError(
        'NODE_UNAVAILABLE',
        `the kept hash of pruned leaf ${tree.size} is missing or malformed`,
        { leafIndex: tree.size },
      );
    }
    await nodes.flush();
  }
  return tree;
}
