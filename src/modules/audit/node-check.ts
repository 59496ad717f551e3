import { nodeHash, toHex, HASH_SIZE } from '../../core/audit/index.ts';
import type { Db } from './repository.ts';

export interface BadNode {
  level: number;
  index: number;
}

/**
 * Recomputes, from leaf hashes arriving in order, every perfect subtree they complete and
 * compares it with `audit_nodes` (the store proofs are served from), one query per level per
 * page. Records the first missing or wrong node; stops checking if leaves arrive out of order
 * (the log verifier reports that itself).
 */
export function createNodeChecker(db: Db, tenantId: string) {
  const frontier: Uint8Array[] = [];
  let next = 0;
  let broken = false;
  let first: BadNode | undefined;

  async function page(leaves: readonly { leafIndex: number; hash: Uint8Array }[]): Promise<void> {
    if (broken || first !== undefined) return;
    const expected = new Map<number, Map<number, string>>();
    for (const { leafIndex, hash } of leaves) {
      if (leafIndex !== next || hash.byteLength !== HASH_SIZE) {
        broken = true;
        return;
      }
      let h = hash;
      let index = leafIndex;
      let level = 0;
      while (index % 2 === 1) {
        h = nodeHash(frontier.pop()!, h);
        index = (index - 1) / 2;
        level++;
        let byIndex = expected.get(level);
        if (!byIndex) expected.set(level, (byIndex = new Map<number, string>()));
        byIndex.set(index, toHex(h));
      }
      frontier.push(h);
      next++;
    }
    for (const [level, byIndex] of [...expected].sort((a, b) => a[0] - b[0])) {
      const indexes = [...byIndex.keys()];
      const rows = await db
        .selectFrom('audit_nodes')
        .select(['idx', 'hash'])
        .where('tenant_id', '=', tenantId)
        .where('level', '=', level)
        .where('idx', '>=', Math.min(...indexes))
        .where('idx', '<=', Math.max(...indexes))
        .execute();
      const stored = new Map(rows.map((r) => [Number(r.idx), r.hash]));
      for (const [index, hash] of byIndex) {
        if (stored.get(index) !== hash) {
          first = { level, index };
          return;
        }
      }
    }
  }

  return { page, firstBad: () => first };
}
