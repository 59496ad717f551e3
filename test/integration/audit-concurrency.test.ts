import { spawn } from 'node:child_process';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import {
  hashFromHex,
  MemoryMerkleStore,
  perfectSubtreeHash,
  toHex,
} from '../../src/core/audit/index.ts';
import { verifyTenantLog } from '../../src/modules/audit/verify.ts';
import { createTestContext, type TestContext } from '../helpers/context.ts';
import { dialectUnderTest } from '../helpers/database.ts';

const ROOT = path.resolve(import.meta.dirname, '..', '..');
const WORKER = 'test/helpers/audit-append-worker.ts';
const PER_PROCESS = 150;

function runWorker(args: string[]): Promise<{ status: number | null; stderr: string }> {
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, ['--import', 'tsx', WORKER, ...args], { cwd: ROOT });
    let stderr = '';
    child.stderr.on('data', (d: Buffer) => (stderr += d.toString()));
    child.on('error', reject);
    child.on('close', (status) => resolve({ status, stderr }));
  });
}

describe.skipIf(dialectUnderTest !== 'postgres')(
  'audit appends from two processes (PostgreSQL only: SQLite serialises writers in its one file, and Custos runs a single process on it)',
  () => {
    let ctx: TestContext;
    beforeAll(async () => {
      ctx = await createTestContext();
    });
    afterAll(async () => ctx?.close());

    it('keeps leaf indexes dense and the tree valid when two processes append at once', async () => {
      const owner = await ctx.tenant();
      // The owner's sign-in is already in the log: the two workers add to it.
      const before = await ctx.database.handle.db
        .selectFrom('audit_events')
        .select((eb) => eb.fn.countAll<string | number>().as('n'))
        .where('tenant_id', '=', owner.tenantId)
        .executeTakeFirstOrThrow();
      const base = Number(before.n);
      const url = ctx.database.url!;
      const common = [url, ctx.database.dataDir, owner.tenantId, String(PER_PROCESS)];
      const results = await Promise.all([runWorker([...common, 'a']), runWorker([...common, 'b'])]);
      for (const r of results) expect(r.stderr).toBe('');
      expect(results.map((r) => r.status)).toEqual([0, 0]);

      const summary = await verifyTenantLog(ctx.database.handle.db, owner.tenantId, [
        ctx.services.auditLog.signingKey().publicKey,
      ]);
      expect(summary.treeSize).toBe(base + 2 * PER_PROCESS);
      expect(summary.checkpointsVerified).toBeGreaterThan(2);

      const rows = await ctx.database.handle.db
        .selectFrom('audit_events')
        .select(['leaf_index', 'leaf_hash', 'actor_id'])
        .where('tenant_id', '=', owner.tenantId)
        .orderBy('leaf_index')
        .execute();
      expect(rows.map((r) => Number(r.leaf_index))).toEqual([
        ...Array(base + 2 * PER_PROCESS).keys(),
      ]);
      expect(rows.filter((r) => r.actor_id === 'a').length).toBe(PER_PROCESS);

      // Every stored subtree hash equals the one recomputed from the leaves.
      const store = new MemoryMerkleStore();
      for (const r of rows) store.append(hashFromHex(r.leaf_hash));
      const nodes = await ctx.database.handle.db
        .selectFrom('audit_nodes')
        .select(['level', 'idx', 'hash'])
        .where('tenant_id', '=', owner.tenantId)
        .execute();
      const n = base + 2 * PER_PROCESS;
      expect(nodes.length).toBe(n - n.toString(2).replaceAll('0', '').length); // n - popcount(n)
      for (const node of nodes) {
        const expected = perfectSubtreeHash(store, { level: node.level, index: Number(node.idx) });
        expect(node.hash).toBe(toHex(expected));
      }
    }, 60_000);
  },
);
