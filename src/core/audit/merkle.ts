import { Buffer } from 'node:buffer';
import * as crypto from 'node:crypto';
import { assertHash } from './bytes.ts';

// RFC 6962 section 2.1 / RFC 9162 section 2.1.1 domain separation prefixes.
const LEAF_PREFIX = 0x00;
const NODE_PREFIX = 0x01;

// One-shot crypto.hash (Node >= 20.12) over a reused scratch buffer is about a third faster than
// createHash().update().digest(), which is most of the cost of verifying a log. Safe because
// hashing is synchronous and the scratch never escapes. The digest is taken as a 'binary'
// (latin1, one character per byte) string and copied into a Uint8Array: asking crypto.hash for
// a Buffer costs about three times as much as hashing a 65-byte node.
const oneShot = typeof crypto.hash === 'function' ? crypto.hash : undefined;
const SCRATCH_MAX = 64 * 1024; // larger inputs are hashed in parts rather than kept in memory
let scratch = Buffer.alloc(4096);
// Views of the scratch's first n bytes by n, made once: a new subarray per hash was garbage
// enough to show in the time spent verifying a log.
let views: Buffer[] = [];

function grow(): void {
  scratch = Buffer.alloc(SCRATCH_MAX);
  views = [];
}

function head(length: number): Buffer {
  return (views[length] ??= scratch.subarray(0, length));
}

function digestBytes(latin1: string): Uint8Array {
  const out = new Uint8Array(latin1.length);
  for (let i = 0; i < latin1.length; i++) out[i] = latin1.charCodeAt(i);
  return out;
}

function sha256(parts: readonly Uint8Array[], prefix: number): Uint8Array {
  let length = 1;
  for (const part of parts) length += part.byteLength;
  if (oneShot === undefined || length > SCRATCH_MAX) {
    const h = crypto.createHash('sha256').update(new Uint8Array([prefix]));
    for (const part of parts) h.update(part);
    return h.digest();
  }
  if (length > scratch.byteLength) grow();
  scratch[0] = prefix;
  let at = 1;
  for (const part of parts) {
    scratch.set(part, at);
    at += part.byteLength;
  }
  return digestBytes(oneShot('sha256', head(length), 'binary'));
}

// A UTF-16 code unit is at most 3 bytes of UTF-8, so text up to this length always fits.
const TEXT_MAX = Math.floor((SCRATCH_MAX - 1) / 3);

// Text is written into the scratch as UTF-8 directly: no intermediate byte array per leaf.
function sha256Text(text: string, prefix: number, encoding: 'binary' | 'hex'): string {
  if (oneShot === undefined || text.length > TEXT_MAX) {
    return crypto
      .createHash('sha256')
      .update(new Uint8Array([prefix]))
      .update(text, 'utf8')
      .digest(encoding);
  }
  if (text.length * 3 + 1 > scratch.byteLength) grow();
  scratch[0] = prefix;
  const length = 1 + scratch.write(text, 1, 'utf8');
  return oneShot('sha256', head(length), encoding);
}

/**
 * RFC 6962 leaf hash: SHA-256(0x00 || leaf bytes).
 *
 * @example
 * ```ts
 * leafHash(new Uint8Array()); // 6e340b9c... (the hash of the empty leaf)
 * ```
 */
export function leafHash(leaf: Uint8Array): Uint8Array {
  return sha256([leaf], LEAF_PREFIX);
}

/**
 * RFC 6962 leaf hash of text: SHA-256(0x00 || UTF-8 of `text`), the same as
 * `leafHash(new TextEncoder().encode(text))` (a lone surrogate becomes U+FFFD in both) without
 * the intermediate bytes: for canonical JSON read back from a database as a string.
 *
 * @example
 * ```ts
 * leafHashOfText('{"a":1}'); // equals leafHash(new TextEncoder().encode('{"a":1}'))
 * ```
 */
export function leafHashOfText(text: string): Uint8Array {
  return digestBytes(sha256Text(text, LEAF_PREFIX, 'binary'));
}

