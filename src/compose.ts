import type { Clock } from './clock.ts';
import type { Config } from './config.ts';
import type { DatabaseHandle } from './db/database.ts';
import { createApiKeyService } from './modules/api-keys/service.ts';
import { createIdentityAuditSink } from './modules/audit/identity-sink.ts';
import { createAuditQueries } from './modules/audit/queries.ts';
import { createAuditService } from './modules/audit/service.ts';
import type { AuditSink } from './modules/auth/events.ts';
import { createAuthService } from './modules/auth/service.ts';
import { createSessionService } from './modules/auth/sessions.ts';
import { affectsSessions, createSessionCache } from './modules/auth/session-cache.ts';
import { createTenantSettingsService } from './modules/tenant-settings/service.ts';
import { createLoginThrottle } from './modules/auth/throttle.ts';
import { createRedisThrottleStore } from './modules/auth/throttle-redis-store.ts';
import { createDatabaseThrottleStore } from './modules/auth/throttle-store.ts';
import { activitySpec } from './modules/activities/spec.ts';
import { companySpec } from './modules/companies/spec.ts';
import { contactSpec } from './modules/contacts/spec.ts';
import { createContactTransfer } from './modules/contacts/transfer.ts';
import { dealSpec } from './modules/deals/spec.ts';
import { createLazyKeyService } from './modules/keys/open.ts';
import type { KeysConfig } from './modules/keys/open.ts';
import type { KeyService } from './modules/keys/service.ts';
import { createRecordService } from './modules/records/service.ts';
import { createReportService } from './modules/reports/service.ts';
import { createUserService } from './modules/users/service.ts';
import { createMfaService } from './modules/mfa/service.ts';
import type { AlertNotifier } from './modules/detection/notifier.ts';
import { noopAlertNotifier } from './modules/detection/notifier.ts';
import { createAlertService } from './modules/detection/service.ts';
import { createDetectionSettingsService } from './modules/detection/settings.ts';
import { createDetectionWorker } from './modules/detection/worker.ts';

/** How long a cached session is trusted when only another process could have changed it. */
const SESSION_CACHE_TTL_MS = 1_000;

/** The composition root: every service built once from its dependencies. */
export function createServices(deps: {
  config: Pick<
    Config,
    | 'sessionIdleMs'
    | 'sessionAbsoluteMs'
    | 'loginFailuresPerAddressPerDay'
    | 'redisUrl'
    | 'auditCheckpointEvery'
    | 'auditCheckpointMs'
  > &
    KeysConfig;
  database: DatabaseHandle;
  clock: Clock;
  /**
   * Opened by `openKeys` (and checked by `assertKeysUsable`) in server.ts; without it, a key
   * service that opens the key store and root key on first use.
   */
  keys?: KeyService;
  /** Where identity events go (default: the tenant's audit log). */
  audit?: AuditSink;
  /** Who hears of new security alerts (default: nobody; the lead wires the mailer here). */
  alertNotifier?: AlertNotifier;
  /** Failures of background work (the detection worker); default: ignored. */
  onBackgroundError?: (error: unknown) => void;
}) {
  const { db, reader } = deps.database;
  const clock = deps.clock;
  const auditLog = createAuditService({
    db,
    dialect: deps.database.dialect,
    clock,
    dataDir: deps.config.dataDir,
    checkpointEvery: deps.config.auditCheckpointEvery,
    checkpointIntervalMs: deps.config.auditCheckpointMs,
  });
  const records = { db, clock, reader, audit: auditLog };
  const contacts = createRecordService(contactSpec, records);
  const auditSink = deps.audit ?? createIdentityAuditSink({ db, log: auditLog });
  // Counters shared by every node: Redis when configured, else the database.
  const throttleStore = deps.config.redisUrl
    ? createRedisThrottleStore(deps.config.redisUrl)
    : createDatabaseThrottleStore(db);
  const throttle = createLoginThrottle({
    store: throttleStore,
    clock,
    options: { failuresPerAddressPerDay: deps.config.loginFailuresPerAddressPerDay },
  });
  const keys = deps.keys ?? createLazyKeyService(deps.config, { clock });
  const mfa = createMfaService({ db, clock, keys, audit: auditSink, throttle });
  const alertNotifier = deps.alertNotifier ?? noopAlertNotifier;
  const alerts = createAlertService({
    db,
    clock,
    audit: auditLog,
    notifier: alertNotifier,
    onError: deps.onBackgroundError,
  });
  return {
    database: deps.database,
    clock,
    keys,
    mfa,
    auditLog,
    auditQueries: createAuditQueries({ db }),
    reports: createReportService({ db, clock }),
    auth: createAuthService({
      db,
      reader,
      clock,
      sessionIdleMs: deps.config.sessionIdleMs,
      sessionAbsoluteMs: deps.config.sessionAbsoluteMs,
      throttle,
      audit: auditSink,
      mfa,
      // SQLite: this process makes every write, so its own writes keep the cache exact.
      sessionCache: deps.database.watchWrites
        ? createSessionCache({
            watch: deps.database.watchWrites(affectsSessions),
            clock,
            ttlMs: SESSION_CACHE_TTL_MS,
            maxEntries: 10_000,
          })
        : undefined,
    }),
    /** Close at shutdown (a Redis connection when configured). */
    throttleStore,
    users: createUserService({ db, clock, throttle, audit: auditSink, log: auditLog }),
    sessions: createSessionService({
      db,
      clock,
      audit: auditSink,
      sessionIdleMs: deps.config.sessionIdleMs,
    }),
    tenantSettings: createTenantSettingsService({
      db,
      clock,
      sessionIdleMs: deps.config.sessionIdleMs,
      sessionAbsoluteMs: deps.config.sessionAbsoluteMs,
    }),
    apiKeys: createApiKeyService({ db, clock, log: auditLog }),
    contacts,
    contactTransfer: createContactTransfer({
      db,
      clock,
      contacts,
      exportGuard: alerts.assertExportAllowed,
    }),
    alerts,
    detectionSettings: createDetectionSettingsService({ db, clock, audit: auditLog }),
    /** Started by server.ts (`start`), by tests through `runOnce`. */
    detectionWorker: createDetectionWorker({
      db,
      dialect: deps.database.dialect,
      clock,
      audit: auditLog,
      throttle,
      notifier: alertNotifier,
      onError: deps.onBackgroundError,
    }),
    companies: createRecordService(companySpec, records),
    deals: createRecordService(dealSpec, records),
    activities: createRecordService(activitySpec, records),
  };
}

export type Services = ReturnType<typeof createServices>;
