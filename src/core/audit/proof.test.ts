import { describe, expect, it } from 'vitest';
import {
  CT_CONSISTENCY_PROOFS,
  CT_INCLUSION_PROOFS,
  CT_LEAVES,
  CT_ROOTS,
} from '../../../test/fixtures/audit/ct-merkle-vectors.ts';
import { hashFromHex, toHex } from './bytes.ts';
import { leafHash } from './merkle.ts';
import { MemoryMerkleStore } from './memory-store.ts';
import {
  consistencyProof,
  consistencyProofPlan,
  inclusionProof,
  inclusionProofPlan,
  type MerkleHashSource,
  proofFromPlan,
  rootAt,
} from './proof.ts';
import { verifyConsistency, verifyInclusion } from './verify-proof.ts';

const enc = (s: string) => new TextEncoder().encode(s);

function storeOf(leaves: readonly Uint8Array[]): MemoryMerkleStore {
  const store = new MemoryMerkleStore();
  for (const leaf of leaves) store.append(leafHash(leaf));
  return store;
}

function flipped(proof: readonly Uint8Array[], at: number): Uint8Array[] {
  return proof.map((h, i) => {
    if (i !== at) return h;
    const copy = new Uint8Array(h); // not h.slice(): on a Buffer that is a view
    copy[0]! ^= 0x10;
    return copy;
  });
}

const ct = storeOf(CT_LEAVES);

describe('inclusion proofs against the Certificate Transparency vectors', () => {
  for (const { leafIndex, treeSize, proof } of CT_INCLUSION_PROOFS) {
    it(`generates and verifies the published proof for leaf ${leafIndex} of ${treeSize}`, () => {
      const generated = inclusionProof(leafIndex, treeSize, ct);
      expect(generated.map(toHex)).toEqual(proof);
      const root = hashFromHex(CT_ROOTS[treeSize]!);
      const leaf = leafHash(CT_LEAVES[leafIndex]!);
      expect(verifyInclusion(leafIndex, treeSize, leaf, proof.map(hashFromHex), root)).toBe(true);
    });
  }
});

describe('consistency proofs against the Certificate Transparency vectors', () => {
  it.each(CT_CONSISTENCY_PROOFS)('generates and verifies the published proof $m -> $n', (v) => {
    expect(consistencyProof(v.m, v.n, ct).map(toHex)).toEqual(v.proof);
    const rootM = hashFromHex(CT_ROOTS[v.m]!);
    const rootN = hashFromHex(CT_ROOTS[v.n]!);
    expect(verifyConsistency(v.m, v.n, rootM, rootN, v.proof.map(hashFromHex))).toBe(true);
  });
});

describe('proof plans', () => {
  const ids = (plan: ReturnType<typeof inclusionProofPlan>) =>
    plan.map((nodes) => nodes.map(({ level, index }) => `${level}.${index}`).join('+'));

  // Node layouts as in transparency-dev/merkle proof/proof_test.go (TestInclusion,
  // TestConsistency), where a missing right-edge parent is rehashed from its parts.
  it('names the subtrees of an inclusion proof, splitting a right edge into perfect parts', () => {
    expect(ids(inclusionProofPlan(0, 7))).toEqual(['0.1', '1.1', '1.2+0.6']);
    expect(ids(inclusionProofPlan(4, 7))).toEqual(['0.5', '0.6', '2.0']);
    expect(ids(inclusionProofPlan(6, 7))).toEqual(['1.2', '2.0']);
  });

  it('names the subtrees of a consistency proof', () => {
    expect(ids(consistencyProofPlan(5, 7))).toEqual(['0.4', '0.5', '0.6', '2.0']);
    expect(ids(consistencyProofPlan(3, 7))).toEqual(['0.2', '0.3', '1.0', '1.2+0.6']);
    expect(ids(consistencyProofPlan(7, 8))).toEqual(['0.6', '0.7', '1.2', '2.0']);
    expect(ids(consistencyProofPlan(4, 7))).toEqual(['1.2+0.6']);
  });
});

