import type { Clock } from './clock.ts';
import type { Config } from './config.ts';
import type { DatabaseHandle } from './db/database.ts';
import { createApiKeyService } from './modules/api-keys/service.ts';
import { createIdentityAuditSink } from './modules/audit/identity-sink.ts';
import { createAuditQueries } from './modules/audit/queries.ts';
import { createAuditService } from './modules/audit/service.ts';
import { createFileWitness, type Witness } from './modules/audit/witness.ts';
import { createAuditSettings } from './modules/audit/settings.ts';
import { createAuditRetention } from './modules/audit/retention.ts';
import type { AuditSink } from './modules/auth/events.ts';
import { createAuthService } from './modules/auth/service.ts';
import { createSessionService } from './modules/auth/sessions.ts';
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
import { createUserService } from './modules/users/service.ts';
import { createMfaService } from './modules/mfa/service.ts';

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
    | 'auditWitnessFile'
    | 'auditRetentionDays'
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
  /**
   * Outside witness of signed tree heads (default: the file of CUSTOS_AUDIT_WITNESS_FILE, if
   * set). A syslog witness is `createMessageWitness(send)` over the SIEM syslog sender.
   */
  witness?: Witness;
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
    witness:
      deps.witness ??
      (deps.config.auditWitnessFile === undefined
        ? undefined
        : createFileWitness(deps.config.auditWitnessFile)),
  });
  const auditSettings = createAuditSettings({
    db,
    clock,
    audit: auditLog,
    defaultRetentionDays: deps.config.auditRetentionDays,
  });
  const records = { db, clock, reader, audit: auditLog, auditPolicy: auditSettings };
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
  return {
    database: deps.database,
    clock,
    keys,
    mfa,
    auditLog,
    auditQueries: createAuditQueries({ db }),
    auditSettings,
    auditRetention: createAuditRetention({
      db,
      dialect: deps.database.dialect,
      clock,
      log: auditLog,
      settings: auditSettings,
    }),
    auth: createAuthService({
      db,
      reader,
      clock,
      sessionIdleMs: deps.config.sessionIdleMs,
      sessionAbsoluteMs: deps.config.sessionAbsoluteMs,
      throttle,
      audit: auditSink,
      mfa,
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
      audit: auditLog,
    }),
    apiKeys: createApiKeyService({ db, clock, audit: auditLog }),
    contacts,
    contactTransfer: createContactTransfer({ db, clock, contacts }),
    companies: createRecordService(companySpec, records),
    deals: createRecordService(dealSpec, records),
    activities: createRecordService(activitySpec, records),
  };
}

export type Services = ReturnType<typeof createServices>;
