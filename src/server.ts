import { systemClock } from './clock.ts';
import { ConfigError, loadConfig } from './config.ts';
import { createServices } from './compose.ts';
import { migrateToLatest, openDatabase } from './db/database.ts';
import { buildApp } from './http/app.ts';
import { countTenants } from './modules/tenants/service.ts';
import { AppError } from './errors.ts';
import { assertKeysUsable, openKeys } from './modules/keys/open.ts';
import { startAuthPurge } from './modules/auth/purge.ts';
import { createProtectedValueCounter } from './modules/records/protected-values.ts';
import { SEALED_SPECS } from './sealed-specs.ts';
import { encryptClearUsers } from './modules/users/backfill.ts';
import { startAuditJobs } from './modules/audit/jobs.ts';
import { runAsSystem } from './db/tenant-scope.ts';

/** config -> dependencies -> app.listen() */
async function main() {
  let config;
  try {
    config = loadConfig();
  } catch (error) {
    if (error instanceof ConfigError) {
      process.stderr.write(`custos: configuration error: ${error.message}\n`);
      process.exit(2);
    }
    throw error;
  }
  const database = openDatabase({
    databaseUrl: config.databaseUrl,
    dataDir: config.dataDir,
    poolSize: config.databasePoolSize,
    // SQLite: the log's fsyncs on a thread of their own, never in a request's commit.
    walCheckpoints: 'thread',
  });
  await migrateToLatest(database.db);
  // Keys before serving: a missing, exposed or wrong root key stops the start here, with a
  // message saying which, instead of failing on the first encrypted read.
  // Counting protected values spans every tenant.
  const keys = await runAsSystem('startup', () =>
    openKeys(config, {
      clock: systemClock,
      protectedValues: createProtectedValueCounter(database.db, SEALED_SPECS),
    }),
  );
  await assertKeysUsable(keys);
  // Users stored in clear before migration 0019 are sealed before anyone can sign in (sign-in
  // finds users by the e-mail's blind index only).
  const clearUsers = await runAsSystem('startup', () =>
    encryptClearUsers({ database, keys: keys.service }),
  );
  // The worker is built before the app whose logger reports its failures.
  const siemLog: { current?: { warn(obj: object, msg: string): void } } = {};
  let onBackgroundError = (_error: unknown): void => undefined;
  const reencryptionLog: { current?: { info(obj: object, msg: string): void } } = {};
  const services = createServices({
    config,
    database,
    clock: systemClock,
    keys: keys.service,
    onSiemError: (destination, error, failures) =>
      siemLog.current?.warn(
        {
          destination,
          failures,
          error: error instanceof Error ? error.message : String(error),
          cause:
            error instanceof Error && error.cause instanceof Error
              ? error.cause.message
              : undefined,
        },
        'SIEM delivery failed; the batch will be resent',
      ),
    onBackgroundError: (error) => onBackgroundError(error),
    onReencryption: (tenantId, result) => {
      if (result.outcome === 'busy' || result.outcome === 'up_to_date') return;
      reencryptionLog.current?.info(
        {
          tenantId,
          outcome: result.outcome,
          targetVersion: result.targetVersion,
          subjectKeysRewrapped: result.rewrap.rewrapped,
          valuesReencrypted: result.values?.reencrypted,
          valuesEncryptedFromClear: result.values?.encryptedClear,
          remaining: result.values?.remaining,
        },
        'key re-encryption run',
      );
    },
  });
  const app = await buildApp({ config, services });
  siemLog.current = app.log;
  reencryptionLog.current = app.log;
  onBackgroundError = (error) => app.log.error({ err: error }, 'background job failed');
  // Detection rules over every tenant's audit log; several nodes may run it (the cursor is locked).
  if (config.detectionIntervalMs > 0) services.detectionWorker.start(config.detectionIntervalMs);
  // Re-encryption after key rotations; several nodes may run it (one per tenant holds a lease).
  if (config.reencryptIntervalMs > 0) {
    services.reencryptionWorker.start(config.reencryptIntervalMs);
  }
  if (clearUsers.tenants > 0) {
    app.log[clearUsers.failed > 0 ? 'error' : 'info'](
      clearUsers,
      clearUsers.failed > 0
        ? 'users stored in clear: some could not be encrypted (damaged values), see `custos keys status --scan`'
        : 'users stored in clear were encrypted',
    );
  }
  if ((await runAsSystem('startup', () => countTenants(database.db))) === 0) {
    app.log.warn(
      'No tenant exists yet. Create the first one and its owner with: ' +
        'CUSTOS_SETUP_PASSWORD=... npx custos setup --tenant <slug> --name "<organisation>" --email <owner e-mail>',
    );
  }
  const stopPurge = startAuthPurge(services.authPurge, { log: app.log });
  // The jobs' timers keep the system scope they were started in (every tenant's checkpoints).
  const stopAuditJobs = runAsSystem('worker', () =>
    startAuditJobs({
      log: services.auditLog,
      retention: services.auditRetention,
      pruneMs: config.auditPruneMs,
      logger: app.log,
    }),
  );
  const stop = async (signal: string) => {
    app.log.info({ signal }, 'shutting down');
    stopAuditJobs();
    await stopPurge();
    await services.siem.stop();
    await services.detectionWorker.stop();
    await services.reencryptionWorker.stop();
    await app.close();
    await services.throttleStore.close();
    await services.mailer.settled();
    services.mailer.close();
    await keys.service.close();
    await database.close();
    process.exit(0);
  };
  process.once('SIGINT', (s) => void stop(s));
  process.once('SIGTERM', (s) => void stop(s));
  await app.listen({ host: config.host, port: config.port });
  services.siem.start();
}

main().catch((error: unknown) => {
  const message =
    error instanceof AppError
      ? `${error.detail ?? error.message} (${error.code})`
      : error instanceof Error
        ? error.message
        : String(error);
  process.stderr.write(`custos: failed to start: ${message}\n`);
  process.exit(1);
});
