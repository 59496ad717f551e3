import { describe, expect, it } from 'vitest';
import { toHex } from './bytes.ts';
import { canonicalBytes } from './canonical.ts';
import { type SignedCheckpoint, signCheckpoint } from './checkpoint.ts';
import { generateCheckpointKeyPair } from './keys.ts';
import { CompactTree } from './compact-tree.ts';
import { leafHash, nodeHash } from './merkle.ts';
import { MemoryMerkleStore } from './memory-store.ts';
import type { StoredAuditLeaf } from './leaf-reader.ts';
import { verifyLog } from './verify-log.ts';

const tenantId = 'tenant-a';
const clock = { now: () => new Date('2026-01-15T09:00:00.000Z') };
const keys = generateCheckpointKeyPair();
const publicKeys = [keys.publicKey];

type Row = { leafIndex: number; canonicalBytes: Uint8Array; storedLeafHash: Uint8Array };

function eventAt(i: number) {
  return { type: 'contact.updated', seq: i, actor: `user-${i % 3}`, fields: ['email', 'phone'] };
}

function row(leafIndex: number, event: unknown): Row {
  const bytes = canonicalBytes(event);
  return { leafIndex, canonicalBytes: bytes, storedLeafHash: leafHash(bytes) };
}

/** A clean log of `n` events with signed checkpoints at the given sizes. */
function makeLog(n: number, checkpointSizes: readonly number[]) {
  const rows = Array.from({ length: n }, (_, i) => row(i, eventAt(i)));
  const store = new MemoryMerkleStore();
  rows.forEach((r) => store.append(r.storedLeafHash));
  const checkpoints = checkpointSizes.map((treeSize) =>
    signCheckpoint({ tenantId, treeSize, root: store.root(treeSize) }, keys.privateKey, clock),
  );
  return { rows, store, checkpoints };
}

async function* streamed<T>(items: readonly T[]): AsyncGenerator<T> {
  for (const item of items) yield item;
}

const failure = (code: string, leafIndex: number, checkpointTreeSize?: number) =>
  expect.objectContaining({
    name: 'AuditIntegrityError',
    code,
    leafIndex,
    ...(checkpointTreeSize === undefined ? {} : { checkpointTreeSize }),
  });

