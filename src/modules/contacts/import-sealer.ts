import { Worker } from 'node:worker_threads';
import { IMPORT_BATCH_ROWS } from './import-store.ts';
import { createNormalCache, sealBatch } from './import-seal.ts';
import type { SealBatchInput, SealBatchKeys, SealedBatch } from './import-seal.ts';

/**
 * Where an import's batches are sealed (`sealBatch`): `thread` on a worker thread of the
 * import's own, so that the crypto of one batch runs on the second core while the event loop
 * writes the previous batch and reads the next; `inline` on the event loop.
 *
 * - `auto` (default): a file of more than one batch starts the thread; batches are sealed
 *   inline until it listens (~0.2-0.6 s to load), and again inline should it fail. Small files
 *   never start it.
 * - `always`: every batch on the thread, waiting for it to start (tests of the thread path).
 * - `never`: every batch inline.
 */
export type SealThread = 'auto' | 'always' | 'never';

export interface ImportSealer {
  seal(keys: SealBatchKeys, input: SealBatchInput): Promise<SealedBatch>;
  /** Stops the thread (a batch still on it is abandoned). */
  close(): Promise<void>;
}

/**
 * The thread's bootstrap (CommonJS, evaluated, none of the parent's flags): under TypeScript
 * sources it registers tsx's loader first, which works the same under `tsx`, vitest and the CLI;
 * a compiled build loads the `.js` file as it is.
 */
const BOOT = `
const { workerData } = require('node:worker_threads');
(async () => {
  if (workerData.loader !== null) (await import(workerData.loader)).register();
  await import(workerData.entry);
})().catch((error) => setImmediate(() => { throw error; }));
`;

function threadFiles(): { entry: string; loader: string | null } {
  const typescript = import.meta.url.endsWith('.ts');
  return {
    entry: new URL(`./import-seal-worker.${typescript ? 'ts' : 'js'}`, import.meta.url).href,
    loader: typescript ? import.meta.resolve('tsx/esm/api') : null,
  };
}

/** What the thread receives: its files, and the flag it raises once it listens. */
export interface SealThreadData {
  entry: string;
  loader: string | null;
  /** Set to 1 by the thread once it listens (see `listening` below). */
  ready: Int32Array;
}

interface Request {
  keys: SealBatchKeys;
  input: SealBatchInput;
  resolve: (sealed: SealedBatch) => void;
  reject: (error: Error) => void;
}

type Reply =
  { ready: true } | { seq: number; result: SealedBatch } | { seq: number; error: string };

/**
 * @example
 * ```ts
 * const sealer = createImportSealer();
 * try {
 *   const sealed = await sealer.seal(keys, { ids, fields, values });
 * } finally {
 *   await sealer.close();
 * }
 * ```
 */
export function createImportSealer(
  options: { thread?: SealThread; threshold?: number } = {},
): ImportSealer {
  const mode = options.thread ?? 'auto';
  const threshold = options.threshold ?? IMPORT_BATCH_ROWS;
  let worker: Worker | undefined;
  /**
   * Raised by the thread itself: a large import runs for long stretches on promise callbacks
   * alone, during which the event loop delivers no message, so a "ready" message would only
   * arrive after the import. The flag is read synchronously instead.
   */
  const flag = new Int32Array(new SharedArrayBuffer(4));
  const listening = () => Atomics.load(flag, 0) === 1;
  let failure: Error | undefined;
  let closed = false;
  let ready: Promise<void> | undefined;
  let seq = 0;
  const pending = new Map<number, Request>();
  const cache = createNormalCache();
  const here = (keys: SealBatchKeys, input: SealBatchInput) => sealBatch(keys, input, cache);

  const inline = (request: Request) => {
    try {
      request.resolve(here(request.keys, request.input));
    } catch (error) {
      request.reject(error as Error);
    }
  };

  function start(): Promise<void> {
    const workerData: SealThreadData = { ...threadFiles(), ready: flag };
    const started = new Worker(BOOT, { eval: true, execArgv: [], workerData });
    worker = started;
    return new Promise<void>((resolve, reject) => {
      const fail = (error: Error) => {
        Atomics.store(flag, 0, 0);
        failure ??= error;
        reject(failure);
        // `auto`: what the thread had not answered is sealed here instead.
        const left = [...pending.values()];
        pending.clear();
        for (const request of left) {
          if (mode === 'auto' && !closed) inline(request);
          else request.reject(failure);
        }
      };
      started.on('message', (m: Reply) => {
        if ('ready' in m) {
          resolve();
          return;
        }
        const request = pending.get(m.seq);
        pending.delete(m.seq);
        if (request === undefined) return;
        if ('error' in m) request.reject(new Error(`import crypto thread: ${m.error}`));
        else request.resolve(m.result);
      });
      started.on('error', fail);
      started.on('exit', (code) => fail(new Error(`import crypto thread exited (${code})`)));
    });
  }

  return {
    async seal(keys, input) {
      if (closed) throw new TypeError('the import sealer is closed');
      if (mode === 'never') return here(keys, input);
      if (failure !== undefined) {
        if (mode === 'always') throw failure;
        return here(keys, input);
      }
      if (ready === undefined) {
        if (mode === 'auto' && input.ids.length < threshold) return here(keys, input);
        ready = start();
        // Observed here; `always` awaits it below, `auto` reads `listening`.
        ready.catch(() => undefined);
      }
      if (mode === 'always') await ready;
      else if (!listening()) return here(keys, input);
      const thread = worker as Worker;
      return new Promise<SealedBatch>((resolve, reject) => {
        const id = ++seq;
        pending.set(id, { keys, input, resolve, reject });
        thread.postMessage({ seq: id, keys, input });
      });
    },
    async close() {
      closed = true;
      cache.clear();
      await worker?.terminate();
    },
  };
}
