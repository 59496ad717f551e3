import path from 'node:path';
import { Type, type Static, type TSchema } from '@sinclair/typebox';
import { Value } from '@sinclair/typebox/value';

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
  };
  return Object.freeze(config);
}

/** The first owner's password for `custos setup`, when given in the environment. */
export function setupPasswordFrom(env: Env = process.env): string | undefined {
  const value = env.CUSTOS_SETUP_PASSWORD;
  return value === undefined || value === '' ? undefined : value;
}

/** Values that may be logged: secrets replaced. */
export function describeConfig(config: Readonly<Config>): Record<string, unknown> {
  return { ...config, databaseUrl: config.databaseUrl ? '[redacted]' : undefined };
}
