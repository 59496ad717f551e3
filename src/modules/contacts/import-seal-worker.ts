import { parentPort, workerData } from 'node:worker_threads';
import { createNormalCache, sealBatch } from './import-seal.ts';
import type { SealBatchInput, SealBatchKeys } from './import-seal.ts';
import type { SealThreadData } from './import-sealer.ts';

/**
 * The import's crypto thread (started by import-sealer.ts): seals one batch per message, in
 * order, and answers with the result; the key bytes' buffer is transferred, not copied.
 */
const port = parentPort;
// The thread serves one import: its normal forms are kept for the import's length.
const cache = createNormalCache();
if (port === null) throw new TypeError('import-seal-worker.ts runs as a worker thread');
port.on('message', (m: { seq: number; keys: SealBatchKeys; input: SealBatchInput }) => {
  try {
    const result = sealBatch(m.keys, m.input, cache);
    port.postMessage({ seq: m.seq, result }, [result.keys.buffer as ArrayBuffer]);
  } catch (error) {
    port.postMessage({
      seq: m.seq,
      error: error instanceof Error ? `${error.name}: ${error.message}` : String(error),
    });
  }
});
Atomics.store((workerData as SealThreadData).ready, 0, 1);
port.postMessage({ ready: true });
