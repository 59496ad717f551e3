import { createRequire } from 'node:module';
import { Worker } from 'node:worker_threads';

/**
 * The code of the checkpointing thread (CommonJS, evaluated): its own connection to the database
 * file, and a passive checkpoint whenever `pages` frames of the write-ahead log wait to be copied
 * (checked every `everyMs`), as SQLite's automatic checkpoint would. A passive checkpoint never
 * waits for a lock and never makes a writer wait: it copies what no reader still needs and leaves
 * the rest for the next round. The count is read from the wal-index header (https://sqlite.org/
 * walformat.html: mxFrame at byte 16, nBackfill at byte 96, native byte order); if that read
 * fails, a checkpoint runs every second instead.
 */
const WORKER_SOURCE = `
const fs = require('node:fs');
const os = require('node:os');
const { parentPort, workerData } = require('node:worker_threads');
const SQLite = require(workerData.driver);
const db = new SQLite(workerData.file, { fileMustExist: true });
db.pragma('busy_timeout = 0');
const le = os.endianness() === 'LE';
const header = Buffer.alloc(100);
let shm;
let lastAt = 0;
let checkpoints = 0;
function pending() {
  try {
    shm ??= fs.openSync(workerData.file + '-shm', 'r');
    if (fs.readSync(shm, header, 0, 100, 0) < 100) return undefined;
    const mxFrame = le ? header.readUInt32LE(16) : header.readUInt32BE(16);
    const nBackfill = le ? header.readUInt32LE(96) : header.readUInt32BE(96);
    return mxFrame >= nBackfill ? mxFrame - nBackfill : undefined;
  } catch {
    return undefined;
  }
}
function round(force) {
  const waiting = pending();
  const due = force || (waiting === undefined ? Date.now() - lastAt >= 1000 : waiting >= workerData.pages);
  if (!due) return;
  const [r] = db.pragma('wal_checkpoint(PASSIVE)');
  checkpoints++;
  lastAt = Date.now();
  parentPort.postMessage({ log: r.log, checkpointed: r.checkpointed, checkpoints });
}
const timer = setInterval(() => {
  try { round(false); } catch (error) { parentPort.postMessage({ error: String(error) }); }
}, workerData.everyMs);
parentPort.on('message', (m) => {
  if (m === 'checkpoint' || m === 'stop') {
    try { round(true); } catch (error) { parentPort.postMessage({ error: String(error) }); }
  }
  if (m === 'stop') {
    clearInterval(timer);
    if (shm !== undefined) fs.closeSync(shm);
    db.close();
    parentPort.close();
  }
});
parentPort.postMessage({ ready: true });
`;

export interface CheckpointerStats {
  /** Checkpoints run so far, and the log's frames / frames copied at the last one. */
  checkpoints: number;
  log: number;
  checkpointed: number;
  /** The last failure of a round (the next round tries again). */
  error?: string;
}

/**
 * WAL checkpoints on a thread of their own. SQLite's automatic checkpoint runs inside the commit
 * that crosses 1000 pages of log, on the connection's thread: for Custos, the event loop, which
 * then waits for two fsyncs (log, then database) of 10-60 ms on a busy disk, the longest stalls of
 * a sign-in storm. The application's connection keeps an automatic checkpoint at `fallbackPages`
 * as a safety net (it only finds work to do if this thread falls behind); what remains on the
 * event loop is the small synced header write when the log starts over after a checkpoint.
 * Durability is unchanged: a checkpoint syncs the log before copying it, whichever thread runs it.
 */
export function startWalCheckpointer(options: {
  file: string;
  /** Checkpoint once the log has grown by this many pages (SQLite's own default: 1000). */
  pages?: number;
  everyMs?: number;
}) {
  const driver = createRequire(import.meta.url).resolve('better-sqlite3');
  const stats: CheckpointerStats = { checkpoints: 0, log: 0, checkpointed: 0 };
  const worker = new Worker(WORKER_SOURCE, {
    eval: true,
    workerData: {
      driver,
      file: options.file,
      pages: options.pages ?? 1000,
      everyMs: options.everyMs ?? 100,
    },
    execArgv: [],
  });
  let waiters: Array<() => void> = [];
  worker.on(
    'message',
    (m: { ready: true } | { error: string } | Omit<CheckpointerStats, 'error'>) => {
      if ('ready' in m) return;
      if ('error' in m) stats.error = m.error;
      else Object.assign(stats, m);
      const woken = waiters;
      waiters = [];
      for (const wake of woken) wake();
    },
  );
  // Without this thread the application's connection checkpoints by itself (fallback pages).
  worker.on('error', (error) => {
    stats.error = error.message;
  });
  worker.unref();
  const exited = new Promise<void>((resolve) => worker.once('exit', () => resolve()));
  return {
    stats: (): CheckpointerStats => ({ ...stats }),
    /** Checkpoints now, whatever the log's length (tests); resolves with the stats after it. */
    checkpointNow: async (): Promise<CheckpointerStats> => {
      const done = new Promise<void>((resolve) => waiters.push(resolve));
      worker.ref();
      worker.postMessage('checkpoint');
      await done;
      worker.unref();
      return { ...stats };
    },
    /** A last checkpoint, then the thread ends. */
    stop: async () => {
      worker.postMessage('stop');
      const timeout = new Promise((resolve) => setTimeout(resolve, 5000).unref());
      await Promise.race([exited, timeout]);
      await worker.terminate();
    },
  };
}

export type WalCheckpointer = ReturnType<typeof startWalCheckpointer>;

/** The application connection's own automatic checkpoint while the thread runs (pages). */
export const FALLBACK_CHECKPOINT_PAGES = 10_000;
