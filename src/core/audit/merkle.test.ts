import { describe, expect, it } from 'vitest';
import { hashFromHex, toHex } from './bytes.ts';
import { CompactTree } from './compact-tree.ts';
import {
  emptyRoot,
  leafHash,
  leafHashHexOfText,
  leafHashOfText,
  nodeHash,
  perfectLevels,
  rootFromLeafHashes,
  splitPoint,
} from './merkle.ts';
import {
  CT_LEAVES,
  CT_NODE_HASHES,
  CT_ROOTS,
} from '../../../test/fixtures/audit/ct-merkle-vectors.ts';

const enc = (s: string) => new TextEncoder().encode(s);

// Independent oracle: MTH exactly as written in RFC 6962 section 2.1, recursive.
function referenceMth(leaves: readonly Uint8Array[]): Uint8Array {
  if (leaves.length === 0) return emptyRoot();
  if (leaves.length === 1) return leafHash(leaves[0]!);
  let k = 1;
  while (k * 2 < leaves.length) k *= 2;
  return nodeHash(referenceMth(leaves.slice(0, k)), referenceMth(leaves.slice(k)));
}

describe('RFC 6962 hashing', () => {
  // Expected values from transparency-dev/merkle, rfc6962/rfc6962_test.go (TestRFC6962Hasher).
  it('hashes the empty tree to SHA-256 of the empty string', () => {
    expect(toHex(emptyRoot())).toBe(
      'e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855',
    );
  });

  it('prefixes leaves with 0x00, so the empty leaf differs from the empty tree', () => {
    expect(toHex(leafHash(new Uint8Array()))).toBe(
      '6e340b9cffb37a989ca544e6bb780a2c78901d3fb33738768511a30617afa01d',
    );
    expect(toHex(leafHash(enc('L123456')))).toBe(
      '395aa064aa4c29f7010acfe3f25db9485bbd4b91897b6ad7ad547639252b4d56',
    );
  });

  it('prefixes interior nodes with 0x01', () => {
    expect(toHex(nodeHash(enc('N123'), enc('N456')))).toBe(
      'aa217fe888e47007fa15edab33c2b492a722cb106c64667fc2b044444de66bbb',
    );
  });

  it('does not confuse a node with a leaf of the concatenated children', () => {
    const a = leafHash(enc('Hello'));
    const b = leafHash(enc('World'));
    const joined = new Uint8Array([...a, ...b]);
    expect(toHex(nodeHash(a, b))).not.toBe(toHex(leafHash(joined)));
    expect(toHex(nodeHash(a, b))).not.toBe(toHex(nodeHash(b, a)));
  });
});

describe('known-answer roots of the Certificate Transparency test tree', () => {
  const leafHashes = CT_LEAVES.map(leafHash);

  it('hashes each of the 8 leaves to the published level-0 hashes', () => {
    expect(leafHashes.map(toHex)).toEqual(CT_NODE_HASHES[0]);
  });

  it.each([0, 1, 2, 3, 4, 5, 6, 7, 8])('computes the published root for %i leaves', (size) => {
    const expected = CT_ROOTS[size]!;
    expect(toHex(rootFromLeafHashes(leafHashes.slice(0, size)))).toBe(expected);
    expect(toHex(referenceMth(CT_LEAVES.slice(0, size)))).toBe(expected);
    const tree = new CompactTree();
    leafHashes.slice(0, size).forEach((h) => tree.append(h));
    expect(toHex(tree.root())).toBe(expected);
  });

  it('keeps the published compact-range frontier for every size', () => {
    // transparency-dev/merkle testonly/constants.go CompactTrees(): frontier per tree size.
    const nh = CT_NODE_HASHES;
    const expected: string[][] = [
      [],
      [nh[0]![0]!],
      [nh[1]![0]!],
      [nh[1]![0]!, nh[0]![2]!],
      [nh[2]![0]!],
      [nh[2]![0]!, nh[0]![4]!],
      [nh[2]![0]!, nh[1]![2]!],
      [nh[2]![0]!, nh[1]![2]!, nh[0]![6]!],
      [nh[3]![0]!],
    ];
    const tree = new CompactTree();
    expect(tree.toState().hashes).toEqual(expected[0]);
    leafHashes.forEach((h, i) => {
      tree.append(h);
      expect(tree.toState()).toEqual({ treeSize: i + 1, hashes: expected[i + 1] });
    });
  });
});

describe('tree arithmetic', () => {
  it('splits at the largest power of two strictly below n, beyond 32-bit sizes', () => {
    expect([2, 3, 4, 5, 8, 9].map(splitPoint)).toEqual([1, 2, 2, 4, 4, 8]);
    expect(splitPoint(2 ** 40 + 1)).toBe(2 ** 40);
    expect(splitPoint(2 ** 40)).toBe(2 ** 39);
  });

  it('decomposes a size into its perfect subtrees, largest first', () => {
    expect(perfectLevels(0)).toEqual([]);
    expect(perfectLevels(7)).toEqual([2, 1, 0]);
    expect(perfectLevels(2 ** 33 + 2)).toEqual([33, 1]);
  });
});

describe('rootFromLeafHashes', () => {
  it('matches the recursive RFC definition for every size up to 70', () => {
    const leaves = Array.from({ length: 70 }, (_, i) => enc(`leaf-${i}`));
    const hashes = leaves.map(leafHash);
    for (let n = 0; n <= 70; n++) {
      expect(toHex(rootFromLeafHashes(hashes.slice(0, n)))).toBe(
        toHex(referenceMth(leaves.slice(0, n))),
      );
    }
  });

  it('refuses a leaf hash that is not 32 bytes', () => {
    expect(() => rootFromLeafHashes([new Uint8Array(31)])).toThrow(
      expect.objectContaining({ code: 'HASH_INVALID' }),
    );
  });

  it('round-trips hex', () => {
    expect(toHex(hashFromHex(CT_ROOTS[8]!))).toBe(CT_ROOTS[8]);
  });
});

describe('leafHashOfText', () => {
  it('hashes the UTF-8 bytes of the text, as leafHash of the encoded text', () => {
    for (const text of ['', '{"a":1}', 'é 中文 😀 "\\\\', 'x'.repeat(70_000), '\ud800 lone']) {
      expect(toHex(leafHashOfText(text))).toBe(toHex(leafHash(new TextEncoder().encode(text))));
    }
  });

  it('gives the same hash as lower-case hex with leafHashHexOfText', () => {
    for (const text of ['', '{"a":1}', 'é 中文 😀 "\\\\', 'x'.repeat(70_000), '\ud800 lone']) {
      expect(leafHashHexOfText(text)).toBe(toHex(leafHash(new TextEncoder().encode(text))));
    }
    expect(leafHashHexOfText('')).toBe(
      '6e340b9cffb37a989ca544e6bb780a2c78901d3fb33738768511a30617afa01d',
    );
  });
});
