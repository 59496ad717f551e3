import type { Clock } from './clock.ts';
import type { Config, SiemConfig } from './config.ts';
import type { DatabaseHandle } from './db/database.ts';
import { acrossTenants } from './db/tenant-scope.ts';
import { createApiKeyService } from './modules/api-keys/service.ts';
import { createIdentityAuditSink } from './modules/audit/identity-sink.ts';
import { createAuditQueries } from './modules/audit/queries.ts';
import { createAuditService } from './modules/audit/service.ts';
import { witnessFromConfig, type Witness } from './modules/audit/witness.ts';
import { createAuditSettings } from './modules/audit/settings.ts';
import { createAuditRetention } from './modules/audit/retention.ts';
import type { AuditSink } from './modules/auth/events.ts';
import { createAuthService } from './modules/auth/service.ts';
import { createSessionService } from './modules/auth/sessions.ts';
import { affectsSessions, createSessionCache } from './modules/auth/session-cache.ts';
import { createAuthPurge } from './modules/auth/purge.ts';
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
import { createRevealService } from './modules/records/reveal.ts';
import { reindexRegional } from './modules/records/reindex.ts';
import { createBreakGlassService } from './modules/break-glass/service.ts';
import { createReportService } from './modules/reports/service.ts';
import { createUserService } from './modules/users/service.ts';
import { createUserCrypto } from './modules/users/crypto.ts';
import { SEALED_SPECS } from './sealed-specs.ts';
import { createRoleService } from './modules/roles/service.ts';
import { createTeamService } from './modules/teams/service.ts';
import { createPermissionService } from './modules/permissions/service.ts';
import { createMfaService } from './modules/mfa/service.ts';
import { createAccountService } from './modules/account/service.ts';
import { createMailer, type Mailer, type MailLog } from './modules/mail/mailer.ts';
import { createNoticeSink } from './modules/mail/notice-sink.ts';
import { pino } from 'pino';
import { loggerOptions } from './http/logging.ts';
import type { AlertNotifier } from './modules/detection/notifier.ts';
import { createMailAlertNotifier } from './modules/detection/mail-notifier.ts';
import { createAlertService } from './modules/detection/service.ts';
import { createDetectionSettingsService } from './modules/detection/settings.ts';
import { createDetectionWorker } from './modules/detection/worker.ts';
import { createKeyRotationCheck } from './modules/detection/key-age.ts';
import { createTenantReencryption } from './modules/records/reencrypt-run.ts';
import { createReencryptionWorker } from './modules/records/reencrypt-worker.ts';
import type { TenantRunResult } from './modules/records/reencrypt-run.ts';
import { hostname } from 'node:os';
import { newId } from './ids.ts';