describe('verifyLog', () => {
  const { rows, store, checkpoints } = makeLog(10, [4, 8, 10]);
  const verify = (leaves: readonly StoredAuditLeaf[], cps: readonly unknown[] = checkpoints) =>
    verifyLog({ tenantId, leaves: streamed(leaves), checkpoints: cps, publicKeys });

  it('accepts an untouched log and reports its root and signed coverage', async () => {
    const summary = await verify(rows);
    expect(summary).toMatchObject({
      startIndex: 0,
      treeSize: 10,
      leavesVerified: 10,
      checkpointsVerified: 3,
      anchoredTreeSize: 10,
    });
    expect(toHex(summary.root)).toBe(toHex(store.root()));
  });

  it('accepts events given as objects in any key order', async () => {
    const leaves = rows.map((r, i) => {
      const { fields, actor, seq, type } = eventAt(i);
      return {
        leafIndex: r.leafIndex,
        event: { fields, actor, seq, type },
        storedLeafHash: r.storedLeafHash,
      };
    });
    await expect(verify(leaves)).resolves.toMatchObject({ treeSize: 10 });
  });

  it('detects a changed event at its own index', async () => {
    const changed = rows.map((r) =>
      r.leafIndex === 5 ? { ...r, canonicalBytes: canonicalBytes({ ...eventAt(5), seq: 50 }) } : r,
    );
    await expect(verify(changed)).rejects.toThrow(failure('LEAF_HASH_MISMATCH', 5));
  });

  it('detects an event whose object and stored bytes disagree', async () => {
    const leaves = rows.map((r) => (r.leafIndex === 2 ? { ...r, event: eventAt(3) } : r));
    await expect(verify(leaves)).rejects.toThrow(failure('LEAF_HASH_MISMATCH', 2));
  });

  it('detects a changed event whose stored hash was rewritten too, via the next checkpoint', async () => {
    const rewritten = rows.map((r) => (r.leafIndex === 5 ? row(5, { ...eventAt(5), seq: 50 }) : r));
    await expect(verify(rewritten)).rejects.toThrow(failure('ROOT_MISMATCH', 4, 8));
  });

  it('detects a removed event at the missing index', async () => {
    const removed = rows.filter((r) => r.leafIndex !== 6);
    await expect(verify(removed)).rejects.toThrow(failure('LEAF_INDEX_GAP', 6));
  });

  it('detects events removed at the end as a truncated log', async () => {
    await expect(verify(rows.slice(0, 9))).rejects.toThrow(failure('LOG_TRUNCATED', 9, 10));
    await expect(
      verifyLog({ tenantId, leaves: rows.slice(0, 9), publicKeys, expectedTreeSize: 10 }),
    ).rejects.toThrow(failure('LOG_TRUNCATED', 9));
  });

  it('detects a reordered pair at the first displaced index', async () => {
    const swapped = [...rows];
    [swapped[3], swapped[4]] = [swapped[4]!, swapped[3]!];
    await expect(verify(swapped)).rejects.toThrow(failure('LEAF_INDEX_ORDER', 3));
  });

  it('detects a pair whose contents were swapped under unchanged indexes', async () => {
    const swapped = rows.map((r) => {
      if (r.leafIndex === 2) return { ...rows[3]!, leafIndex: 2 };
      if (r.leafIndex === 3) return { ...rows[2]!, leafIndex: 3 };
      return r;
    });
    await expect(verify(swapped)).rejects.toThrow(failure('ROOT_MISMATCH', 0, 4));
  });

  it('detects an inserted event that reuses an index', async () => {
    const inserted = [...rows.slice(0, 6), row(5, { type: 'forged' }), ...rows.slice(6)];
    await expect(verify(inserted)).rejects.toThrow(failure('LEAF_INDEX_ORDER', 5));
  });

  it('detects an inserted event with the later events renumbered and rehashed', async () => {
    const events = [...rows.slice(0, 6).map((_, i) => eventAt(i)), { type: 'forged' }];
    for (let i = 6; i < 10; i++) events.push(eventAt(i));
    const inserted = events.map((e, i) => row(i, e));
    await expect(verify(inserted)).rejects.toThrow(failure('ROOT_MISMATCH', 4, 8));
  });

  it('detects an event appended past the expected end of the log', async () => {
    const extended = [...rows, row(10, { type: 'late' })];
    await expect(
      verifyLog({ tenantId, leaves: extended, publicKeys, expectedTreeSize: 10 }),
    ).rejects.toThrow(failure('LEAF_INDEX_ORDER', 10));
  });

  it('detects a validly signed checkpoint whose root does not match the log', async () => {
    const wrong = signCheckpoint(
      { tenantId, treeSize: 8, root: store.root(7) },
      keys.privateKey,
      clock,
    );
    await expect(verify(rows, [checkpoints[0], wrong, checkpoints[2]])).rejects.toThrow(
      failure('ROOT_MISMATCH', 4, 8),
    );
  });

  it('points a second, conflicting checkpoint of the same size at the unanchored range', async () => {
    const conflicting = signCheckpoint(
      { tenantId, treeSize: 8, root: store.root(7) },
      keys.privateKey,
      clock,
    );
    await expect(verify(rows, [...checkpoints, conflicting])).rejects.toThrow(
      failure('ROOT_MISMATCH', 4, 8),
    );
  });

  it('detects a forged checkpoint signature', async () => {
    const forged: SignedCheckpoint = { ...checkpoints[1]!, timestamp: '2026-01-16T09:00:00.000Z' };
    await expect(verify(rows, [checkpoints[0], forged, checkpoints[2]])).rejects.toThrow(
      failure('CHECKPOINT_SIGNATURE_INVALID', 4, 8),
    );
    const other = generateCheckpointKeyPair();
    const foreign = signCheckpoint(
      { tenantId, treeSize: 8, root: store.root(8) },
      other.privateKey,
      clock,
    );
    await expect(verify(rows, [foreign])).rejects.toThrow(failure('CHECKPOINT_KEY_UNKNOWN', 0, 8));
  });

  it('reports a forged checkpoint past the end as a forgery, not a truncation', async () => {
    const forged = { ...checkpoints[2]!, treeSize: 12 };
    await expect(verify(rows, [...checkpoints, forged])).rejects.toThrow(
      failure('CHECKPOINT_SIGNATURE_INVALID', 10, 12),
    );
  });

  it("rejects another tenant's checkpoint", async () => {
    const theirs = signCheckpoint(
      { tenantId: 'tenant-b', treeSize: 4, root: store.root(4) },
      keys.privateKey,
      clock,
    );
    await expect(verify(rows, [theirs])).rejects.toThrow(
      failure('CHECKPOINT_TENANT_MISMATCH', 0, 4),
    );
  });

  it('rejects a malformed stored row', async () => {
    const bad = rows.map((r) =>
      r.leafIndex === 1 ? { ...r, storedLeafHash: new Uint8Array(3) } : r,
    );
    await expect(verify(bad)).rejects.toThrow(failure('LEAF_MALFORMED', 1));
  });

  it('reads pages of rows as a database cursor yields them, empty pages included', async () => {
    async function* pages() {
      yield rows.slice(0, 3);
      yield [];
      yield rows[3]!;
      yield rows.slice(4, 9);
      yield rows.slice(9);
    }
    await expect(
      verifyLog({ tenantId, leaves: pages(), checkpoints, publicKeys }),
    ).resolves.toMatchObject({ treeSize: 10, checkpointsVerified: 3 });
    const syncPages = [rows.slice(0, 5), [], rows.slice(5)];
    await expect(
      verifyLog({ tenantId, leaves: syncPages, checkpoints, publicKeys }),
    ).resolves.toMatchObject({ treeSize: 10 });
  });

  it('sees a reordered pair across a page boundary', async () => {
    const pages = [
      [...rows.slice(0, 3), rows[4]!],
      [rows[3]!, ...rows.slice(5)],
    ];
    await expect(verifyLog({ tenantId, leaves: pages, checkpoints, publicKeys })).rejects.toThrow(
      failure('LEAF_INDEX_ORDER', 3),
    );
  });

  it('rejects an empty slot in a page as malformed', async () => {
    const pages = [[...rows.slice(0, 2), undefined as unknown as Row, ...rows.slice(2)]];
    await expect(verifyLog({ tenantId, leaves: pages, publicKeys })).rejects.toThrow(
      failure('LEAF_MALFORMED', 2),
    );
  });

  it('closes the event stream when it stops early', async () => {
    let closed = false;
    async function* cursor() {
      try {
        yield* rows.filter((r) => r.leafIndex !== 2);
      } finally {
        closed = true;
      }
    }
    await expect(
      verifyLog({ tenantId, leaves: cursor(), checkpoints, publicKeys }),
    ).rejects.toThrow(failure('LEAF_INDEX_GAP', 2));
    expect(closed).toBe(true);
  });
});

