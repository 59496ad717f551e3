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
import { bodyFromRow, EVENT_COLUMNS } from './event.ts';
import { createNodeChecker } from './node-check.ts';
import { allCheckpoints, prunedSize, readTree } from './repository.ts';

const PAGE = 1000;

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
        let claimed: unknown;
        try {
          claimed = (JSON.parse(row.canonical) as { leafIndex?: unknown }).leafIndex;
        } catch {
          claimed = undefined;
        }
        if (claimed !== leafIndex) misplaced.add(leafIndex);
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
        return {
          leafIndex,
          canonicalBytes: new TextEncoder().encode(row.canonical),
          event: bodyFromRow(row),
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
