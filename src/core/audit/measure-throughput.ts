// Measures the audit library on one core; not part of the library API. Run:
//   npx tsx src/core/audit/measure-throughput.ts
// Prints verifier throughput (events/s) and proof times at a million leaves.
import { canonicalBytes } from './canonical.ts';
import { signCheckpoint } from './checkpoint.ts';
import { generateCheckpointKeyPair } from './keys.ts';
import { leafHash } from './merkle.ts';
import { MemoryMerkleStore } from './memory-store.ts';
import { consistencyProof, inclusionProof } from './proof.ts';
import { verifyConsistency, verifyInclusion } from './verify-proof.ts';
import type { StoredAuditLeaf } from './leaf-reader.ts';
import { verifyLog } from './verify-log.ts';

const EVENTS = 200_000;
const LEAVES = 1_000_000;
const PROOFS = 2_000;

function eventAt(i: number) {
  return {
    type: 'contact.field_read',
    at: '2026-01-15T09:00:00.000Z',
    tenantId: 'tenant-a',
    actor: { kind: 'user', id: `0190a1b2-c3d4-7e5f-8a9b-${String(i % 1000).padStart(12, '0')}` },
    target: { object: 'contact', id: `rec-${i}` },
    fields: ['email', 'nationalId'],
    request: { id: `req-${i}`, ip: '203.0.113.7' },
    seq: i,
  };
}

async function* stream<T>(items: readonly T[]): AsyncGenerator<T> {
  for (const item of items) yield item;
}

async function measureVerifier(): Promise<void> {
  const clock = { now: () => new Date('2026-01-15T09:00:00.000Z') };
  const keys = generateCheckpointKeyPair();
  const events = Array.from({ length: EVENTS }, (_, i) => eventAt(i));
  const withBytes = events.map((event, leafIndex) => {
    const bytes = canonicalBytes(event);
    return { leafIndex, canonicalBytes: bytes, storedLeafHash: leafHash(bytes) };
  });
  const withObjects: StoredAuditLeaf[] = withBytes.map(({ leafIndex, storedLeafHash }) => ({
    leafIndex,
    event: events[leafIndex],
    storedLeafHash,
  }));
  const store = new MemoryMerkleStore();
  withBytes.forEach((r) => store.append(r.storedLeafHash));
  const checkpoints = [];
  for (let size = 10_000; size <= EVENTS; size += 10_000) {
    const head = { tenantId: 'tenant-a', treeSize: size, root: store.root(size) };
    checkpoints.push(signCheckpoint(head, keys.privateKey, clock));
  }
  const pages = <T>(items: readonly T[]) =>
    Array.from({ length: Math.ceil(items.length / 1000) }, (_, p) =>
      items.slice(p * 1000, p * 1000 + 1000),
    );
  for (const [label, leaves] of [
    ['stored canonical bytes, async pages of 1000 rows', stream(pages(withBytes))],
    ['stored canonical bytes, async one row at a time', stream(withBytes)],
    ['event objects (canonicalised by the verifier), async pages', stream(pages(withObjects))],
  ] as const) {
    const started = performance.now();
    const summary = await verifyLog({
      tenantId: 'tenant-a',
      leaves,
      checkpoints,
      publicKeys: [keys.publicKey],
    });
    const seconds = (performance.now() - started) / 1000;
    const rate = Math.round(summary.leavesVerified / seconds);
    console.log(
      `verifyLog, ${label}: ${summary.leavesVerified} events, ${summary.checkpointsVerified} checkpoints ` +
        `in ${seconds.toFixed(2)} s = ${rate.toLocaleString('en')} events/s`,
    );
  }
}

function measureProofs(): void {
  const store = new MemoryMerkleStore();
  const seed = new Uint8Array(8);
  const view = new DataView(seed.buffer);
  let started = performance.now();
  for (let i = 0; i < LEAVES; i++) {
    view.setUint32(0, i);
    store.append(leafHash(seed));
  }
  console.log(`built a ${LEAVES}-leaf store in ${(performance.now() - started).toFixed(0)} ms`);
  const root = store.root();
  const time = (label: string, run: (k: number) => void) => {
    const t0 = performance.now();
    for (let k = 0; k < PROOFS; k++) run(k);
    const us = ((performance.now() - t0) / PROOFS) * 1000;
    console.log(`${label}: ${us.toFixed(1)} us each (mean of ${PROOFS})`);
  };
  const pick = (k: number) => (k * 7_919 + 13) % LEAVES;
  time('inclusion proof at 1M leaves', (k) => inclusionProof(pick(k), LEAVES, store));
  const proofs = Array.from({ length: PROOFS }, (_, k) => inclusionProof(pick(k), LEAVES, store));
  time('verify inclusion at 1M leaves', (k) => {
    if (!verifyInclusion(pick(k), LEAVES, store.getLeafHash(pick(k))!, proofs[k]!, root)) {
      throw new Error('inclusion proof failed');
    }
  });
  const sizeM = (k: number) => 1 + pick(k);
  time('consistency proof m -> 1M', (k) => consistencyProof(sizeM(k), LEAVES, store));
  time('past root (any size) at 1M', (k) => store.root(sizeM(k)));
  const cproofs = Array.from({ length: PROOFS }, (_, k) =>
    consistencyProof(sizeM(k), LEAVES, store),
  );
  const roots = Array.from({ length: PROOFS }, (_, k) => store.root(sizeM(k)));
  started = performance.now();
  time('verify consistency m -> 1M', (k) => {
    if (!verifyConsistency(sizeM(k), LEAVES, roots[k]!, root, cproofs[k]!)) {
      throw new Error('consistency proof failed');
    }
  });
}

await measureVerifier();
measureProofs();
