import type { AuditRetention } from './retention.ts';
import type { AuditService } from './service.ts';

interface JobLogger {
  info(obj: object, msg: string): void;
  error(obj: object, msg: string): void;
}

/**
 * The server's periodic audit work: hand committed checkpoints to the outside witness (every
 * `witnessMs`, default 10 s) and prune events past retention (every `pruneMs`; 0 turns it off).
 * A run never overlaps the previous one; timers do not keep the process alive. Returns `stop`.
 */
export function startAuditJobs(deps: {
  log: AuditService;
  retention: AuditRetention;
  pruneMs: number;
  witnessMs?: number;
  logger: JobLogger;
}): () => void {
  const timers: NodeJS.Timeout[] = [];
  const every = (ms: number, run: () => Promise<void>) => {
    // setInterval takes at most 2^31-1 ms (about 24.8 days); longer would fire at once.
    ms = Math.min(ms, 2 ** 31 - 1);
    let busy = false;
    const timer = setInterval(() => {
      if (busy) return;
      busy = true;
      void run().finally(() => (busy = false));
    }, ms);
    timer.unref();
    timers.push(timer);
  };
  every(deps.witnessMs ?? 10_000, async () => {
    try {
      await deps.log.publishToWitness();
    } catch (error) {
      deps.logger.error({ err: error }, 'audit checkpoints not given to the witness');
    }
  });
  if (deps.pruneMs > 0) {
    every(deps.pruneMs, async () => {
      try {
        for (const r of await deps.retention.pruneAll()) {
          if ('error' in r) {
            deps.logger.error({ err: r.error, tenantId: r.tenantId }, 'audit prune refused');
          } else if (r.outcome === 'pruned') {
            deps.logger.info(
              { tenantId: r.tenantId, removed: r.removed, prunedSize: r.prunedSize },
              'audit events pruned',
            );
          }
        }
      } catch (error) {
        deps.logger.error({ err: error }, 'audit prune failed');
      }
    });
  }
  return () => timers.forEach(clearInterval);
}
