import { describe, expect, it } from 'vitest';
import { createTurnGate } from './turns.ts';

describe('createTurnGate', () => {
  it('lets one waiter go per event-loop turn, in arrival order, with timers in between', async () => {
    const gate = createTurnGate();
    const order: string[] = [];
    const burst = [1, 2, 3, 4].map((i) =>
      gate.wait().then(() => {
        order.push(`request ${i}`);
        // Synchronous work after the gate, as a sign-in's SQLite queries are.
        const end = performance.now() + 5;
        while (performance.now() < end);
      }),
    );
    expect(gate.waiting()).toBe(4);
    // A timer due now runs between two requests, not after the whole burst.
    setTimeout(() => order.push('timer'), 0);
    await Promise.all(burst);
    expect(order.filter((e) => e.startsWith('request'))).toEqual([
      'request 1',
      'request 2',
      'request 3',
      'request 4',
    ]);
    const timer = order.indexOf('timer');
    expect(timer).toBeGreaterThan(0);
    expect(timer).toBeLessThan(order.length - 1);
    expect(gate.waiting()).toBe(0);
  });

  it('lets a lone request through at the next turn', async () => {
    const gate = createTurnGate();
    let passed = false;
    const done = gate.wait().then(() => {
      passed = true;
    });
    expect(passed).toBe(false);
    await done;
    expect(passed).toBe(true);
    // And again, once the gate was idle.
    await gate.wait();
  });
});
