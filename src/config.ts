import path from 'node:path';
import { Type, type Static, type TSchema } from '@sinclair/typebox';
import { Value } from '@sinclair/typebox/value';
import { isPhoneRegion } from './core/crypto/index.ts';

/**
 * The only reader of process.env. Every variable is validated once at start; a wrong value stops
 * the process with a message naming the variable and what it expects.
 */
const LogLevel = Type.Union(
  ['fatal', 'error', 'warn', 'info', 'debug', 'trace', 'silent'].map((l) => Type.Literal(l)),
);

interface VariableSpec {
  schema: TSchema;
  expected: string;
  default?: string;
  secret?: boolean;
  description: string;
}

/** Documented in README.md ("Configuration"); keep the two in step. */
export const variables = {
  CUSTOS_HOST: {
    schema: Type.String({ pattern: '^[A-Za-z0-9.:%_\\[\\]-]+$' }),
    expected: 'a host name or IP address to listen on',
    default: '127.0.0.1',
    description: 'Address the HTTP server listens on.',
  },
  CUSTOS_PORT: {
    schema: Type.Integer({ minimum: 0, maximum: 65535 }),
    expected: 'an integer from 0 to 65535',
    default: '8080',
    description: 'TCP port of the HTTP server (0 picks a free port).',
  },
  CUSTOS_DATA_DIR: {
    schema: Type.String({ minLength: 1 }),
    expected: 'a directory path',
    default: './data',
    description: 'Where the embedded SQLite database and local key files live.',
  },
  CUSTOS_DATABASE_URL: {
    schema: Type.String({ pattern: '^postgres(ql)?://' }),
    expected: 'a postgres:// or postgresql:// connection URL',
    description: 'Use PostgreSQL instead of the embedded SQLite database.',
    secret: true,
  },
  CUSTOS_DATABASE_POOL_SIZE: {
    schema: Type.Integer({ minimum: 1, maximum: 200 }),
    expected: 'an integer from 1 to 200',
    default: '10',
    description: 'PostgreSQL connection pool size.',
  },
  CUSTOS_LOG_LEVEL: {
    schema: LogLevel,
    expected: 'one of fatal, error, warn, info, debug, trace, silent',
    default: 'info',
    description: 'Minimum level of the JSON log written to standard output.',
  },
  CUSTOS_BODY_LIMIT: {
    schema: Type.Integer({ minimum: 1024, maximum: 100 * 1024 * 1024 }),
    expected: 'a number of bytes from 1024 to 104857600',
    default: String(1024 * 1024),
    description: 'Largest accepted JSON request body, in bytes (413 above it).',
  },
  CUSTOS_IMPORT_LIMIT: {
    schema: Type.Integer({ minimum: 1024, maximum: 2 * 1024 * 1024 * 1024 }),
    expected: 'a number of bytes from 1024 to 2147483648',
    default: String(64 * 1024 * 1024),
    description: 'Largest accepted CSV import upload, in bytes.',
  },
  CUSTOS_SESSION_IDLE_MINUTES: {
    schema: Type.Integer({ minimum: 1, maximum: 24 * 60 }),
    expected: 'a number of minutes from 1 to 1440',
    default: '30',
    description: 'A session ends after this long without a request.',
  },
  CUSTOS_SESSION_ABSOLUTE_HOURS: {
    schema: Type.Integer({ minimum: 1, maximum: 24 * 7 }),
    expected: 'a number of hours from 1 to 168',
    default: '12',
    description: 'A session ends this long after sign-in, whatever its use.',
  },
  CUSTOS_TRUST_PROXY: {
    schema: Type.Union([Type.Literal('true'), Type.Literal('false')]),
    expected: 'true or false',
    default: 'false',
    description: 'Take the client address from X-Forwarded-For (only behind a trusted proxy).',
  },
  CUSTOS_DEFAULT_PHONE_REGION: {
    schema: Type.String({ pattern: '^[A-Z]{2}$' }),
    expected:
      'an upper-case ISO 3166-1 alpha-2 region code with phone numbering rules (US, DE, ...)',
    description:
      'Phone region a tenant created by `custos setup` gets when --phone-region is not given (tenants change it in their settings); unset: none.',
  },
  CUSTOS_KEY_PROVIDER: {
    schema: Type.Union([Type.Literal('file'), Type.Literal('env'), Type.Literal('pkcs11')]),
    expected: 'one of file, env, pkcs11',
    default: 'file',
    description: 'Where the root key lives: a local key file, CUSTOS_ROOT_KEY, or a PKCS#11 token.',
  },
  CUSTOS_KEY_FILE: {
    schema: Type.String({ minLength: 1 }),
    expected: 'a file path',
    description:
      'Root key file of the file provider (default CUSTOS_DATA_DIR/root.key, mode 0600).',
  },
  CUSTOS_ROOT_KEY: {
    schema: Type.String({ pattern: '^[A-Za-z0-9+/]{43}=$' }),
    expected: 'the base64 encoding of 32 random bytes (44 characters)',
    description: 'Root key of the env provider. Never logged.',
    secret: true,
  },
  CUSTOS_PKCS11_LIBRARY: {
    schema: Type.String({ minLength: 1 }),
    expected: 'the path of a PKCS#11 module',
    default: '/usr/lib/softhsm/libsofthsm2.so',
    description: 'PKCS#11 module of the pkcs11 provider.',
  },
  CUSTOS_PKCS11_TOKEN_LABEL: {
    schema: Type.String({ minLength: 1, maxLength: 32 }),
    expected: 'a token label of 1 to 32 characters',
    description: 'Label of the token holding the root key (pkcs11 provider).',
  },
  CUSTOS_PKCS11_PIN: {
    schema: Type.String({ minLength: 1, maxLength: 255 }),
    expected: 'the user PIN of the token',
    description: 'User PIN of the token (pkcs11 provider). Never logged.',
    secret: true,
  },
  CUSTOS_PKCS11_KEY_LABEL: {
    schema: Type.String({ minLength: 1, maxLength: 255 }),
    expected: 'a key label of 1 to 255 characters',
    default: 'custos-root',
    description: 'Label of the AES-256 root key in the token (`custos keys init-hsm` creates it).',
  },
  CUSTOS_KEYS_DATABASE_URL: {
    schema: Type.String({ pattern: '^postgres(ql)?://' }),
    expected: 'a postgres:// or postgresql:// connection URL',
    description:
      'Key store database (default: schema custos_keys of CUSTOS_DATABASE_URL, or keys.db).',
    secret: true,
  },
  CUSTOS_KEY_CACHE_SIZE: {
    schema: Type.Integer({ minimum: 16, maximum: 1_000_000 }),
    expected: 'an integer from 16 to 1000000',
    default: '10000',
    description: 'How many unwrapped tenant and subject keys each process keeps in memory.',
  },
  CUSTOS_LOGIN_FAILURES_PER_ADDRESS_PER_DAY: {
    schema: Type.Integer({ minimum: 1, maximum: 1_000_000 }),
    expected: 'an integer from 1 to 1000000',
    default: '100',
    description:
      'Failed sign-ins one client address may make per UTC day, across all accounts; beyond it every sign-in from the address is refused.',
  },
  CUSTOS_REDIS_URL: {
    schema: Type.String({ pattern: '^rediss?://' }),
    expected: 'a redis:// or rediss:// connection URL',
    description:
      'Keep sign-in throttling counters in Redis, shared by every node (default: the database).',
    secret: true,
  },
  CUSTOS_PUBLIC_URL: {
    schema: Type.String({ pattern: '^https?://[^\\s/?#@]+/?$', maxLength: 2048 }),
    expected: 'the http:// or https:// origin users reach Custos at, e.g. https://crm.example.com',
    description:
      'The origin users reach Custos at, used in links sent by mail and as the WebAuthn origin (default http://localhost:<CUSTOS_PORT>).',
  },
  CUSTOS_WEBAUTHN_RP_ID: {
    schema: Type.String({ pattern: '^[a-z0-9]([a-z0-9.-]*[a-z0-9])?$', maxLength: 253 }),
    expected: 'a lower-case domain name: the host of CUSTOS_PUBLIC_URL or a parent domain of it',
    description: 'WebAuthn relying party id passkeys are bound to (default: the public URL host).',
  },
  CUSTOS_AUDIT_CHECKPOINT_EVERY: {
    schema: Type.Integer({ minimum: 1, maximum: 1_000_000 }),
    expected: 'an integer from 1 to 1000000',
    default: '1000',
    description: 'Sign an audit checkpoint (tree head) at least every this many events per tenant.',
  },
  CUSTOS_AUDIT_CHECKPOINT_SECONDS: {
    schema: Type.Integer({ minimum: 1, maximum: 86_400 }),
    expected: 'an integer from 1 to 86400',
    default: '60',
    description:
      'Sign an audit checkpoint when an event arrives this long after the last checkpoint.',
  },
  CUSTOS_SMTP_URL: {
    schema: Type.String({ pattern: '^smtps?://[^\\s]+$' }),
    expected: 'an smtp:// or smtps:// URL (user and password in the URL when the relay needs them)',
    description:
      'Mail relay for password reset, e-mail confirmation and security notices (unset: no mail is sent). Never logged.',
    secret: true,
  },
  CUSTOS_MAIL_FROM: {
    schema: Type.String({
      minLength: 3,
      maxLength: 320,
      pattern: '^[^\\r\\n\\u0000]*@[^\\r\\n\\u0000]*$',
    }),
    expected: 'a sender address such as "Custos <no-reply@crm.example.com>"',
    default: 'Custos <no-reply@localhost>',
    description: 'Sender (From) of the mail Custos sends.',
  },
  CUSTOS_SIEM_SYSLOG_URL: {
    schema: Type.String({
      pattern: '^(tcp|tls)://(\\[[0-9A-Fa-f:.]+\\]|[A-Za-z0-9.-]+):[0-9]{1,5}$',
    }),
    expected: 'tcp://host:port or tls://host:port',
    description: 'Stream audit events to this syslog receiver (RFC 5424, octet counting).',
  },
  CUSTOS_SIEM_FORMAT: {
    schema: Type.Union([Type.Literal('json'), Type.Literal('cef')]),
    expected: 'json or cef',
    default: 'json',
    description: 'Syslog message body: OCSF JSON or ArcSight CEF.',
  },
  CUSTOS_SIEM_CA_FILE: {
    schema: Type.String({ minLength: 1 }),
    expected: 'a PEM file path',
    description:
      'CA certificate(s) trusted for the tls:// syslog receiver (default: system store).',
  },
  CUSTOS_SIEM_CERT_FILE: {
    schema: Type.String({ minLength: 1 }),
    expected: 'a PEM file path',
    description: 'Client certificate for the tls:// syslog receiver (with CUSTOS_SIEM_KEY_FILE).',
  },
  CUSTOS_SIEM_KEY_FILE: {
    schema: Type.String({ minLength: 1 }),
    expected: 'a PEM file path',
    description: 'Private key of CUSTOS_SIEM_CERT_FILE.',
  },
  CUSTOS_SIEM_WEBHOOK_URL: {
    schema: Type.String({ pattern: '^https?://[^\\s]+$', maxLength: 2048 }),
    expected: 'an http:// or https:// URL',
    description: 'POST signed batches of audit events (OCSF JSON) to this URL. Never logged.',
    secret: true,
  },
  CUSTOS_SIEM_WEBHOOK_SECRET: {
    schema: Type.String({ minLength: 32, maxLength: 512 }),
    expected: 'a secret of 32 to 512 characters',
    description: 'HMAC-SHA256 key of the webhook signature. Never logged.',
    secret: true,
  },
  CUSTOS_SIEM_BATCH_SIZE: {
    schema: Type.Integer({ minimum: 1, maximum: 10_000 }),
    expected: 'an integer from 1 to 10000',
    default: '100',
    description: 'Audit events per syslog connection or webhook request.',
  },
  CUSTOS_SIEM_INTERVAL_MS: {
    schema: Type.Integer({ minimum: 10, maximum: 3_600_000 }),
    expected: 'a number of milliseconds from 10 to 3600000',
    default: '1000',
    description: 'How often the SIEM worker looks for new audit events.',
  },
  CUSTOS_SIEM_RETRY_MAX_SECONDS: {
    schema: Type.Integer({ minimum: 1, maximum: 86_400 }),
    expected: 'an integer from 1 to 86400',
    default: '300',
    description: 'Longest wait between retries to an unreachable SIEM destination.',
  },
  CUSTOS_AUDIT_WITNESS_FILE: {
    schema: Type.String({ minLength: 1 }),
    expected: 'a file path',
    description:
      'Append every signed audit tree head to this JSON lines file (an outside witness; keep it off the database host).',
  },
  CUSTOS_AUDIT_WITNESS_SYSLOG: {
    schema: Type.String({
      pattern: '^(tcp|tls)://(\\[[0-9A-Fa-f:.]+\\]|[A-Za-z0-9.-]+):[0-9]{1,5}$',
    }),
    expected: 'tcp://host:port or tls://host:port',
    description:
      'Send every signed audit tree head to this syslog receiver (an outside witness; tls:// uses the CUSTOS_SIEM_* CA and client files).',
  },
  CUSTOS_AUDIT_RETENTION_DAYS: {
    schema: Type.Integer({ minimum: 30, maximum: 36_500 }),
    expected: 'a number of days from 30 to 36500',
    default: '2192',
    description:
      'Keep audit events this long by default (6 years, HIPAA); tenants may set their own.',
  },
  CUSTOS_AUDIT_PRUNE_HOURS: {
    schema: Type.Integer({ minimum: 0, maximum: 24 * 365 }),
    expected: 'a number of hours from 0 to 8760',
    default: '24',
    description: 'How often the server prunes audit events past retention (0: never; use the CLI).',
  },
  CUSTOS_DETECTION_INTERVAL_MS: {
    schema: Type.Integer({ minimum: 0, maximum: 3_600_000 }),
    expected: 'an integer from 0 to 3600000',
    default: '1000',
    description:
      'How often the detection worker reads new audit events (milliseconds); 0: not on this node.',
  },
  CUSTOS_REENCRYPT_INTERVAL_MS: {
    schema: Type.Integer({ minimum: 0, maximum: 3_600_000 }),
    expected: 'an integer from 0 to 3600000',
    default: '10000',
    description:
      'How often the server looks for re-encryption to do after a key rotation (milliseconds); 0: not on this node.',
  },
  CUSTOS_REENCRYPT_BATCH_SIZE: {
    schema: Type.Integer({ minimum: 1, maximum: 10_000 }),
    expected: 'an integer from 1 to 10000',
    default: '200',
    description: 'Records (or subject keys) the re-encryption job handles per batch.',
  },
  CUSTOS_REENCRYPT_PAUSE_MS: {
    schema: Type.Integer({ minimum: 0, maximum: 60_000 }),
    expected: 'an integer from 0 to 60000',
    default: '100',
    description: 'Pause of the re-encryption job after each batch (milliseconds): its throttle.',
  },
} satisfies Record<string, VariableSpec>;

