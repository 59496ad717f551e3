import { assertHash, isIndex } from './bytes.ts';
import { AuditIntegrityError } from './errors.ts';
import { foldRight, nodeHash, perfectLevels, splitPoint } from './merkle.ts';

/**
 * A perfect subtree: the 2^level leaves starting at leaf `index * 2^level`. Level 0 is a leaf.
 * These are the only nodes a store needs to keep: every proof element and every root is a fold
 * of at most log2(n) of them.
 */
export interface NodeId {
  readonly level: number;
  readonly index: number;
}

/**
 * What proofs need from storage. `getLeafHash` is required; `getPerfectSubtreeHash` lets a store
 * answer any subtree in one lookup (return `undefined` if not stored; the hash is then recomputed
 * from its children, which costs O(2^level)). A database implements it over a table keyed by
 * (tenant, level, index) filled when a subtree completes.
 */
export interface MerkleHashSource {
  getLeafHash(index: number): Uint8Array | undefined;
  getPerfectSubtreeHash?(level: number, index: number): Uint8Array | undefined;
}

/**
 * A proof before its hashes are fetched: one entry per proof element, each the perfect subtrees
 * (largest first) whose fold is that element. Lets an async store fetch all of `plan.flat()` in
 * one query, then call `proofFromPlan`.
 */
export type ProofPlan = ReadonlyArray<readonly NodeId[]>;

type Range = readonly [start: number, end: number];

/**
 * The perfect subtrees covering leaves [start, end), largest first. Valid for the ranges that
 * RFC 6962 recursion produces, whose start is aligned to the subtree sizes.
 *
 * @example
 * ```ts
 * rangeNodes(0, 7); // [{level:2,index:0}, {level:1,index:2}, {level:0,index:6}]
 * ```
 */
export function rangeNodes(start: number, end: number): NodeId[] {
  const nodes: NodeId[] = [];
  let at = start;
  for (const level of perfectLevels(end - start)) {
    const width = 2 ** level;
    nodes.push({ level, index: at / width });
    at += width;
  }
  return nodes;
}

/**
 * Plan of the RFC 9162 section 2.1.3.1 inclusion proof PATH(leafIndex, D[treeSize]), innermost
 * element first. Throws `TREE_RANGE_INVALID` unless 0 <= leafIndex < treeSize.
 *
 * @example
 * ```ts
 * const plan = inclusionProofPlan(5, 8); // [[{level:0,index:4}], [{level:1,index:3}], [{level:2,index:0}]]
 * ```
 */
export function inclusionProofPlan(leafIndex: number, treeSize: number): ProofPlan {
  if (!isIndex(leafIndex) || !isIndex(treeSize) || leafIndex >= treeSize) {
    throw new AuditIntegrityError(
      'TREE_RANGE_INVALID',
      `no leaf ${leafIndex} in a tree of ${treeSize}`,
    );
  }
  const ranges: Range[] = [];
  let start = 0;
  let size = treeSize;
  let m = leafIndex;
  while (size > 1) {
    const k = splitPoint(size);
    if (m < k) {
      ranges.push([start + k, start + size]);
      size = k;
    } else {
      ranges.push([start, start + k]);
      start += k;
      m -= k;
      size -= k;
    }
  }
  return ranges.reverse().map(([a, b]) => rangeNodes(a, b));
}

/**
 * Plan of the RFC 9162 section 2.1.4.1 consistency proof PROOF(m, D[n]), innermost element first.
 * Empty when m == n or m == 0. Throws `TREE_RANGE_INVALID` unless 0 <= m <= n.
 *
 * @example
 * ```ts
 * consistencyProofPlan(6, 8); // elements: leaves [4,6), [6,8), [0,4)
 * ```
 */
export function consistencyProofPlan(m: number, n: number): ProofPlan {
  if (!isIndex(m) || !isIndex(n) || m > n) {
    throw new AuditIntegrityError('TREE_RANGE_INVALID', `no consistency proof from ${m} to ${n}`);
  }
  if (m === 0 || m === n) return [];
  const ranges: Range[] = [];
  let start = 0;
  let size = n;
  let first = m;
  let whole = true; // the `b` flag of SUBPROOF: still on the left edge of the tree
  while (first !== size) {
    const k = splitPoint(size);
    if (first <= k) {
      ranges.push([start + k, start + size]);
      size = k;
    } else {
      ranges.push([start, start + k]);
      start += k;
      first -= k;
      size -= k;
      whole = false;
    }
  }
  if (!whole) ranges.push([start, start + size]);
  return ranges.reverse().map(([a, b]) => rangeNodes(a, b));
}

