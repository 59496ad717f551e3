import { describe, expect, it } from 'vitest';
import { toHex } from './bytes.ts';
import { CompactTree } from './compact-tree.ts';
import { leafHash, rootFromLeafHashes } from './merkle.ts';
import { MemoryMerkleStore } from './memory-store.ts';

const hashes = Array.from({ length: 130 }, (_, i) => leafHash(new TextEncoder().encode(`e${i}`)));
const invalid = expect.objectContaining({ code: 'FRONTIER_INVALID' });

describe('CompactTree', () => {
  it('has the RFC 6962 root of everything appended, at every size', () => {
    const tree = new CompactTree();
    const store = new MemoryMerkleStore();
    expect(toHex(tree.root())).toBe(toHex(rootFromLeafHashes([])));
    hashes.forEach((h, i) => {
      tree.append(h);
      store.append(h);
      const expected = toHex(rootFromLeafHashes(hashes.slice(0, i + 1)));
      expect(toHex(tree.root())).toBe(expected);
      expect(toHex(store.root())).toBe(expected);
    });
  });

  it('keeps one hash per set bit of its size', () => {
    const tree = new CompactTree();
    hashes.slice(0, 0b1011011).forEach((h) => tree.append(h));
    expect(tree.hashes).toHaveLength(5);
  });

  it('resumes from its JSON state or its bytes with the same roots afterwards', () => {
    for (const cut of [0, 1, 2, 3, 7, 8, 64, 65, 100]) {
      const whole = new CompactTree();
      hashes.forEach((h) => whole.append(h));

      const first = new CompactTree();
      hashes.slice(0, cut).forEach((h) => first.append(h));
      const fromJson = CompactTree.fromState(JSON.parse(JSON.stringify(first.toState())));
      const fromBytes = CompactTree.fromBytes(first.toBytes());
      for (const resumed of [fromJson, fromBytes]) {
        expect(resumed.size).toBe(cut);
        hashes.slice(cut).forEach((h) => resumed.append(h));
        expect(toHex(resumed.root())).toBe(toHex(whole.root()));
      }
    }
  });

  it('is not changed through a clone or a mutated input hash', () => {
    const tree = new CompactTree();
    const leaf = new Uint8Array(hashes[0]!);
    tree.append(leaf);
    leaf.fill(0);
    const copy = tree.clone();
    copy.append(hashes[1]!);
    expect(tree.size).toBe(1);
    expect(toHex(tree.root())).toBe(toHex(hashes[0]!));
  });

  it('refuses frontiers whose size and hashes disagree', () => {
    const h = toHex(hashes[0]!);
    expect(() => CompactTree.fromState({ treeSize: 3, hashes: [h] })).toThrow(invalid);
    expect(() => CompactTree.fromState({ treeSize: 1, hashes: ['zz'] })).toThrow(invalid);
    expect(() => CompactTree.fromState({ treeSize: -1, hashes: [] })).toThrow(invalid);
    expect(() => CompactTree.fromState(null as never)).toThrow(invalid);
    expect(() => CompactTree.fromBytes(new Uint8Array(9))).toThrow(invalid);
    expect(() => CompactTree.fromHashes(1, [new Uint8Array(31)])).toThrow(invalid);
  });

  it('refuses to append something that is not a 32-byte hash', () => {
    expect(() => new CompactTree().append(new Uint8Array(33))).toThrow(
      expect.objectContaining({ code: 'HASH_INVALID' }),
    );
  });
});