type Env = Record<string, string | undefined>;

export interface Config {
  host: string;
  port: number;
  dataDir: string;
  databaseUrl: string | undefined;
  databasePoolSize: number;
  logLevel: Static<typeof LogLevel>;
  bodyLimit: number;
  importLimit: number;
  sessionIdleMs: number;
  sessionAbsoluteMs: number;
  trustProxy: boolean;
  /** Phone region of tenants `custos setup` creates (ISO 3166-1 alpha-2); undefined: none. */
  defaultPhoneRegion: string | undefined;
  keyProvider: 'file' | 'env' | 'pkcs11';
  keyFile: string;
  /** Base64 root key (env provider only). Secret. */
  rootKey: string | undefined;
  pkcs11Library: string;
  pkcs11TokenLabel: string | undefined;
  /** Secret. */
  pkcs11Pin: string | undefined;
  pkcs11KeyLabel: string;
  /** Secret (may carry a password). Undefined: the data database's URL, or SQLite keys.db. */
  keysDatabaseUrl: string | undefined;
  keyCacheSize: number;
  loginFailuresPerAddressPerDay: number;
  /** Secret (may carry a password). Undefined: throttling counters in the database. */
  redisUrl: string | undefined;
  auditCheckpointEvery: number;
  auditCheckpointMs: number;
  /** Secret (may carry a password). Undefined: mail disabled. */
  smtpUrl: string | undefined;
  mailFrom: string;
  /** The origin users reach Custos at, without a trailing slash (`https://crm.example.com`). */
  publicUrl: string;
  /** WebAuthn relying party id: the host of `publicUrl` or a registrable parent of it. */
  webauthnRpId: string;
  siemSyslogUrl: string | undefined;
  siemFormat: 'json' | 'cef';
  siemCaFile: string | undefined;
  siemCertFile: string | undefined;
  siemKeyFile: string | undefined;
  /** Secret (may carry a token). */
  siemWebhookUrl: string | undefined;
  /** Secret. */
  siemWebhookSecret: string | undefined;
  siemBatchSize: number;
  siemIntervalMs: number;
  siemRetryMaxMs: number;
  auditWitnessFile: string | undefined;
  /** `tcp://` or `tls://` syslog receiver witnessing signed tree heads. */
  auditWitnessSyslog: string | undefined;
  /** Default audit retention (days); tenants may override. */
  auditRetentionDays: number;
  /** Interval of the server's audit prune job; 0 turns it off. */
  auditPruneMs: number;
  /** 0: this node runs no detection worker. */
  detectionIntervalMs: number;
  /** 0: this node runs no re-encryption job. */
  reencryptIntervalMs: number;
  reencryptBatchSize: number;
  reencryptPauseMs: number;
}

