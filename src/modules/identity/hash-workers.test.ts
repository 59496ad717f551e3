import os from 'node:os';
import { afterEach, describe, expect, it } from 'vitest';
import { createHashWorkers, type HashWorkers } from './hash-workers.ts';
import { argon2Params } from './passwords.ts';

let workers: HashWorkers | undefined;
afterEach(async () => {
  await workers?.close();
  workers = undefined;
});

describe('createHashWorkers', () => {
  it('hashes and verifies argon2id on its own threads', async () => {
    workers = createHashWorkers({ threads: 2, niceness: 0 });
    const stored = await workers.hash('river cobalt 9q tango delta', argon2Params);
    expect(stored).toMatch(/^\$argon2id\$v=19\$m=19456,t=2,p=1\$/);
    const [right, wrong] = await Promise.all([
      workers.verify(stored, 'river cobalt 9q tango delta'),
      workers.verify(stored, 'river cobalt 9q tango delte'),
    ]);
    expect(right).toBe(true);
    expect(wrong).toBe(false);
    expect(workers.stats()).toMatchObject({ running: 0, waiting: 0 });
  });

  it('fails the call, not the thread, on a malformed stored hash', async () => {
    workers = createHashWorkers({ threads: 1, niceness: 0 });
    await expect(workers.verify('$2b$12$not-argon2', 'whatever')).rejects.toThrow();
    const stored = await workers.hash('still working after an error', argon2Params);
    await expect(workers.verify(stored, 'still working after an error')).resolves.toBe(true);
  });

  it.runIf(process.platform === 'linux' && os.getPriority() <= 10)(
    'lowers the priority of its threads only, never of the event loop',
    async () => {
      const before = os.getPriority();
      workers = createHashWorkers({ threads: 1, niceness: 10 });
      await workers.hash('priority check password', argon2Params);
      expect(workers.stats().niceness).toBe(10);
      // getpriority(pid) on Linux reads the main thread: the event loop keeps its priority.
      expect(os.getPriority()).toBe(before);
    },
  );

  it('starts a new thread after close', async () => {
    workers = createHashWorkers({ threads: 1, niceness: 0 });
    const stored = await workers.hash('before close password', argon2Params);
    await workers.close();
    await expect(workers.verify(stored, 'before close password')).resolves.toBe(true);
  });
});