describe('verifyLog after the oldest events were pruned', () => {
  const { rows, checkpoints } = makeLog(12, [4, 8, 12]);

  async function frontierAt(size: number) {
    const summary = await verifyLog({ tenantId, leaves: rows.slice(0, size), publicKeys });
    return summary.frontier;
  }

  it('continues from a trusted frontier and checks the checkpoint at the cut', async () => {
    const start = await frontierAt(4);
    const summary = await verifyLog({
      tenantId,
      leaves: rows.slice(4),
      checkpoints,
      publicKeys,
      start,
    });
    expect(summary).toMatchObject({
      startIndex: 4,
      treeSize: 12,
      leavesVerified: 8,
      checkpointsVerified: 3,
    });
  });

  it('still checks the signatures of checkpoints older than the cut', async () => {
    const start = CompactTree.fromState(await frontierAt(6));
    const summary = await verifyLog({
      tenantId,
      leaves: rows.slice(6),
      checkpoints,
      publicKeys,
      start,
    });
    expect(summary).toMatchObject({
      startIndex: 6,
      checkpointsBeforeStart: 1,
      checkpointsVerified: 2,
    });
    const forged = { ...checkpoints[0]!, treeSize: 3 };
    await expect(
      verifyLog({
        tenantId,
        leaves: rows.slice(6),
        checkpoints: [forged, ...checkpoints.slice(1)],
        publicKeys,
        start,
      }),
    ).rejects.toThrow(failure('CHECKPOINT_SIGNATURE_INVALID', 0, 3));
  });

  it('detects a tampered frontier against the checkpoint at the cut or the next one', async () => {
    const good = await frontierAt(4);
    const tampered = { ...good, hashes: [toHex(leafHash(new Uint8Array([9])))] };
    await expect(
      verifyLog({ tenantId, leaves: rows.slice(4), checkpoints, publicKeys, start: tampered }),
    ).rejects.toThrow(failure('ROOT_MISMATCH', 0, 4));
    await expect(
      verifyLog({
        tenantId,
        leaves: rows.slice(4),
        checkpoints: checkpoints.slice(1),
        publicKeys,
        start: tampered,
      }),
    ).rejects.toThrow(failure('ROOT_MISMATCH', 4, 8));
  });

  it('detects an event missing right after the cut', async () => {
    const start = await frontierAt(4);
    await expect(
      verifyLog({ tenantId, leaves: rows.slice(5), checkpoints, publicKeys, start }),
    ).rejects.toThrow(failure('LEAF_INDEX_GAP', 4));
  });

  it('rejects a malformed frontier', async () => {
    await expect(
      verifyLog({ tenantId, leaves: [], publicKeys, start: { treeSize: 3, hashes: [] } }),
    ).rejects.toThrow(expect.objectContaining({ code: 'FRONTIER_INVALID' }));
  });
});