export class ConfigError extends Error {
  override readonly name = 'ConfigError';
}

function read(env: Env, name: keyof typeof variables): unknown {
  const spec: VariableSpec = variables[name];
  // An empty variable (`CUSTOS_PORT=` in a compose file) counts as unset: the default applies.
  const given = env[name];
  const raw = given === undefined || given === '' ? spec.default : given;
  if (raw === undefined) return undefined;
  const shown = spec.secret ? '(value hidden)' : JSON.stringify(raw);
  const wrong = () => new ConfigError(`${name} is ${shown}; expected ${spec.expected}.`);
  // Value.Convert is lenient ("8080.5" -> 8080, "1e3" -> 1, "true" -> 1): integers are digits only.
  if (spec.schema.type === 'integer' && !/^[0-9]+$/.test(raw)) throw wrong();
  const value = Value.Convert(spec.schema, raw);
  if (!Value.Check(spec.schema, value)) throw wrong();
  return value;
}

/** Parses and freezes the configuration. Throws ConfigError naming the first wrong variable. */
export function loadConfig(env: Env = process.env): Readonly<Config> {
  const config: Config = {
    host: read(env, 'CUSTOS_HOST') as string,
    port: read(env, 'CUSTOS_PORT') as number,
    dataDir: path.resolve(read(env, 'CUSTOS_DATA_DIR') as string),
    databaseUrl: read(env, 'CUSTOS_DATABASE_URL') as string | undefined,
    databasePoolSize: read(env, 'CUSTOS_DATABASE_POOL_SIZE') as number,
    logLevel: read(env, 'CUSTOS_LOG_LEVEL') as Config['logLevel'],
    bodyLimit: read(env, 'CUSTOS_BODY_LIMIT') as number,
    importLimit: read(env, 'CUSTOS_IMPORT_LIMIT') as number,
    sessionIdleMs: (read(env, 'CUSTOS_SESSION_IDLE_MINUTES') as number) * 60_000,
    sessionAbsoluteMs: (read(env, 'CUSTOS_SESSION_ABSOLUTE_HOURS') as number) * 3_600_000,
    trustProxy: read(env, 'CUSTOS_TRUST_PROXY') === 'true',
    defaultPhoneRegion: readPhoneRegion(env),
    ...readKeyConfig(env),
    loginFailuresPerAddressPerDay: read(env, 'CUSTOS_LOGIN_FAILURES_PER_ADDRESS_PER_DAY') as number,
    redisUrl: read(env, 'CUSTOS_REDIS_URL') as string | undefined,
    auditCheckpointEvery: read(env, 'CUSTOS_AUDIT_CHECKPOINT_EVERY') as number,
    auditCheckpointMs: (read(env, 'CUSTOS_AUDIT_CHECKPOINT_SECONDS') as number) * 1000,
    smtpUrl: read(env, 'CUSTOS_SMTP_URL') as string | undefined,
    mailFrom: read(env, 'CUSTOS_MAIL_FROM') as string,
    ...readPublicUrl(env),
    ...readSiemConfig(env, read(env, 'CUSTOS_AUDIT_WITNESS_SYSLOG') as string | undefined),
    auditWitnessSyslog: read(env, 'CUSTOS_AUDIT_WITNESS_SYSLOG') as string | undefined,
    auditWitnessFile: resolveOptional(read(env, 'CUSTOS_AUDIT_WITNESS_FILE') as string | undefined),
    auditRetentionDays: read(env, 'CUSTOS_AUDIT_RETENTION_DAYS') as number,
    auditPruneMs: (read(env, 'CUSTOS_AUDIT_PRUNE_HOURS') as number) * 3_600_000,
    detectionIntervalMs: read(env, 'CUSTOS_DETECTION_INTERVAL_MS') as number,
    reencryptIntervalMs: read(env, 'CUSTOS_REENCRYPT_INTERVAL_MS') as number,
    reencryptBatchSize: read(env, 'CUSTOS_REENCRYPT_BATCH_SIZE') as number,
    reencryptPauseMs: read(env, 'CUSTOS_REENCRYPT_PAUSE_MS') as number,
  };
  return Object.freeze(config);
}

