import type { Kysely } from 'kysely';
import {
  canonicalBytes,
  CompactTree,
  leafHash,
  nodeHash,
  signCheckpoint,
  toHex,
} from '../../src/core/audit/index.ts';
import type { Database } from '../../src/db/schema.ts';
import { insertCheckpoint } from '../../src/modules/audit/repository.ts';
import { loadOrCreateSigningKey } from '../../src/modules/audit/signing-key.ts';

/**
 * What an attacker with the database and the signing key does: rewrites the events (`edit`),
 * optionally drops the last ones, recomputes every leaf hash, subtree hash and the tree head, and
 * replaces all checkpoints by one freshly signed with the real key. The log then verifies.
 */
export async function rewriteLog(
  db: () => Kysely<Database>,
  dataDir: string,
  tenantId: string,
  edit: (body: Record<string, unknown>, leafIndex: number) => void,
  keep?: number,
) {
  const rows = await db()
    .selectFrom('audit_events')
    .select(['leaf_index', 'canonical'])
    .where('tenant_id', '=', tenantId)
    .orderBy('leaf_index')
    .execute();
  const kept = rows.slice(0, keep ?? rows.length);
  await db()
    .deleteFrom('audit_events')
    .where('tenant_id', '=', tenantId)
    .where('leaf_index', '>=', kept.length)
    .execute();
  await db().deleteFrom('audit_nodes').where('tenant_id', '=', tenantId).execute();
  await db().deleteFrom('audit_checkpoints').where('tenant_id', '=', tenantId).execute();
  const tree = new CompactTree();
  const stack: Uint8Array[] = [];
  for (const row of kept) {
    const leafIndex = Number(row.leaf_index);
    const body = JSON.parse(row.canonical) as Record<string, unknown>;
    edit(body, leafIndex);
    const bytes = canonicalBytes(body);
    const leaf = leafHash(bytes);
    await db()
      .updateTable('audit_events')
      .set({ canonical: new TextDecoder().decode(bytes), leaf_hash: toHex(leaf) })
      .where('tenant_id', '=', tenantId)
      .where('leaf_index', '=', leafIndex)
      .execute();
    let hash = leaf;
    let index = leafIndex;
    let level = 0;
    while (index % 2 === 1) {
      hash = nodeHash(stack.pop()!, hash);
      index = (index - 1) / 2;
      level++;
      await db()
        .insertInto('audit_nodes')
        .values({ tenant_id: tenantId, level, idx: index, hash: toHex(hash) })
        .execute();
    }
    stack.push(hash);
    tree.append(leaf);
  }
  const key = loadOrCreateSigningKey(dataDir);
  const cp = signCheckpoint({ tenantId, treeSize: tree.size, root: tree.root() }, key.privateKey, {
    now: () => new Date(),
  });
  await insertCheckpoint(db(), cp);
  await db()
    .updateTable('audit_tree')
    .set({
      tree_size: tree.size,
      frontier: JSON.stringify(tree.toState()),
      checkpoint_size: tree.size,
      checkpoint_at: cp.timestamp,
    })
    .where('tenant_id', '=', tenantId)
    .execute();
}

/**
 * Edits an event's canonical bytes in place, `from` to `to` (its leaf hash left as it was): the
 * columns the database generates from the bytes follow; `audit verify` names the leaf.
 */
export async function editEventBytes(
  db: Kysely<Database>,
  tenantId: string,
  at: number,
  from: string,
  to: string,
): Promise<void> {
  const { canonical } = await db
    .selectFrom('audit_events')
    .select('canonical')
    .where('tenant_id', '=', tenantId)
    .where('leaf_index', '=', at)
    .executeTakeFirstOrThrow();
  if (!canonical.includes(from)) throw new Error(`leaf ${at} has no ${from}`);
  await db
    .updateTable('audit_events')
    .set({ canonical: canonical.replace(from, to) })
    .where('tenant_id', '=', tenantId)
    .where('leaf_index', '=', at)
    .execute();
}