/**
 * Turns a plan into proof hashes, given the hashes of `plan.flat()` in that order.
 *
 * @example
 * ```ts
 * const plan = inclusionProofPlan(i, n);
 * const hashes = await db.subtreeHashes(tenantId, plan.flat()); // one query
 * const proof = proofFromPlan(plan, hashes);
 * ```
 */
export function proofFromPlan(plan: ProofPlan, hashes: readonly Uint8Array[]): Uint8Array[] {
  let at = 0;
  const proof = plan.map((nodes) => {
    const parts = hashes.slice(at, at + nodes.length);
    at += nodes.length;
    if (parts.length !== nodes.length) {
      throw new AuditIntegrityError('NODE_UNAVAILABLE', 'fewer hashes than the plan needs');
    }
    parts.forEach((h) => assertHash(h, 'subtree hash'));
    return foldRight(parts);
  });
  if (at !== hashes.length) {
    throw new TypeError('more hashes than the plan needs');
  }
  return proof;
}

/**
 * Hash of one perfect subtree, from the store when it has it, else recomputed from children.
 * Throws `NODE_UNAVAILABLE` when a needed leaf is missing.
 *
 * @example
 * ```ts
 * perfectSubtreeHash(store, { level: 2, index: 1 }); // MTH of leaves 4..7
 * ```
 */
export function perfectSubtreeHash(source: MerkleHashSource, node: NodeId): Uint8Array {
  const { level, index } = node;
  if (level === 0) {
    const leaf = source.getLeafHash(index);
    if (leaf === undefined) {
      throw new AuditIntegrityError('NODE_UNAVAILABLE', `leaf ${index} unavailable`);
    }
    assertHash(leaf, 'leaf hash');
    return leaf;
  }
  const stored = source.getPerfectSubtreeHash?.(level, index);
  if (stored !== undefined) {
    assertHash(stored, 'subtree hash');
    return stored;
  }
  return nodeHash(
    perfectSubtreeHash(source, { level: level - 1, index: index * 2 }),
    perfectSubtreeHash(source, { level: level - 1, index: index * 2 + 1 }),
  );
}

function resolve(plan: ProofPlan, source: MerkleHashSource): Uint8Array[] {
  return plan.map((nodes) => foldRight(nodes.map((node) => perfectSubtreeHash(source, node))));
}

/**
 * RFC 9162 section 2.1.3.1 inclusion proof of leaf `leafIndex` in the tree of the first
 * `treeSize` leaves, innermost hash first. O(log n) lookups when the source stores subtrees.
 *
 * @example
 * ```ts
 * const proof = inclusionProof(5, 8, store);
 * verifyInclusion(5, 8, store.getLeafHash(5)!, proof, store.root(8)); // true
 * ```
 */
export function inclusionProof(
  leafIndex: number,
  treeSize: number,
  source: MerkleHashSource,
): Uint8Array[] {
  return resolve(inclusionProofPlan(leafIndex, treeSize), source);
}

/**
 * RFC 9162 section 2.1.4.1 consistency proof that the tree of `m` leaves is a prefix of the tree
 * of `n` leaves. Empty when m == n or m == 0.
 *
 * @example
 * ```ts
 * const proof = consistencyProof(6, 8, store);
 * verifyConsistency(6, 8, store.root(6), store.root(8), proof); // true
 * ```
 */
export function consistencyProof(m: number, n: number, source: MerkleHashSource): Uint8Array[] {
  return resolve(consistencyProofPlan(m, n), source);
}

/**
 * Root of the tree of the first `treeSize` leaves held by `source` (any past size).
 *
 * @example
 * ```ts
 * rootAt(6, store); // the root a checkpoint at size 6 signed
 * ```
 */
export function rootAt(treeSize: number, source: MerkleHashSource): Uint8Array {
  if (!isIndex(treeSize)) {
    throw new AuditIntegrityError('TREE_RANGE_INVALID', 'tree size must be an index');
  }
  return foldRight(rangeNodes(0, treeSize).map((node) => perfectSubtreeHash(source, node)));
}