function readPublicUrl(env: Env): Pick<Config, 'publicUrl' | 'webauthnRpId'> {
  const given = read(env, 'CUSTOS_PUBLIC_URL') as string | undefined;
  const raw = given ?? `http://localhost:${read(env, 'CUSTOS_PORT') as number}`;
  let url: URL;
  try {
    url = new URL(raw);
  } catch {
    throw new ConfigError(`CUSTOS_PUBLIC_URL is ${JSON.stringify(raw)}; expected a valid URL.`);
  }
  const publicUrl = url.origin;
  const host = url.hostname;
  const rpId = (read(env, 'CUSTOS_WEBAUTHN_RP_ID') as string | undefined) ?? host;
  // Browsers accept only the origin's host or a parent domain of it as the RP id.
  if (rpId !== host && !host.endsWith(`.${rpId}`)) {
    throw new ConfigError(
      `CUSTOS_WEBAUTHN_RP_ID is ${JSON.stringify(rpId)}; expected ` +
        `${variables.CUSTOS_WEBAUTHN_RP_ID.expected} (${JSON.stringify(host)}).`,
    );
  }
  return { publicUrl, webauthnRpId: rpId };
}

function readPhoneRegion(env: Env): string | undefined {
  const region = read(env, 'CUSTOS_DEFAULT_PHONE_REGION') as string | undefined;
  // Two letters are not enough: libphonenumber must have numbering rules for the region.
  if (region !== undefined && !isPhoneRegion(region)) {
    throw new ConfigError(
      `CUSTOS_DEFAULT_PHONE_REGION is ${JSON.stringify(region)}; expected ${variables.CUSTOS_DEFAULT_PHONE_REGION.expected}.`,
    );
  }
  return region;
}

