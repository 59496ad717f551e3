import { describe, expect, it } from 'vitest';
import { createTaskQueue } from './hash-queue.ts';

/** A task that runs until `finish()` is called, recording when it started. */
function gate(started: number[], id: number) {
  let finish!: (value: number) => void;
  let fail!: (error: Error) => void;
  const done = new Promise<number>((resolve, reject) => {
    finish = resolve;
    fail = reject;
  });
  return {
    task: () => {
      started.push(id);
      return done;
    },
    finish: () => finish(id),
    fail: () => fail(new Error(`task ${id} failed`)),
  };
}

const tick = () => new Promise((resolve) => setImmediate(resolve));

describe('createTaskQueue', () => {
  it('runs at most `limit` tasks at once and starts the others in arrival order', async () => {
    const queue = createTaskQueue(2);
    const started: number[] = [];
    const gates = [1, 2, 3, 4].map((id) => gate(started, id));
    const results = gates.map((g) => queue.run(g.task));
    await tick();
    expect(started).toEqual([1, 2]);
    expect(queue.stats()).toEqual({ running: 2, waiting: 2 });
    gates[1]!.finish();
    await tick();
    expect(started).toEqual([1, 2, 3]);
    gates[0]!.finish();
    gates[2]!.finish();
    await tick();
    expect(started).toEqual([1, 2, 3, 4]);
    gates[3]!.finish();
    expect(await Promise.all(results)).toEqual([1, 2, 3, 4]);
    expect(queue.stats()).toEqual({ running: 0, waiting: 0 });
  });

  it('frees the slot of a task that throws', async () => {
    const queue = createTaskQueue(1);
    const started: number[] = [];
    const first = gate(started, 1);
    const second = gate(started, 2);
    const a = queue.run(first.task);
    const b = queue.run(second.task);
    await tick();
    expect(started).toEqual([1]);
    first.fail();
    await expect(a).rejects.toThrow('task 1 failed');
    await tick();
    expect(started).toEqual([1, 2]);
    second.finish();
    expect(await b).toBe(2);
    expect(queue.stats()).toEqual({ running: 0, waiting: 0 });
  });

  it('refuses a limit below one', () => {
    expect(() => createTaskQueue(0)).toThrow(TypeError);
    expect(() => createTaskQueue(1.5)).toThrow(TypeError);
  });
});