/**
 * `leafHashOfText` as 64 lower-case hex digits: for checking a leaf hash stored as hex with one
 * string comparison (about half the cost of validating the stored hex and comparing it with the
 * bytes digit by digit). A stored hash equal to it is well-formed by construction.
 *
 * @example
 * ```ts
 * if (leafHashHexOfText(row.canonical) !== row.leafHash) throw new Error('changed');
 * ```
 */
export function leafHashHexOfText(text: string): string {
  return sha256Text(text, LEAF_PREFIX, 'hex');
}

/**
 * RFC 6962 interior node hash: SHA-256(0x01 || left || right). Accepts any bytes, as the RFC
 * does; tree code only ever passes 32-byte hashes.
 *
 * @example
 * ```ts
 * const parent = nodeHash(leafHash(a), leafHash(b));
 * ```
 */
export function nodeHash(left: Uint8Array, right: Uint8Array): Uint8Array {
  return sha256([left, right], NODE_PREFIX);
}

/**
 * Root of the empty tree: SHA-256 of the empty string.
 *
 * @example
 * ```ts
 * toHex(emptyRoot()); // 'e3b0c442...b855'
 * ```
 */
export function emptyRoot(): Uint8Array {
  return crypto.createHash('sha256').digest();
}

/**
 * The largest power of two strictly smaller than `n` (n >= 2): the RFC 6962 split point `k`.
 * Uses arithmetic, not bit operators, so sizes above 2^31 stay correct.
 *
 * @example
 * ```ts
 * splitPoint(7); // 4
 * ```
 */
export function splitPoint(n: number): number {
  let k = 1;
  while (k * 2 < n) k *= 2;
  return k;
}

/**
 * The sizes of the perfect subtrees a range of `count` leaves decomposes into, largest first
 * (the set bits of `count`, from the highest), as powers-of-two exponents.
 *
 * @example
 * ```ts
 * perfectLevels(7); // [2, 1, 0]: 4 + 2 + 1 leaves
 * ```
 */
export function perfectLevels(count: number): number[] {
  const levels: number[] = [];
  let rest = count;
  let level = 0;
  let size = 1;
  while (size * 2 <= rest) {
    size *= 2;
    level++;
  }
  while (rest > 0) {
    if (size <= rest) {
      levels.push(level);
      rest -= size;
    }
    size /= 2;
    level--;
  }
  return levels;
}

/**
 * Folds the hashes of consecutive perfect subtrees (largest first, as in a compact range) into
 * the Merkle tree hash of their union: node(h0, node(h1, node(h2, ...))), which is exactly MTH
 * because the RFC 6962 split puts the largest power of two on the left. Empty: `emptyRoot()`.
 *
 * @example
 * ```ts
 * foldRight(tree.hashes); // same as tree.root()
 * ```
 */
export function foldRight(hashes: readonly Uint8Array[]): Uint8Array {
  const last = hashes[hashes.length - 1];
  if (last === undefined) return emptyRoot();
  let acc = last;
  for (let i = hashes.length - 2; i >= 0; i--) {
    acc = nodeHash(hashes[i]!, acc);
  }
  return acc;
}

/**
 * RFC 6962 Merkle tree hash (MTH) of a list of leaf hashes. Runs in O(n) hashes and O(log n)
 * extra memory; for many appends use `CompactTree`.
 *
 * @example
 * ```ts
 * const root = rootFromLeafHashes(events.map((e) => leafHash(canonicalBytes(e))));
 * ```
 */
export function rootFromLeafHashes(hashes: readonly Uint8Array[]): Uint8Array {
  // Stack of (level, hash) of perfect subtrees on the right edge: the compact range.
  const stack: Uint8Array[] = [];
  const levels: number[] = [];
  for (const hash of hashes) {
    assertHash(hash, 'leaf hash');
    let h = hash;
    let level = 0;
    while (levels.length > 0 && levels[levels.length - 1] === level) {
      levels.pop();
      h = nodeHash(stack.pop()!, h);
      level++;
    }
    stack.push(h);
    levels.push(level);
  }
  return foldRight(stack);
}