function resolveOptional(file: string | undefined): string | undefined {
  return file === undefined ? undefined : path.resolve(file);
}

/** The key-management settings (src/modules/keys reads them through this type). */
export type KeyConfig = Pick<
  Config,
  | 'keyProvider'
  | 'keyFile'
  | 'rootKey'
  | 'pkcs11Library'
  | 'pkcs11TokenLabel'
  | 'pkcs11Pin'
  | 'pkcs11KeyLabel'
  | 'keysDatabaseUrl'
  | 'keyCacheSize'
>;

function readKeyConfig(env: Env): KeyConfig {
  const dataDir = path.resolve(read(env, 'CUSTOS_DATA_DIR') as string);
  const keyFile = read(env, 'CUSTOS_KEY_FILE') as string | undefined;
  const keys: KeyConfig = {
    keyProvider: read(env, 'CUSTOS_KEY_PROVIDER') as KeyConfig['keyProvider'],
    keyFile: path.resolve(keyFile ?? path.join(dataDir, 'root.key')),
    rootKey: read(env, 'CUSTOS_ROOT_KEY') as string | undefined,
    pkcs11Library: read(env, 'CUSTOS_PKCS11_LIBRARY') as string,
    pkcs11TokenLabel: read(env, 'CUSTOS_PKCS11_TOKEN_LABEL') as string | undefined,
    pkcs11Pin: read(env, 'CUSTOS_PKCS11_PIN') as string | undefined,
    pkcs11KeyLabel: read(env, 'CUSTOS_PKCS11_KEY_LABEL') as string,
    keysDatabaseUrl: read(env, 'CUSTOS_KEYS_DATABASE_URL') as string | undefined,
    keyCacheSize: read(env, 'CUSTOS_KEY_CACHE_SIZE') as number,
  };
  // A provider without what it needs would fail at the first encrypted write; fail now.
  if (keys.keyProvider === 'env' && keys.rootKey === undefined) {
    throw new ConfigError('CUSTOS_KEY_PROVIDER is "env" but CUSTOS_ROOT_KEY is not set.');
  }
  if (keys.keyProvider === 'pkcs11') {
    for (const name of ['CUSTOS_PKCS11_TOKEN_LABEL', 'CUSTOS_PKCS11_PIN'] as const) {
      if (read(env, name) === undefined) {
        throw new ConfigError(`CUSTOS_KEY_PROVIDER is "pkcs11" but ${name} is not set.`);
      }
    }
  }
  return keys;
}

