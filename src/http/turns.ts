/**
 * Spreads a burst of requests over event-loop turns. With SQLite, a request's queries run
 * synchronously, chained by promises that are already resolved: everything a sign-in does before
 * its password hash (user lookup, throttle counters) runs without giving the loop back. When a
 * storm's connections arrive together, the poll phase used to run all of them back to back (32
 * sign-ins, 26 ms measured), and every timer and every other socket waited. Behind this gate each
 * request starts its work in a turn of its own: one per turn, in arrival order, with I/O and
 * timers served in between. An idle server pays one `setImmediate` hop.
 */
export function createTurnGate() {
  const waiting: Array<() => void> = [];
  let scheduled = false;
  const step = () => {
    waiting.shift()?.();
    // An immediate queued from an immediate runs in the next turn, after timers and I/O.
    if (waiting.length > 0) setImmediate(step);
    else scheduled = false;
  };
  return {
    /** Resolves in a later turn than the call before it. */
    wait(): Promise<void> {
      return new Promise((resolve) => {
        waiting.push(resolve);
        if (!scheduled) {
          scheduled = true;
          setImmediate(step);
        }
      });
    },
    /** Requests waiting for their turn (tests). */
    waiting: () => waiting.length,
  };
}

export type TurnGate = ReturnType<typeof createTurnGate>;
