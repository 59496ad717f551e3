import { createRequire } from 'node:module';
import { Worker } from 'node:worker_threads';
import type { Options } from '@node-rs/argon2';
import { createTaskQueue } from './hash-queue.ts';

/**
 * The code of one hashing thread (CommonJS, evaluated): it lowers its own scheduling priority
 * (Linux: `setpriority` on a thread id changes that thread only), then answers one argon2 call at
 * a time with the synchronous functions of @node-rs/argon2, which is the whole of its work.
 */
const WORKER_SOURCE = `
const fs = require('node:fs');
const os = require('node:os');
const { parentPort, workerData } = require('node:worker_threads');
const argon2 = require(workerData.argon2);
let niceness = null;
if (process.platform === 'linux' && workerData.niceness > 0) {
  try {
    const tid = Number(fs.readlinkSync('/proc/thread-self').split('/').pop());
    if (Number.isInteger(tid) && tid > 0 && tid !== process.pid) {
      os.setPriority(tid, workerData.niceness);
      niceness = os.getPriority(tid);
    }
  } catch {}
}
parentPort.postMessage({ ready: true, niceness });
parentPort.on('message', ({ op, args }) => {
  try {
    const value = op === 'hash' ? argon2.hashSync(args[0], args[1]) : argon2.verifySync(args[0], args[1]);
    parentPort.postMessage({ value });
  } catch (error) {
    parentPort.postMessage({ error: error instanceof Error ? error.message : String(error) });
  }
});
`;

type Call = { op: 'hash'; args: [string, Options] } | { op: 'verify'; args: [string, string] };
type Reply = { value: string | boolean } | { error: string };

interface Slot {
  worker: Worker;
  /** Resolves with the niceness the thread got (null: unchanged) once it listens. */
  ready: Promise<number | null>;
  /** The answer awaited now (one call at a time per thread). */
  pending?: { resolve(reply: Reply): void; reject(error: Error): void } | undefined;
  exited: boolean;
}

export interface HashWorkerOptions {
  /** Threads (and so hashes at once); the other calls wait in arrival order. */
  threads: number;
  /**
   * Scheduling niceness of the threads (Linux; 0 leaves them as they are). Above the event
   * loop's 0, so a waking event loop takes the CPU from a hash at once instead of waiting for
   * the scheduler to share it out: hashing uses what the event loop leaves, never the reverse.
   */
  niceness: number;
}

/**
 * Argon2 on dedicated threads of lower priority than the event loop. Hashing on libuv's shared
 * thread pool kept it off the main thread, but not off the main thread's CPU: on a machine with
 * few cores, a hash holding a core made the event loop wait its turn in the scheduler (waits of
 * 20-100 ms under a sign-in storm, though the loop's own work per turn was a few ms). Threads are
 * started at the first calls and do not keep the process alive while idle.
 */
export function createHashWorkers(options: HashWorkerOptions) {
  const queue = createTaskQueue(options.threads);
  const argon2 = createRequire(import.meta.url).resolve('@node-rs/argon2');
  const idle: Slot[] = [];
  let niceness: number | null = null;

  function spawn(): Slot {
    const worker = new Worker(WORKER_SOURCE, {
      eval: true,
      workerData: { argon2, niceness: options.niceness },
      // Plain CommonJS: none of the parent's flags or --import hooks (tsx).
      execArgv: [],
    });
    const slot: Slot = {
      worker,
      exited: false,
      ready: new Promise((resolve, reject) => {
        worker.once('message', (m: { niceness: number | null }) => resolve(m.niceness));
        worker.once('error', reject);
        worker.once('exit', () => reject(new Error('hashing thread exited')));
      }),
    };
    worker.on('message', (m: Reply | { ready: true; niceness: number | null }) => {
      if ('ready' in m) {
        niceness = m.niceness;
        return;
      }
      const pending = slot.pending;
      slot.pending = undefined;
      pending?.resolve(m);
    });
    // A thread that dies (out of memory, say) fails its call; the next call starts a new one.
    const fail = (error: Error) => {
      const pending = slot.pending;
      slot.pending = undefined;
      pending?.reject(error);
    };
    worker.on('error', fail);
    worker.on('exit', () => {
      slot.exited = true;
      fail(new Error('hashing thread exited'));
    });
    worker.unref();
    return slot;
  }

  function call(message: Call): Promise<string | boolean> {
    return queue.run(async () => {
      // The queue admits at most `threads` calls at once: a thread is idle, or one may start.
      const slot = idle.pop() ?? spawn();
      // Referenced while it starts and works: a process awaiting a hash does not exit under it.
      slot.worker.ref();
      try {
        await slot.ready;
        const reply = await new Promise<Reply>((resolve, reject) => {
          slot.pending = { resolve, reject };
          slot.worker.postMessage(message);
        });
        if ('error' in reply) throw new Error(reply.error);
        return reply.value;
      } finally {
        if (!slot.exited) {
          slot.worker.unref();
          idle.push(slot);
        }
      }
    });
  }

  return {
    hash: async (password: string, params: Options) =>
      (await call({ op: 'hash', args: [password, params] })) as string,
    verify: async (stored: string, password: string) =>
      (await call({ op: 'verify', args: [stored, password] })) as boolean,
    /** Calls running and waiting now, and the niceness the threads got (null: unchanged). */
    stats: () => ({ ...queue.stats(), niceness }),
    /** Stops the idle threads (tests); later calls start new ones. */
    close: async () => {
      await Promise.all(idle.splice(0).map((s) => s.worker.terminate()));
    },
  };
}

export type HashWorkers = ReturnType<typeof createHashWorkers>;
