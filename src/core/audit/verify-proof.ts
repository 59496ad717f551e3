import { bytesEqual, HASH_SIZE, isIndex } from './bytes.ts';
import { emptyRoot, nodeHash } from './merkle.ts';

// Verification takes untrusted input (proofs from storage or the network), so every malformed
// input is a plain `false`, never an exception: a caller cannot mistake a crash for success, and
// there is exactly one way to fail.

function isHash(value: unknown): value is Uint8Array {
  return value instanceof Uint8Array && value.byteLength === HASH_SIZE;
}

function isHashList(value: unknown): value is readonly Uint8Array[] {
  return Array.isArray(value) && value.every(isHash);
}

/**
 * RFC 9162 section 2.1.3.2: verifies that `leafHash` is leaf `leafIndex` of the tree of
 * `treeSize` leaves whose root is `root`, given the inclusion `proof` (innermost hash first).
 * Returns `false` on any mismatch or malformed input (index out of range, hash not 32 bytes,
 * proof too short or too long); never throws.
 *
 * @example
 * ```ts
 * if (!verifyInclusion(5, 8, leafHash(bytes), proof, checkpointRoot)) reject();
 * ```
 */
export function verifyInclusion(
  leafIndex: number,
  treeSize: number,
  leafHash: Uint8Array,
  proof: readonly Uint8Array[],
  root: Uint8Array,
): boolean {
  if (!isIndex(leafIndex) || !isIndex(treeSize) || leafIndex >= treeSize) return false;
  if (!isHash(leafHash) || !isHash(root) || !isHashList(proof)) return false;
  let fn = leafIndex;
  let sn = treeSize - 1;
  let r = leafHash;
  for (const p of proof) {
    if (sn === 0) return false;
    if (fn % 2 === 1 || fn === sn) {
      r = nodeHash(p, r);
      if (fn % 2 === 0) {
        while (fn % 2 === 0 && fn !== 0) {
          fn /= 2;
          sn = Math.floor(sn / 2);
        }
      }
    } else {
      r = nodeHash(r, p);
    }
    fn = Math.floor(fn / 2);
    sn = Math.floor(sn / 2);
  }
  return sn === 0 && bytesEqual(r, root);
}

/**
 * RFC 9162 section 2.1.4.2: verifies that the tree of `m` leaves with root `rootM` is a prefix of
 * the tree of `n` leaves with root `rootN`, given the consistency `proof`.
 * When m == n the proof must be empty and the roots equal; when m == 0 the proof must be empty
 * and `rootM` the empty-tree root (the RFC leaves both cases to the caller). Returns `false` on
 * any mismatch or malformed input; never throws.
 *
 * @example
 * ```ts
 * if (!verifyConsistency(old.treeSize, cur.treeSize, oldRoot, curRoot, proof)) alarm();
 * ```
 */
export function verifyConsistency(
  m: number,
  n: number,
  rootM: Uint8Array,
  rootN: Uint8Array,
  proof: readonly Uint8Array[],
): boolean {
  if (!isIndex(m) || !isIndex(n) || m > n) return false;
  if (!isHash(rootM) || !isHash(rootN) || !isHashList(proof)) return false;
  if (m === n) return proof.length === 0 && bytesEqual(rootM, rootN);
  if (m === 0) return proof.length === 0 && bytesEqual(rootM, emptyRoot());
  // 1. An empty path fails.
  if (proof.length === 0) return false;
  // 2. If m is an exact power of two, the path implicitly starts with rootM.
  const path = isPowerOfTwo(m) ? [rootM, ...proof] : proof;
  // 3.-4.
  let fn = m - 1;
  let sn = n - 1;
  while (fn % 2 === 1) {
    fn = (fn - 1) / 2;
    sn = Math.floor(sn / 2);
  }
  // 5.
  let fr = path[0]!;
  let sr = path[0]!;
  // 6.
  for (let i = 1; i < path.length; i++) {
    const c = path[i]!;
    if (sn === 0) return false;
    if (fn % 2 === 1 || fn === sn) {
      fr = nodeHash(c, fr);
      sr = nodeHash(c, sr);
      if (fn % 2 === 0) {
        while (fn % 2 === 0 && fn !== 0) {
          fn /= 2;
          sn = Math.floor(sn / 2);
        }
      }
    } else {
      sr = nodeHash(sr, c);
    }
    fn = Math.floor(fn / 2);
    sn = Math.floor(sn / 2);
  }
  // 7.
  return sn === 0 && bytesEqual(fr, rootM) && bytesEqual(sr, rootN);
}

function isPowerOfTwo(x: number): boolean {
  let v = x;
  while (v > 1 && v % 2 === 0) v /= 2;
  return v === 1;
}