describe('proofs for every tree size from 1 to 64', () => {
  const leaves = Array.from({ length: 64 }, (_, i) => enc(`event ${i}`));
  const store = storeOf(leaves);
  const roots = Array.from({ length: 65 }, (_, n) => store.root(n));
  const other = leafHash(enc('not in the log'));

  it('verifies every generated inclusion proof and rejects every tampered one', () => {
    for (let n = 1; n <= 64; n++) {
      const root = roots[n]!;
      for (let i = 0; i < n; i++) {
        const leaf = store.getLeafHash(i)!;
        const proof = inclusionProof(i, n, store);
        expect(verifyInclusion(i, n, leaf, proof, root)).toBe(true);

        const bad: [string, boolean][] = [
          ['other leaf', verifyInclusion(i, n, other, proof, root)],
          ['other root', verifyInclusion(i, n, leaf, proof, roots[n - 1]!)],
          ['size * 2', verifyInclusion(i, n * 2, leaf, proof, root)],
          ['extra element', verifyInclusion(i, n, leaf, [...proof, root], root)],
          ['preceding element', verifyInclusion(i, n, leaf, [root, ...proof], root)],
          ['index out of range', verifyInclusion(n, n, leaf, proof, root)],
        ];
        if (i + 1 < n) bad.push(['index + 1', verifyInclusion(i + 1, n, leaf, proof, root)]);
        if (i > 0) bad.push(['index - 1', verifyInclusion(i - 1, n, leaf, proof, root)]);
        if ((i ^ 2) < n) bad.push(['index ^ 2', verifyInclusion(i ^ 2, n, leaf, proof, root)]);
        if (n > 1 && Math.floor(n / 2) > i) {
          bad.push(['size / 2', verifyInclusion(i, Math.floor(n / 2), leaf, proof, root)]);
        }
        if (proof.length > 0) {
          bad.push(['missing element', verifyInclusion(i, n, leaf, proof.slice(0, -1), root)]);
          bad.push(['short element', verifyInclusion(i, n, leaf, [proof[0]!.slice(1)], root)]);
        }
        proof.forEach((_, at) => {
          bad.push([`flipped ${at}`, verifyInclusion(i, n, leaf, flipped(proof, at), root)]);
        });
        expect(bad.filter(([, ok]) => ok).map(([what]) => `${i}/${n}: ${what}`)).toEqual([]);
      }
    }
  });

  it('verifies every generated consistency proof and rejects every tampered one', () => {
    for (let n = 1; n <= 64; n++) {
      for (let m = 1; m <= n; m++) {
        const rootM = roots[m]!;
        const rootN = roots[n]!;
        const proof = consistencyProof(m, n, store);
        expect(verifyConsistency(m, n, rootM, rootN, proof)).toBe(true);
        if (m === n) {
          expect(proof).toEqual([]);
          expect(verifyConsistency(m, n, rootM, rootN, [rootM])).toBe(false);
          continue;
        }
        const bad: [string, boolean][] = [
          ['size m - 1', verifyConsistency(m - 1, n, rootM, rootN, proof)],
          ['size m + 1', verifyConsistency(m + 1, n, rootM, rootN, proof)],
          ['size n * 2', verifyConsistency(m, n * 2, rootM, rootN, proof)],
          ['wrong root m', verifyConsistency(m, n, roots[m - 1]!, rootN, proof)],
          ['wrong root n', verifyConsistency(m, n, rootM, roots[n - 1]!, proof)],
          ['swapped roots', verifyConsistency(m, n, rootN, rootM, proof)],
          ['empty proof', verifyConsistency(m, n, rootM, rootN, [])],
          ['trailing root', verifyConsistency(m, n, rootM, rootN, [...proof, rootN])],
          ['preceding root', verifyConsistency(m, n, rootM, rootN, [rootM, ...proof])],
          ['truncated', verifyConsistency(m, n, rootM, rootN, proof.slice(0, -1))],
          ['m > n', verifyConsistency(n, m, rootN, rootM, proof)],
        ];
        if ((m ^ 2) <= n && (m ^ 2) !== m) {
          bad.push(['size m ^ 2', verifyConsistency(m ^ 2, n, rootM, rootN, proof)]);
        }
        if (Math.floor(n / 2) >= m) {
          bad.push(['size n / 2', verifyConsistency(m, Math.floor(n / 2), rootM, rootN, proof)]);
        }
        proof.forEach((_, at) => {
          bad.push([`flipped ${at}`, verifyConsistency(m, n, rootM, rootN, flipped(proof, at))]);
        });
        expect(bad.filter(([, ok]) => ok).map(([what]) => `${m}->${n}: ${what}`)).toEqual([]);
      }
    }
  });

  it('treats the empty tree as a prefix of every tree, with an empty proof only', () => {
    expect(verifyConsistency(0, 5, roots[0]!, roots[5]!, [])).toBe(true);
    expect(verifyConsistency(0, 5, roots[1]!, roots[5]!, [])).toBe(false);
    expect(verifyConsistency(0, 5, roots[0]!, roots[5]!, [roots[0]!])).toBe(false);
    expect(consistencyProof(0, 5, store)).toEqual([]);
  });

  it('builds the same proofs from a plan and a batch of fetched hashes', () => {
    for (const [i, n] of [
      [0, 1],
      [5, 7],
      [40, 63],
    ] as const) {
      const plan = inclusionProofPlan(i, n);
      const hashes = plan.flat().map((id) => store.getPerfectSubtreeHash(id.level, id.index)!);
      expect(proofFromPlan(plan, hashes).map(toHex)).toEqual(
        inclusionProof(i, n, store).map(toHex),
      );
    }
    const plan = consistencyProofPlan(21, 60);
    const hashes = plan.flat().map((id) => store.getPerfectSubtreeHash(id.level, id.index)!);
    expect(proofFromPlan(plan, hashes).map(toHex)).toEqual(
      consistencyProof(21, 60, store).map(toHex),
    );
    expect(() => proofFromPlan(plan, hashes.slice(1))).toThrow(
      expect.objectContaining({ code: 'NODE_UNAVAILABLE' }),
    );
  });

  it('recomputes subtrees from leaf hashes when the source stores only leaves', () => {
    const leavesOnly: MerkleHashSource = { getLeafHash: (i) => store.getLeafHash(i) };
    const hex = (hashes: Uint8Array[]) => hashes.map(toHex);
    expect(hex(inclusionProof(13, 50, leavesOnly))).toEqual(hex(inclusionProof(13, 50, store)));
    expect(hex(consistencyProof(13, 50, leavesOnly))).toEqual(hex(consistencyProof(13, 50, store)));
    expect(toHex(rootAt(50, leavesOnly))).toBe(toHex(roots[50]!));
  });

  it('reports a missing leaf as NODE_UNAVAILABLE', () => {
    const holes: MerkleHashSource = {
      getLeafHash: (i) => (i === 3 ? undefined : store.getLeafHash(i)),
    };
    expect(() => inclusionProof(0, 8, holes)).toThrow(
      expect.objectContaining({ code: 'NODE_UNAVAILABLE' }),
    );
  });

  it('refuses proofs outside the tree with TREE_RANGE_INVALID', () => {
    const range = expect.objectContaining({ code: 'TREE_RANGE_INVALID' });
    expect(() => inclusionProof(5, 5, store)).toThrow(range);
    expect(() => inclusionProof(-1, 5, store)).toThrow(range);
    expect(() => inclusionProof(0, 0, store)).toThrow(range);
    expect(() => inclusionProof(1.5, 5, store)).toThrow(range);
    expect(() => consistencyProof(6, 5, store)).toThrow(range);
    expect(() => store.root(65)).toThrow(range);
  });
});

describe('proofs at a million leaves', () => {
  it('generates and verifies inclusion and consistency proofs in well under 5 ms', () => {
    const store = new MemoryMerkleStore();
    const n = 1_000_000;
    const seed = new Uint8Array(32);
    for (let i = 0; i < n; i++) {
      seed[0] = i & 0xff;
      seed[1] = (i >> 8) & 0xff;
      seed[2] = (i >> 16) & 0xff;
      store.append(leafHash(seed));
    }
    const root = store.root();
    const started = performance.now();
    const rounds = 100;
    for (let r = 0; r < rounds; r++) {
      const i = (r * 7919) % n;
      const proof = inclusionProof(i, n, store);
      expect(verifyInclusion(i, n, store.getLeafHash(i)!, proof, root)).toBe(true);
      const m = 1 + ((r * 104729) % (n - 1));
      const cproof = consistencyProof(m, n, store);
      expect(verifyConsistency(m, n, store.root(m), root, cproof)).toBe(true);
    }
    const perRound = (performance.now() - started) / rounds;
    // Both proofs, both verifications and a past root, per round.
    expect(perRound).toBeLessThan(5);
  });
});
