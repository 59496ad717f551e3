import { Buffer } from 'node:buffer';
import { assertHash, hashFromHex, HASH_SIZE, isIndex, toHex } from './bytes.ts';
import { AuditIntegrityError } from './errors.ts';
import { foldRight, nodeHash, perfectLevels } from './merkle.ts';

/**
 * JSON form of a compact tree, for a database column: the tree size and the hex hashes of the
 * perfect subtrees on its right edge, largest (leftmost) first; one hash per set bit of
 * `treeSize`.
 */
export interface FrontierState {
  readonly treeSize: number;
  readonly hashes: readonly string[];
}

/** Told of a perfect subtree completed by an append: its level (>= 1), index and hash. */
export type SubtreeListener = (level: number, index: number, hash: Uint8Array) => void;

/**
 * An append-only Merkle tree that keeps only its frontier (the "compact range" [0, size)):
 * O(log n) memory, amortised one node hash per append, and the RFC 6962 root at any time.
 * Serialise it with `toState()` / `toBytes()` and resume with `fromState()` / `fromBytes()`.
 *
 * @example
 * ```ts
 * const tree = new CompactTree();
 * tree.append(leafHash(canonicalBytes(event)));
 * const saved = tree.toState(); // store it
 * const resumed = CompactTree.fromState(saved);
 * resumed.root(); // same root as tree.root()
 * ```
 */
export class CompactTree {
  #size: number;
  // Hashes of the right-edge perfect subtrees, largest first.
  #hashes: Uint8Array[];

  constructor() {
    this.#size = 0;
    this.#hashes = [];
  }

  /** Number of leaves appended so far. */
  get size(): number {
    return this.#size;
  }

  /** Copies of the frontier hashes, largest subtree first. */
  get hashes(): Uint8Array[] {
    return this.#hashes.map((h) => new Uint8Array(h));
  }

  /**
   * Appends one leaf hash (32 bytes) and returns the new tree size. `completed`, when given, is
   * called with every perfect subtree the leaf completes (level >= 1, index at that level, hash),
   * lowest first: the interior nodes a proof store keeps, computed here anyway.
   *
   * @example
   * ```ts
   * tree.append(leafHash(new TextEncoder().encode('event')));
   * tree.append(leaf, (level, index, hash) => expected.push({ level, index, hash }));
   * ```
   */
  append(leaf: Uint8Array, completed?: SubtreeListener): number {
    assertHash(leaf, 'leaf hash');
    let hash = leaf;
    // Each trailing 1 bit of the old size is a perfect subtree the new leaf completes.
    let size = this.#size;
    let level = 0;
    while (size % 2 === 1) {
      hash = nodeHash(this.#hashes.pop()!, hash);
      size = (size - 1) / 2;
      level++;
      completed?.(level, size, hash);
    }
    this.#hashes.push(hash === leaf ? new Uint8Array(leaf) : hash);
    this.#size++;
    return this.#size;
  }

  /**
   * The RFC 6962 root of the leaves appended so far (SHA-256("") when empty).
   *
   * @example
   * ```ts
   * toHex(new CompactTree().root()); // 'e3b0c442...'
   * ```
   */
  root(): Uint8Array {
    return foldRight(this.#hashes);
  }

  /** An independent copy. */
  clone(): CompactTree {
    return CompactTree.#make(this.#size, this.#hashes.slice());
  }

  /** JSON-friendly form; see `FrontierState`. */
  toState(): FrontierState {
    return { treeSize: this.#size, hashes: this.#hashes.map(toHex) };
  }

  /**
   * Binary form: 8-byte big-endian tree size followed by the frontier hashes.
   *
   * @example
   * ```ts
   * const blob = tree.toBytes();
   * CompactTree.fromBytes(blob).root();
   * ```
   */
  toBytes(): Uint8Array {
    const out = Buffer.alloc(8 + this.#hashes.length * HASH_SIZE);
    out.writeBigUInt64BE(BigInt(this.#size), 0);
    this.#hashes.forEach((h, i) => out.set(h, 8 + i * HASH_SIZE));
    return out;
  }

  /**
   * Resumes from `toState()` output; throws `FRONTIER_INVALID` when the size and the number of
   * hashes disagree or a hash is malformed.
   *
   * @example
   * ```ts
   * const tree = CompactTree.fromState(JSON.parse(row.frontier));
   * ```
   */
  static fromState(state: FrontierState): CompactTree {
    if (typeof state !== 'object' || state === null || !Array.isArray(state.hashes)) {
      throw new AuditIntegrityError('FRONTIER_INVALID', 'frontier must have treeSize and hashes');
    }
    const hashes = (state.hashes as readonly unknown[]).map((hex) => {
      try {
        if (typeof hex !== 'string') throw new TypeError('frontier hash must be hex');
        return hashFromHex(hex);
      } catch (error) {
        throw new AuditIntegrityError('FRONTIER_INVALID', 'frontier hash malformed', {
          cause: error,
        });
      }
    });
    return CompactTree.fromHashes(state.treeSize, hashes);
  }

  /** Resumes from `toBytes()` output; throws `FRONTIER_INVALID` on malformed input. */
  static fromBytes(bytes: Uint8Array): CompactTree {
    if (bytes.byteLength < 8 || (bytes.byteLength - 8) % HASH_SIZE !== 0) {
      throw new AuditIntegrityError('FRONTIER_INVALID', 'frontier bytes have a wrong length');
    }
    const buf = Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength);
    const size = buf.readBigUInt64BE(0);
    if (size > BigInt(Number.MAX_SAFE_INTEGER)) {
      throw new AuditIntegrityError('FRONTIER_INVALID', 'frontier tree size too large');
    }
    const hashes: Uint8Array[] = [];
    for (let off = 8; off < buf.byteLength; off += HASH_SIZE) {
      hashes.push(new Uint8Array(buf.subarray(off, off + HASH_SIZE)));
    }
    return CompactTree.fromHashes(Number(size), hashes);
  }

  /**
   * Builds a tree from its size and frontier hashes (largest subtree first), e.g. hashes read
   * from a subtree store. Throws `FRONTIER_INVALID` if their count is not popcount(treeSize).
   */
  static fromHashes(treeSize: number, hashes: readonly Uint8Array[]): CompactTree {
    if (!isIndex(treeSize)) {
      throw new AuditIntegrityError('FRONTIER_INVALID', 'frontier tree size must be an index');
    }
    if (hashes.length !== perfectLevels(treeSize).length) {
      throw new AuditIntegrityError(
        'FRONTIER_INVALID',
        `a tree of ${treeSize} leaves has ${perfectLevels(treeSize).length} frontier hashes, got ${hashes.length}`,
      );
    }
    for (const h of hashes) {
      if (!(h instanceof Uint8Array) || h.byteLength !== HASH_SIZE) {
        throw new AuditIntegrityError('FRONTIER_INVALID', 'frontier hash must be 32 bytes');
      }
    }
    return CompactTree.#make(
      treeSize,
      hashes.map((h) => new Uint8Array(h)),
    );
  }

  static #make(size: number, hashes: Uint8Array[]): CompactTree {
    const tree = new CompactTree();
    tree.#size = size;
    tree.#hashes = hashes;
    return tree;
  }
}