export type SiemConfig = Pick<
  Config,
  | 'siemSyslogUrl'
  | 'siemFormat'
  | 'siemCaFile'
  | 'siemCertFile'
  | 'siemKeyFile'
  | 'siemWebhookUrl'
  | 'siemWebhookSecret'
  | 'siemBatchSize'
  | 'siemIntervalMs'
  | 'siemRetryMaxMs'
>;

/** `witnessSyslog`: the TLS files also serve a tls:// CUSTOS_AUDIT_WITNESS_SYSLOG. */
function readSiemConfig(env: Env, witnessSyslog?: string): SiemConfig {
  const file = (name: 'CUSTOS_SIEM_CA_FILE' | 'CUSTOS_SIEM_CERT_FILE' | 'CUSTOS_SIEM_KEY_FILE') => {
    const value = read(env, name) as string | undefined;
    return value === undefined ? undefined : path.resolve(value);
  };
  const siem: SiemConfig = {
    siemSyslogUrl: read(env, 'CUSTOS_SIEM_SYSLOG_URL') as string | undefined,
    siemFormat: read(env, 'CUSTOS_SIEM_FORMAT') as SiemConfig['siemFormat'],
    siemCaFile: file('CUSTOS_SIEM_CA_FILE'),
    siemCertFile: file('CUSTOS_SIEM_CERT_FILE'),
    siemKeyFile: file('CUSTOS_SIEM_KEY_FILE'),
    siemWebhookUrl: read(env, 'CUSTOS_SIEM_WEBHOOK_URL') as string | undefined,
    siemWebhookSecret: read(env, 'CUSTOS_SIEM_WEBHOOK_SECRET') as string | undefined,
    siemBatchSize: read(env, 'CUSTOS_SIEM_BATCH_SIZE') as number,
    siemIntervalMs: read(env, 'CUSTOS_SIEM_INTERVAL_MS') as number,
    siemRetryMaxMs: (read(env, 'CUSTOS_SIEM_RETRY_MAX_SECONDS') as number) * 1000,
  };
  for (const [name, url] of [
    ['CUSTOS_SIEM_SYSLOG_URL', siem.siemSyslogUrl],
    ['CUSTOS_AUDIT_WITNESS_SYSLOG', witnessSyslog],
  ] as const) {
    if (url !== undefined && Number(/:([0-9]+)$/.exec(url)?.[1]) > 65535) {
      throw new ConfigError(`${name} has a port above 65535.`);
    }
  }
  const tlsOnly = siem.siemCaFile ?? siem.siemCertFile ?? siem.siemKeyFile;
  if (
    tlsOnly !== undefined &&
    !siem.siemSyslogUrl?.startsWith('tls://') &&
    !witnessSyslog?.startsWith('tls://')
  ) {
    throw new ConfigError(
      'CUSTOS_SIEM_CA_FILE, CUSTOS_SIEM_CERT_FILE and CUSTOS_SIEM_KEY_FILE need a tls:// CUSTOS_SIEM_SYSLOG_URL or CUSTOS_AUDIT_WITNESS_SYSLOG.',
    );
  }
  if ((siem.siemCertFile === undefined) !== (siem.siemKeyFile === undefined)) {
    throw new ConfigError('CUSTOS_SIEM_CERT_FILE and CUSTOS_SIEM_KEY_FILE go together.');
  }
  if ((siem.siemWebhookUrl === undefined) !== (siem.siemWebhookSecret === undefined)) {
    throw new ConfigError('CUSTOS_SIEM_WEBHOOK_URL and CUSTOS_SIEM_WEBHOOK_SECRET go together.');
  }
  return siem;
}

/** The first owner's password for `custos setup`, when given in the environment. */
export function setupPasswordFrom(env: Env = process.env): string | undefined {
  const value = env.CUSTOS_SETUP_PASSWORD;
  return value === undefined || value === '' ? undefined : value;
}

/** Values that may be logged: secrets replaced. */
export function describeConfig(config: Readonly<Config>): Record<string, unknown> {
  const redact = (value: string | undefined) => (value ? '[redacted]' : undefined);
  return {
    ...config,
    databaseUrl: redact(config.databaseUrl),
    rootKey: redact(config.rootKey),
    pkcs11Pin: redact(config.pkcs11Pin),
    keysDatabaseUrl: redact(config.keysDatabaseUrl),
    redisUrl: redact(config.redisUrl),
    smtpUrl: redact(config.smtpUrl),
    siemWebhookUrl: redact(config.siemWebhookUrl),
    siemWebhookSecret: redact(config.siemWebhookSecret),
  };
}