/** How long a cached session is trusted when only another process could have changed it. */
const SESSION_CACHE_TTL_MS = 1_000;
import { createPasskeyService } from './modules/passkeys/service.ts';
import { createPasskeySignIn } from './modules/passkeys/sign-in.ts';
import { siemDestinationsFromConfig } from './modules/siem/destinations.ts';
import { createSiemWorker, type SiemDestination } from './modules/siem/worker.ts';

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
    | 'smtpUrl'
    | 'mailFrom'
    | 'publicUrl'
    | 'logLevel'
    | 'webauthnRpId'
    | 'auditWitnessFile'
    | 'auditWitnessSyslog'
    | 'auditRetentionDays'
    | 'reencryptBatchSize'
    | 'reencryptPauseMs'
  > &
    SiemConfig &
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
  /** Where background work (mail) logs (default: a JSON logger on standard output). */
  log?: MailLog;
  /** Default: SMTP to `config.smtpUrl`, or a disabled mailer that logs what it did not send. */
  mailer?: Mailer;
  /** Where the SIEM worker streams the audit log (default: from CUSTOS_SIEM_* configuration). */
  siemDestinations?: readonly SiemDestination[];
  /** Failures of the SIEM worker (server.ts passes its logger). */
  onSiemError?: (destination: string, error: unknown, failures: number) => void;
  /**
   * Outside witness of signed tree heads (default: the file of CUSTOS_AUDIT_WITNESS_FILE and/or
   * the syslog receiver of CUSTOS_AUDIT_WITNESS_SYSLOG, if set).
   */
  witness?: Witness;
  /** Who hears of new security alerts (default: e-mail through `mailer`, see detection settings). */
  alertNotifier?: AlertNotifier;
  /** Failures of background work (the detection worker); default: ignored. */
  onBackgroundError?: (error: unknown) => void;
  /** What the re-encryption job did for a tenant (server.ts logs it). */
  onReencryption?: (tenantId: string, result: TenantRunResult) => void;
  /** Who holds re-encryption leases from this process (default: host, pid and a random id). */
  nodeId?: string;
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
    witness: deps.witness ?? witnessFromConfig(deps.config),
    writer: deps.database.writer,
  });
  const keys = deps.keys ?? createLazyKeyService(deps.config, { clock });
  const auditSettings = createAuditSettings({
    db,
    clock,
    audit: auditLog,
    defaultRetentionDays: deps.config.auditRetentionDays,
  });
  const records = { db, clock, reader, audit: auditLog, keys, auditPolicy: auditSettings };
  // Users' e-mail and name at rest, for every module that reads or writes them.
  const users = createUserCrypto({ keys });
  const contacts = createRecordService(contactSpec, records);
  const log = deps.log ?? pino(loggerOptions(deps.config.logLevel));
  const mailer =
    deps.mailer ?? createMailer({ smtpUrl: deps.config.smtpUrl, from: deps.config.mailFrom, log });
  // Identity events reach the audit log first, then become security notices by mail.
  const auditSink = createNoticeSink({
    inner: deps.audit ?? createIdentityAuditSink({ db, log: auditLog }),
    db,
    clock,
    mailer,
    publicUrl: deps.config.publicUrl,
    log,
    users,
  });
  // Counters shared by every node: Redis when configured, else the database.
  const throttleStore = deps.config.redisUrl
    ? createRedisThrottleStore(deps.config.redisUrl)
    : createDatabaseThrottleStore(db);
  const throttle = createLoginThrottle({
    store: throttleStore,
    clock,
    options: { failuresPerAddressPerDay: deps.config.loginFailuresPerAddressPerDay },
  });
  const mfa = createMfaService({ db, clock, keys, audit: auditSink, throttle, users });
  // Passkeys are bound to this RP id and accepted only from this origin.
  const rp = { name: 'Custos', id: deps.config.webauthnRpId, origin: deps.config.publicUrl };
  const passkeySignIn = createPasskeySignIn({
    db,
    clock,
    audit: auditSink,
    throttle,
    rp,
    sessionAbsoluteMs: deps.config.sessionAbsoluteMs,
    users,
  });
  // Started by server.ts only; tests call runOnce() or start() themselves.
  // Workers walk every tenant: called outside any scope, they run in the system scope.
  const siem = acrossTenants(
    'worker',
    createSiemWorker({
      db,
      clock,
      destinations: deps.siemDestinations ?? siemDestinationsFromConfig(deps.config, clock),
      batchSize: deps.config.siemBatchSize,
      intervalMs: deps.config.siemIntervalMs,
      retryMaxMs: deps.config.siemRetryMaxMs,
      ...(deps.onSiemError ? { onError: deps.onSiemError } : {}),
    }),
  );
  const alertNotifier =
    deps.alertNotifier ?? createMailAlertNotifier({ mailer, publicUrl: deps.config.publicUrl });
  const alerts = createAlertService({
    db,
    clock,
    audit: auditLog,
    notifier: alertNotifier,
    users,
    onError: deps.onBackgroundError,
  });
  // Re-encryption after a rotation: the same run `custos keys reencrypt` uses, as this node.
  const reencryption = createTenantReencryption({
    db,
    keys,
    audit: auditLog,
    clock,
    specs: SEALED_SPECS,
    owner: `server:${deps.nodeId ?? `${hostname()}:${process.pid}:${newId().slice(-8)}`}`,
    actor: { kind: 'system', id: 'reencryption' },
  });
  return {
    database: deps.database,
    clock,
    keys,
    mfa,
    reencryption,
    /** Started by server.ts (`start`), by tests through `runOnce`. */
    reencryptionWorker: acrossTenants(
      'worker',
      createReencryptionWorker({
        db,
        keys,
        clock,
        run: reencryption,
        batchSize: deps.config.reencryptBatchSize,
        pauseMs: deps.config.reencryptPauseMs,
        onResult: deps.onReencryption,
        onError: deps.onBackgroundError,
      }),
    ),
    auditLog,
    auditQueries: createAuditQueries({ db }),
    reports: createReportService({ db, clock, users }),
    /** Streams the audit log to the configured SIEM destinations (stop it at shutdown). */
    siem,
    auditSettings,
    auditRetention: acrossTenants(
      'worker',
      createAuditRetention({
        db,
        dialect: deps.database.dialect,
        clock,
        log: auditLog,
        settings: auditSettings,
      }),
    ),
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
      passkeys: passkeySignIn,
      users,
    }),
    passkeys: createPasskeyService({ db, clock, audit: auditSink, rp, users }),
    passkeySignIn,
    /** Deletes expired challenges, sessions and counters; server.ts runs it periodically. */
    authPurge: acrossTenants('worker', createAuthPurge({ db, clock })),
    /** Close at shutdown (a Redis connection when configured). */
    throttleStore,
    /** Close at shutdown (after `settled()` to let queued mail leave). */
    mailer,
    account: createAccountService({
      db,
      clock,
      audit: auditSink,
      throttle,
      mfa,
      passkeys: passkeySignIn,
      mailer,
      publicUrl: deps.config.publicUrl,
      users,
    }),
    users: createUserService({ db, clock, throttle, audit: auditSink, log: auditLog, users }),
    /** Users' e-mail and name at rest (setup, tests). */
    userCrypto: users,
    roles: createRoleService({ db, clock, audit: auditLog }),
    teams: createTeamService({ db, clock, audit: auditLog }),
    permissions: createPermissionService({ db, audit: auditLog }),
    sessions: createSessionService({
      db,
      clock,
      audit: auditSink,
      sessionIdleMs: deps.config.sessionIdleMs,
    }),
    tenantSettings: createTenantSettingsService({
      db,
      clock,
      audit: auditLog,
      sessionIdleMs: deps.config.sessionIdleMs,
      sessionAbsoluteMs: deps.config.sessionAbsoluteMs,
      // Contacts hold the only phone index (the other records have no regional index).
      reindexPhones: (trx, tenantId) =>
        reindexRegional(trx, contactSpec, contacts.crypto, tenantId),
    }),
    apiKeys: createApiKeyService({ db, clock, audit: auditLog }),
    contacts,
    /** POST /api/v1/contacts/{id}/reveal: clear values of masked fields, audited. */
    contactReveal: createRevealService({ db, clock, audit: auditLog, records: contacts }),
    breakGlass: createBreakGlassService({ db, clock, audit: auditLog }),
    contactTransfer: createContactTransfer({
      db,
      clock,
      contacts,
      audit: auditLog,
      keys,
      exportGuard: alerts.assertExportAllowed,
    }),
    alerts,
    detectionSettings: createDetectionSettingsService({ db, clock, audit: auditLog }),
    /** Started by server.ts (`start`), by tests through `runOnce`. */
    detectionWorker: acrossTenants(
      'worker',
      createDetectionWorker({
        db,
        dialect: deps.database.dialect,
        clock,
        audit: auditLog,
        throttle,
        notifier: alertNotifier,
        users,
        onError: deps.onBackgroundError,
        periodic: createKeyRotationCheck({ db, clock, keys, raise: alerts.raise }),
      }),
    ),
    companies: createRecordService(companySpec, records),
    deals: createRecordService(dealSpec, records),
    activities: createRecordService(activitySpec, records),
  };
}

export type Services = ReturnType<typeof createServices>;
