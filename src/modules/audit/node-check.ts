import { bytesEqualHex, type SubtreeListener } from '../../core/audit/index.ts';
import type { AuditSnapshot } from './verify-source.ts';

export interface BadNode {
  level: number;
  index: number;
}

/**
 * Compares `audit_nodes` (the store proofs are served from) with the perfect subtree hashes the
 * verifier computes as it rebuilds the tree (`add`, given as `onSubtree`), so the tree is hashed
 * once. `flush` checks what was added since the last flush, one query per level; the first
 * missing or wrong node is kept and checking stops there.
 */
export function createNodeChecker(snapshot: Pick<AuditSnapshot, 'nodes'>) {
  // Per level, the first index added since the last flush and the hex hashes from there on:
  // subtrees of one level complete in index order, so each level's run is contiguous.
  const pending = new Map<number, { from: number; hashes: Uint8Array[] }>();
  let first: BadNode | undefined;

  const add: SubtreeListener = (level, index, hash) => {
    if (first !== undefined) return;
    count++;
    const run = pending.get(level);
    if (run === undefined) {
      pending.set(level, { from: index, hashes: [hash] });
    } else if (index === run.from + run.hashes.length) {
      run.hashes.push(hash);
    } else {
      throw new TypeError(`subtree ${level}/${index} added out of order`);
    }
  };

  let count = 0;

  /** Checks what was added, or with `whenAtLeast`, only once that many nodes wait. */
  async function flush(whenAtLeast = 0): Promise<void> {
    if (count < whenAtLeast) return;
    const levels = [...pending.keys()].sort((a, b) => a - b);
    try {
      for (const level of levels) {
        if (first !== undefined) return;
        const { from, hashes } = pending.get(level)!;
        const rows = await snapshot.nodes(level, from, from + hashes.length - 1);
        for (let i = 0; i < hashes.length; i++) {
          const row = rows[i];
          // Rows come in index order, so a missing one shifts the rest: the first gap shows.
          if (
            row === undefined ||
            Number(row[0]) !== from + i ||
            !bytesEqualHex(hashes[i]!, row[1])
          ) {
            first = { level, index: from + i };
            break;
          }
        }
      }
    } finally {
      pending.clear();
      count = 0;
    }
  }

  return { add, flush, firstBad: () => first };
}