describe('verifyLog over stored text and hex', () => {
  const decoder = new TextDecoder();
  const asText = (r: Row) => ({
    leafIndex: r.leafIndex,
    canonicalBytes: decoder.decode(r.canonicalBytes),
    storedLeafHash: toHex(r.storedLeafHash),
  });

  it('verifies canonical text and hex leaf hashes as it verifies bytes', async () => {
    const { rows, checkpoints } = makeLog(9, [4, 9]);
    const fromBytes = await verifyLog({ tenantId, leaves: rows, checkpoints, publicKeys });
    const fromText = await verifyLog({
      tenantId,
      leaves: rows.map(asText),
      checkpoints,
      publicKeys,
    });
    expect(toHex(fromText.root)).toBe(toHex(fromBytes.root));
    expect(fromText.checkpointsVerified).toBe(2);
  });

  it('names changed text, a different stored hash, and a hash not in lower-case hex', async () => {
    const { rows, checkpoints } = makeLog(6, [6]);
    const text = rows.map(asText);
    const changed = text.map((r, i) =>
      i === 2 ? { ...r, canonicalBytes: r.canonicalBytes.replace('email', 'iban') } : r,
    );
    await expect(verifyLog({ tenantId, leaves: changed, checkpoints, publicKeys })).rejects.toEqual(
      failure('LEAF_HASH_MISMATCH', 2),
    );
    const otherHash = text.map((r, i) =>
      i === 3 ? { ...r, storedLeafHash: text[4]!.storedLeafHash } : r,
    );
    await expect(
      verifyLog({ tenantId, leaves: otherHash, checkpoints, publicKeys }),
    ).rejects.toEqual(failure('LEAF_HASH_MISMATCH', 3));
    const upper = text.map((r, i) =>
      i === 1 ? { ...r, storedLeafHash: r.storedLeafHash.toUpperCase() } : r,
    );
    await expect(verifyLog({ tenantId, leaves: upper, checkpoints, publicKeys })).rejects.toEqual(
      failure('LEAF_MALFORMED', 1),
    );
  });

  it('tells onSubtree every interior node the leaves complete, as the tree stores them', async () => {
    const { rows } = makeLog(7, []);
    const told: string[] = [];
    await verifyLog({
      tenantId,
      leaves: rows,
      publicKeys,
      onSubtree: (level, index, hash) => told.push(`${level}/${index}/${toHex(hash)}`),
    });
    // 7 leaves complete 1/0, 1/1, 2/0 and 1/2, in that order.
    const l = rows.map((r) => r.storedLeafHash);
    const n10 = nodeHash(l[0]!, l[1]!);
    const n11 = nodeHash(l[2]!, l[3]!);
    const node = (level: number, index: number, hash: Uint8Array) =>
      `${level}/${index}/${toHex(hash)}`;
    expect(told).toEqual([
      node(1, 0, n10),
      node(1, 1, n11),
      node(2, 0, nodeHash(n10, n11)),
      node(1, 2, nodeHash(l[4]!, l[5]!)),
    ]);
  });
});
