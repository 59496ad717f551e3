import os from 'node:os';

/**
 * At most `limit` tasks at a time; the others wait in arrival order. Password hashing goes
 * through one of these: argon2 runs on libuv's thread pool (4 threads by default), and four
 * hashes at once on two cores leave the event loop a fraction of a core, so every request (and
 * every timer) waits behind them. With one core left free the loop stays responsive, and a
 * storm of sign-ins queues here instead of in the scheduler.
 */
export function createTaskQueue(limit: number) {
  if (!Number.isInteger(limit) || limit < 1)
    throw new TypeError('limit must be a positive integer');
  let running = 0;
  const waiting: Array<() => void> = [];

  const release = () => {
    const next = waiting.shift();
    if (next) next();
    else running--;
  };

  return {
    /** Runs `task` once a slot is free; the slot is released however it ends. */
    async run<T>(task: () => Promise<T>): Promise<T> {
      if (running < limit) running++;
      // The slot passes straight from the task that ends to the one that waited longest.
      else await new Promise<void>((resolve) => waiting.push(resolve));
      try {
        return await task();
      } finally {
        release();
      }
    },
    /** Tasks running and waiting now (for tests and diagnostics). */
    stats: () => ({ running, waiting: waiting.length }),
  };
}

export type TaskQueue = ReturnType<typeof createTaskQueue>;

/** One core for the event loop, the others for hashing (at least one). */
export const defaultHashConcurrency = () => Math.max(1, os.availableParallelism() - 1);
