import { assertHash, HASH_SIZE, isIndex } from './bytes.ts';
import { AuditIntegrityError } from './errors.ts';
import { nodeHash } from './merkle.ts';
import { type MerkleHashSource, rootAt } from './proof.ts';

/**
 * An in-memory Merkle hash store: leaf hashes and every completed perfect subtree hash, one flat
 * byte array per level (32 bytes a node, about 64 MB for a million leaves). Any subtree is one
 * lookup, so proofs at a million leaves take microseconds. Use it in tests, in verifiers and as
 * the model for a database store.
 *
 * @example
 * ```ts
 * const store = new MemoryMerkleStore();
 * for (const e of events) store.append(leafHash(canonicalBytes(e)));
 * const proof = inclusionProof(3, store.size, store);
 * ```
 */
export class MemoryMerkleStore implements MerkleHashSource {
  // levels[l] holds counts[l] hashes of perfect subtrees of 2^l leaves.
  readonly #levels: Uint8Array[] = [];
  readonly #counts: number[] = [];

  /** Number of leaves. */
  get size(): number {
    return this.#counts[0] ?? 0;
  }

  /**
   * Appends a leaf hash and records every subtree it completes; returns the new size.
   *
   * @example
   * ```ts
   * store.append(leafHash(bytes));
   * ```
   */
  append(leaf: Uint8Array): number {
    assertHash(leaf, 'leaf hash');
    let level = 0;
    let hash = leaf;
    for (;;) {
      const index = this.#push(level, hash);
      if (index % 2 === 0) break;
      hash = nodeHash(this.#get(level, index - 1), hash);
      level++;
    }
    return this.size;
  }

  getLeafHash(index: number): Uint8Array | undefined {
    return this.getPerfectSubtreeHash(0, index);
  }

  getPerfectSubtreeHash(level: number, index: number): Uint8Array | undefined {
    if (!isIndex(level) || !isIndex(index) || index >= (this.#counts[level] ?? 0)) {
      return undefined;
    }
    return this.#get(level, index).slice();
  }

  /**
   * Root of the first `treeSize` leaves (default: all).
   *
   * @example
   * ```ts
   * store.root(); store.root(6);
   * ```
   */
  root(treeSize: number = this.size): Uint8Array {
    if (!isIndex(treeSize) || treeSize > this.size) {
      throw new AuditIntegrityError('TREE_RANGE_INVALID', `store has ${this.size} leaves`);
    }
    return rootAt(treeSize, this);
  }

  #get(level: number, index: number): Uint8Array {
    const offset = index * HASH_SIZE;
    return this.#levels[level]!.subarray(offset, offset + HASH_SIZE);
  }

  #push(level: number, hash: Uint8Array): number {
    const count = this.#counts[level] ?? 0;
    let bytes = this.#levels[level];
    if (bytes === undefined || (count + 1) * HASH_SIZE > bytes.byteLength) {
      const grown = new Uint8Array(Math.max(64, count * 2) * HASH_SIZE);
      if (bytes !== undefined) grown.set(bytes);
      bytes = grown;
      this.#levels[level] = grown;
    }
    bytes.set(hash, count * HASH_SIZE);
    this.#counts[level] = count + 1;
    return count;
  }
}
