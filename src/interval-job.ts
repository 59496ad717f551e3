/**
 * A background job that runs `runOnce` every `intervalMs`, never two runs at once (a tick that
 * finds the previous run still going is skipped), with a timer that does not keep the process
 * alive. `stop` clears the timer and waits for a run in progress. A run's rejection goes to
 * `onError`.
 */
export function intervalJob(runOnce: () => Promise<unknown>, onError?: (error: unknown) => void) {
  let timer: NodeJS.Timeout | undefined;
  let running: Promise<unknown> | undefined;

  function start(intervalMs: number): void {
    if (timer) return;
    timer = setInterval(() => {
      if (running) return;
      running = runOnce()
        .catch((error: unknown) => onError?.(error))
        .finally(() => {
          running = undefined;
        });
    }, intervalMs);
    timer.unref();
  }

  async function stop(): Promise<void> {
    if (timer) clearInterval(timer);
    timer = undefined;
    await running;
  }

  return { start, stop, isStarted: () => timer !== undefined };
}
