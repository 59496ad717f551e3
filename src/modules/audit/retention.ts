import { sql, type Kysely } from 'kysely';
import type { Clock } from '../../clock.ts';
import type { Dialect } from '../../db/database.ts';
import type { Database } from '../../db/schema.ts';
import { CompactTree, rangeNodes, toHex } from '../../core/audit/index.ts';
import { AppError } from '../../errors.ts';
import { lockTree, prunedSize, readTree, subtreeHashes } from './repository.ts';
import type { AuditService } from './service.ts';
import type { AuditSettingsService } from './settings.ts';
import { verifyTenantLog } from './verify.ts';

const DAY_MS = 86_400_000;
/** Leaves removed per transaction, so appends of the tenant never wait long for the lock. */
const CHUNK = 5000;

export interface PruneResult {
  tenantId: string;
  outcome: 'held' | 'nothing_due' | 'pruned';
  /** Events older than this are due (ISO time). */
  cutoff: string;
  /** Leaves below this have no event any more (their hashes stay). */
  prunedSize: number;
  /** Events removed by this run. */
  removed: number;
}

/**
 * Retention of the audit log. Pruning removes the events (content, actor, address...) of the
 * oldest leaves, those older than the tenant's retention, unless a legal hold is on. It keeps
 * what verification needs: each pruned leaf's hash moves to `audit_nodes` (level 0), so roots,
 * inclusion and consistency proofs of every size still verify, and `audit verify` resumes from
 * the kept hashes (see `verifyTenantLog`).
 *
 * Before removing anything the whole log is verified (a log that fails is never pruned: that
 * would destroy the evidence), a checkpoint is signed at the prune point, and an `audit.pruned`
 * event naming it is appended; then the leaves go, `CHUNK` per transaction.
 */
export function createAuditRetention(deps: {
  db: Kysely<Database>;
  dialect: Dialect;
  clock: Clock;
  log: AuditService;
  settings: AuditSettingsService;
}) {
  const { db, dialect, clock, log, settings } = deps;

  async function pruneTenant(tenantId: string, job = 'audit-prune'): Promise<PruneResult> {
    const policy = await settings.retentionOf(tenantId);
    const cutoff = new Date(clock.now().getTime() - policy.effectiveRetentionDays * DAY_MS);
    const cutoffIso = cutoff.toISOString();
    const already = await prunedSize(db, tenantId);
    const result = (outcome: PruneResult['outcome'], size: number, removed = 0): PruneResult => ({
      tenantId,
      outcome,
      cutoff: cutoffIso,
      prunedSize: size,
      removed,
    });
    if (policy.legalHold.enabled) return result('held', already);

    // The first leaf young enough to keep: everything before it is due.
    const firstKept = await db
      .selectFrom('audit_events')
      .select('leaf_index')
      .where('tenant_id', '=', tenantId)
      .where('leaf_index', '>=', already)
      .where('occurred_at', '>=', cutoffIso)
      .orderBy('leaf_index')
      .limit(1)
      .executeTakeFirst();
    const target = firstKept ? Number(firstKept.leaf_index) : (await readTree(db, tenantId)).size;
    if (target <= already) return result('nothing_due', already);
    await verifyTenantLog(db, tenantId, [log.signingKey().publicKey]).catch((error: unknown) => {
      throw new AppError('conflict', 'audit.prune_refused', 'audit log fails verification', {
        detail: 'The audit log does not verify; nothing is pruned. Run `custos audit verify`.',
        cause: error,
      });
    });

    // 1. Anchor the prune point: a signed checkpoint at `target`, an event naming it.
    await db.transaction().execute(async (trx) => {
      await lockTree(trx, dialect, tenantId);
      const nodes = rangeNodes(0, target);
      const hashes = await subtreeHashes(trx, tenantId, nodes);
      if (hashes.some((h) => h === undefined)) throw new TypeError('audit subtree hash missing');
      const head = CompactTree.fromState({
        treeSize: target,
        hashes: (hashes as Uint8Array[]).map(toHex),
      });
      await log.signHead(trx, tenantId, { treeSize: target, root: head.root() });
      await log.append(trx, {
        tenantId,
        type: 'audit.pruned',
        actor: { kind: 'system', id: job },
        target: { type: 'audit_log', id: String(target) },
        reason: 'retention',
      });
    });

    // 2. Move the leaf hashes aside and remove the events, a chunk per transaction.
    let at = already;
    while (at < target) {
      const end = Math.min(at + CHUNK, target);
      await db.transaction().execute(async (trx) => {
        await lockTree(trx, dialect, tenantId);
        await trx
          .insertInto('audit_nodes')
          .columns(['tenant_id', 'level', 'idx', 'hash'])
          .expression(
            trx
              .selectFrom('audit_events')
              .select(['tenant_id', sql<number>`0`.as('level'), 'leaf_index', 'leaf_hash'])
              .where('tenant_id', '=', tenantId)
              .where('leaf_index', '>=', at)
              .where('leaf_index', '<', end),
          )
          .execute();
        await trx
          .deleteFrom('audit_events')
          .where('tenant_id', '=', tenantId)
          .where('leaf_index', '>=', at)
          .where('leaf_index', '<', end)
          .execute();
        await trx
          .updateTable('audit_tree')
          .set({ pruned_size: end })
          .where('tenant_id', '=', tenantId)
          .execute();
      });
      at = end;
    }
    await log.publishToWitness([tenantId]);
    return result('pruned', target, target - already);
  }

  /** Prunes every tenant; a tenant whose log fails verification is reported, not pruned. */
  async function pruneAll(job = 'audit-prune') {
    const tenants = await db.selectFrom('audit_tree').select('tenant_id').execute();
    const results: (PruneResult | { tenantId: string; error: unknown })[] = [];
    for (const { tenant_id } of tenants) {
      try {
        results.push(await pruneTenant(tenant_id, job));
      } catch (error) {
        results.push({ tenantId: tenant_id, error });
      }
    }
    return results;
  }

  return { pruneTenant, pruneAll };
}

export type AuditRetention = ReturnType<typeof createAuditRetention>;
