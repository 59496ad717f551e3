import path from 'node:path';
import { describe, expect, it } from 'vitest';
import { ConfigError, describeConfig, loadConfig, setupPasswordFrom, variables } from './config.ts';

type Name = keyof typeof variables;

function errorOf(env: Record<string, string>): ConfigError {
  try {
    loadConfig(env);
  } catch (error) {
    if (error instanceof ConfigError) return error;
    throw error;
  }
  throw new Error(`no ConfigError for ${JSON.stringify(env)}`);
}

/** Wrong values for every variable, with a word of what the message must say is expected. */
const wrongValues: Record<Name, { values: string[]; expected: RegExp }> = {
  CUSTOS_HOST: { values: ['local host', 'http://localhost', 'a/b'], expected: /host name/ },
  CUSTOS_PORT: {
    values: ['abc', '70000', '65536', '-1', '8080.5', '1e3', '0x10', 'true', ' 80', '80abc'],
    expected: /integer from 0 to 65535/,
  },
  // Any non-empty path is a valid directory name; an empty one means the default.
  CUSTOS_DATA_DIR: { values: [], expected: /directory/ },
  CUSTOS_DATABASE_URL: {
    values: ['mysql://root:hunter2@db.internal/custos', 'sqlite:custos.db', 'localhost:5432'],
    expected: /postgres:\/\//,
  },
  CUSTOS_DATABASE_POOL_SIZE: { values: ['0', '201', 'ten', '2.5'], expected: /from 1 to 200/ },
  CUSTOS_LOG_LEVEL: { values: ['loud', 'INFO', 'verbose', ' info'], expected: /one of fatal/ },
  CUSTOS_BODY_LIMIT: {
    values: ['100', '1023', '104857601', '1mb'],
    expected: /bytes from 1024 to 104857600/,
  },
  CUSTOS_IMPORT_LIMIT: {
    values: ['1', '2147483649', '64M'],
    expected: /bytes from 1024 to 2147483648/,
  },
  CUSTOS_SESSION_IDLE_MINUTES: {
    values: ['0', '1441', 'thirty', '-5', '7.5'],
    expected: /minutes from 1 to 1440/,
  },
  CUSTOS_SESSION_ABSOLUTE_HOURS: {
    values: ['0', '169', '12h'],
    expected: /hours from 1 to 168/,
  },
  CUSTOS_TRUST_PROXY: { values: ['yes', '1', 'TRUE', ' true'], expected: /true or false/ },
  CUSTOS_KEY_PROVIDER: { values: ['kms', 'FILE', 'hsm'], expected: /one of file, env, pkcs11/ },
  CUSTOS_KEY_FILE: { values: [], expected: /file path/ },
  CUSTOS_ROOT_KEY: {
    values: ['c2hvcnQ=', 'A'.repeat(44), `${'A'.repeat(43)}=\n`, 'not base64 at all'],
    expected: /base64 encoding of 32 random bytes/,
  },
  CUSTOS_PKCS11_LIBRARY: { values: [], expected: /PKCS#11 module/ },
  CUSTOS_PKCS11_TOKEN_LABEL: { values: ['x'.repeat(33)], expected: /token label/ },
  CUSTOS_PKCS11_PIN: { values: ['9'.repeat(256)], expected: /user PIN/ },
  CUSTOS_PKCS11_KEY_LABEL: { values: ['k'.repeat(256)], expected: /key label/ },
  CUSTOS_KEYS_DATABASE_URL: {
    values: ['mysql://root:hunter2@db.internal/keys', 'keys.db'],
    expected: /postgres:\/\//,
  },
  CUSTOS_KEY_CACHE_SIZE: { values: ['0', '15', '1000001', 'many'], expected: /from 16 to 1000000/ },
  CUSTOS_LOGIN_FAILURES_PER_ADDRESS_PER_DAY: {
    values: ['0', '1000001', 'lots', '-1', '1.5'],
    expected: /from 1 to 1000000/,
  },
  CUSTOS_REDIS_URL: {
    values: ['http://redis:6379', '127.0.0.1:6379', 'redis:6379'],
    expected: /redis:\/\//,
  },
  CUSTOS_AUDIT_CHECKPOINT_EVERY: {
    values: ['0', '1000001', '1e3', 'often'],
    expected: /from 1 to/,
  },
  CUSTOS_AUDIT_CHECKPOINT_SECONDS: { values: ['0', '86401', '1.5'], expected: /from 1 to 86400/ },
  CUSTOS_SMTP_URL: {
    values: ['http://mail:25', 'mail.example.com:25', 'smtp://mail example'],
    expected: /smtp:\/\//,
  },
  CUSTOS_MAIL_FROM: {
    values: ['no-reply', 'a@b\r\nBcc: x@y', 'x'.repeat(330) + '@y'],
    expected: /sender address/,
  },
  CUSTOS_PUBLIC_URL: {
    values: [
      'crm.example.com',
      'ftp://crm.example.com',
      'https://crm.example.com/app?x=1',
      'https://crm.example.com/app',
      'https://u@crm.example.com',
      'https://',
    ],
    expected: /origin users reach Custos at/,
  },
  CUSTOS_WEBAUTHN_RP_ID: {
    values: ['Example.COM', 'https://localhost', 'local host', '.localhost', 'example.com'],
    expected: /parent domain/,
  },
  CUSTOS_SIEM_SYSLOG_URL: {
    values: ['udp://siem:514', 'siem:514', 'tcp://siem', 'tcp://si em:514', 'tls://siem:514/x'],
    expected: /tcp:\/\/host:port/,
  },
  CUSTOS_SIEM_FORMAT: { values: ['leef', 'JSON', 'syslog'], expected: /json or cef/ },
  CUSTOS_SIEM_CA_FILE: { values: [], expected: /PEM file/ },
  CUSTOS_SIEM_CERT_FILE: { values: [], expected: /PEM file/ },
  CUSTOS_SIEM_KEY_FILE: { values: [], expected: /PEM file/ },
  CUSTOS_SIEM_WEBHOOK_URL: {
    values: ['file:///etc/passwd', 'gopher://siem/x', 'ftp://siem/x', 'siem.example/hook'],
    expected: /http:\/\/ or https:\/\//,
  },
  CUSTOS_SIEM_WEBHOOK_SECRET: { values: ['short'], expected: /32 to 512/ },
  CUSTOS_SIEM_BATCH_SIZE: { values: ['0', '10001', 'all'], expected: /from 1 to 10000/ },
  CUSTOS_SIEM_INTERVAL_MS: { values: ['9', '3600001', '1s'], expected: /from 10 to 3600000/ },
  CUSTOS_SIEM_RETRY_MAX_SECONDS: { values: ['0', '86401'], expected: /from 1 to 86400/ },
  CUSTOS_AUDIT_WITNESS_FILE: { values: [], expected: /file path/ },
  CUSTOS_AUDIT_WITNESS_SYSLOG: {
    values: ['udp://witness:514', 'witness:514', 'file:///tmp/x', 'tls://witness'],
    expected: /tcp:\/\/host:port/,
  },
  CUSTOS_AUDIT_RETENTION_DAYS: { values: ['29', '36501', '6y'], expected: /from 30 to 36500/ },
  CUSTOS_AUDIT_PRUNE_HOURS: { values: ['-1', '8761', 'daily'], expected: /from 0 to 8760/ },
  CUSTOS_DETECTION_INTERVAL_MS: {
    values: ['-1', '3600001', '1.5', 'soon'],
    expected: /from 0 to 3600000/,
  },
  CUSTOS_REENCRYPT_INTERVAL_MS: {
    values: ['-1', '3600001', 'often'],
    expected: /from 0 to 3600000/,
  },
  CUSTOS_REENCRYPT_BATCH_SIZE: { values: ['0', '10001', 'many'], expected: /from 1 to 10000/ },
  CUSTOS_REENCRYPT_PAUSE_MS: { values: ['-1', '60001', '1s'], expected: /from 0 to 60000/ },
  // 'ZZ' and 'AA' have the shape but no numbering rules; lower case is refused, not guessed.
  CUSTOS_DEFAULT_PHONE_REGION: {
    values: ['ZZ', 'AA', 'de', 'USA', 'U', '+1'],
    expected: /ISO 3166-1 alpha-2 region code with phone numbering rules/,
  },
};

const keyDefaults = {
  keyProvider: 'file',
  keyFile: path.resolve('./data/root.key'),
  rootKey: undefined,
  pkcs11Library: '/usr/lib/softhsm/libsofthsm2.so',
  pkcs11TokenLabel: undefined,
  pkcs11Pin: undefined,
  pkcs11KeyLabel: 'custos-root',
  keysDatabaseUrl: undefined,
  keyCacheSize: 10000,
  loginFailuresPerAddressPerDay: 100,
  redisUrl: undefined,
  auditCheckpointEvery: 1000,
  auditCheckpointMs: 60_000,
  smtpUrl: undefined,
  mailFrom: 'Custos <no-reply@localhost>',
  siemSyslogUrl: undefined,
  siemFormat: 'json',
  siemCaFile: undefined,
  siemCertFile: undefined,
  siemKeyFile: undefined,
  siemWebhookUrl: undefined,
  siemWebhookSecret: undefined,
  siemBatchSize: 100,
  siemIntervalMs: 1000,
  siemRetryMaxMs: 300_000,
  auditWitnessFile: undefined,
  auditRetentionDays: 2192,
  auditPruneMs: 24 * 3_600_000,
  detectionIntervalMs: 1000,
  reencryptIntervalMs: 10_000,
  reencryptBatchSize: 200,
  reencryptPauseMs: 100,
};

describe('loadConfig', () => {
  it('uses the documented defaults when nothing is set', () => {
    const config = loadConfig({});
    expect(config).toEqual({
      host: '127.0.0.1',
      port: 8080,
      dataDir: path.resolve('./data'),
      databaseUrl: undefined,
      databasePoolSize: 10,
      logLevel: 'info',
      bodyLimit: 1024 * 1024,
      importLimit: 64 * 1024 * 1024,
      sessionIdleMs: 30 * 60_000,
      sessionAbsoluteMs: 12 * 3_600_000,
      trustProxy: false,
      defaultPhoneRegion: undefined,
      ...keyDefaults,
      publicUrl: 'http://localhost:8080',
      webauthnRpId: 'localhost',
    });
  });

  it('treats an empty variable as unset, so the default applies', () => {
    const config = loadConfig({
      CUSTOS_HOST: '',
      CUSTOS_PORT: '',
      CUSTOS_DATABASE_URL: '',
      CUSTOS_LOG_LEVEL: '',
      CUSTOS_SESSION_IDLE_MINUTES: '',
    });
    expect(config).toMatchObject({
      host: '127.0.0.1',
      port: 8080,
      databaseUrl: undefined,
      logLevel: 'info',
      sessionIdleMs: 30 * 60_000,
    });
  });

  it('reads every variable and converts units', () => {
    const config = loadConfig({
      CUSTOS_HOST: '0.0.0.0',
      CUSTOS_PORT: '0',
      CUSTOS_DATA_DIR: 'var/custos',
      CUSTOS_DATABASE_URL: 'postgresql://custos:pw@db:5432/custos',
      CUSTOS_DATABASE_POOL_SIZE: '200',
      CUSTOS_LOG_LEVEL: 'silent',
      CUSTOS_BODY_LIMIT: '1024',
      CUSTOS_IMPORT_LIMIT: '2147483648',
      CUSTOS_SESSION_IDLE_MINUTES: '5',
      CUSTOS_SESSION_ABSOLUTE_HOURS: '168',
      CUSTOS_TRUST_PROXY: 'true',
      CUSTOS_DEFAULT_PHONE_REGION: 'DE',
    });
    expect(config).toEqual({
      host: '0.0.0.0',
      port: 0,
      dataDir: path.resolve('var/custos'),
      databaseUrl: 'postgresql://custos:pw@db:5432/custos',
      databasePoolSize: 200,
      logLevel: 'silent',
      bodyLimit: 1024,
      importLimit: 2147483648,
      sessionIdleMs: 5 * 60_000,
      sessionAbsoluteMs: 168 * 3_600_000,
      trustProxy: true,
      defaultPhoneRegion: 'DE',
      ...keyDefaults,
      keyFile: path.resolve('var/custos/root.key'),
      publicUrl: 'http://localhost:0',
      webauthnRpId: 'localhost',
    });
  });

  it('reads the mail settings; the public URL loses its trailing slash', () => {
    const config = loadConfig({
      CUSTOS_SMTP_URL: 'smtps://relay:pw@mail.example.com:465',
      CUSTOS_MAIL_FROM: 'Acme CRM <crm@acme.example>',
      CUSTOS_PUBLIC_URL: 'https://crm.acme.example/',
    });
    expect(config).toMatchObject({
      smtpUrl: 'smtps://relay:pw@mail.example.com:465',
      mailFrom: 'Acme CRM <crm@acme.example>',
      publicUrl: 'https://crm.acme.example',
    });
    expect(describeConfig(config).smtpUrl).toBe('[redacted]');
    expect(loadConfig({ CUSTOS_PORT: '9000' }).publicUrl).toBe('http://localhost:9000');
  });

  it('takes the public URL as an origin and the WebAuthn RP id from its host by default', () => {
    expect(loadConfig({ CUSTOS_PORT: '3000' })).toMatchObject({
      publicUrl: 'http://localhost:3000',
      webauthnRpId: 'localhost',
    });
    expect(loadConfig({ CUSTOS_PUBLIC_URL: 'https://CRM.Example.com/' })).toMatchObject({
      publicUrl: 'https://crm.example.com',
      webauthnRpId: 'crm.example.com',
    });
    const parent = loadConfig({
      CUSTOS_PUBLIC_URL: 'https://crm.example.com:8443',
      CUSTOS_WEBAUTHN_RP_ID: 'example.com',
    });
    expect(parent).toMatchObject({
      publicUrl: 'https://crm.example.com:8443',
      webauthnRpId: 'example.com',
    });
    // A suffix that is not a parent domain is refused.
    const error = errorOf({
      CUSTOS_PUBLIC_URL: 'https://crm.example.com',
      CUSTOS_WEBAUTHN_RP_ID: 'ample.com',
    });
    expect(error.message).toContain('CUSTOS_WEBAUTHN_RP_ID');
  });

  it('accepts host names, IPv4 and IPv6 addresses to listen on', () => {
    for (const host of ['localhost', 'crm.example.org', '0.0.0.0', '::', '::1', 'fe80::1%eth0']) {
      expect(loadConfig({ CUSTOS_HOST: host }).host).toBe(host);
    }
  });

  it('returns a frozen object', () => {
    const config = loadConfig({});
    expect(Object.isFrozen(config)).toBe(true);
    expect(() => {
      (config as { port: number }).port = 1;
    }).toThrow(TypeError);
  });

  it('has a wrong-value case for every documented variable', () => {
    expect(Object.keys(wrongValues).sort()).toEqual(Object.keys(variables).sort());
  });

  for (const [name, { values, expected }] of Object.entries(wrongValues)) {
    for (const value of values) {
      it(`refuses ${name}=${JSON.stringify(value)} naming the variable and what it expects`, () => {
        const error = errorOf({ [name]: value });
        expect(error.name).toBe('ConfigError');
        expect(error.message).toContain(name);
        expect(error.message).toMatch(/expected /);
        expect(error.message).toMatch(expected);
        expect(error.message).toContain(variables[name as Name].expected);
      });
    }
  }

  it('never echoes the database URL, which may carry a password', () => {
    const url = 'mysql://root:hunter2@db.internal/custos';
    const error = errorOf({ CUSTOS_DATABASE_URL: url });
    expect(error.message).toContain('CUSTOS_DATABASE_URL');
    expect(error.message).not.toContain('hunter2');
    expect(error.message).not.toContain('db.internal');
    expect(error.message).not.toContain('mysql');
  });

  it('echoes a wrong non-secret value so the operator sees what was read', () => {
    expect(errorOf({ CUSTOS_PORT: 'abc' }).message).toBe(
      'CUSTOS_PORT is "abc"; expected an integer from 0 to 65535.',
    );
    expect(errorOf({ CUSTOS_LOG_LEVEL: 'loud' }).message).toContain('"loud"');
  });

  it('reports the first wrong variable even when later ones are fine', () => {
    const error = errorOf({ CUSTOS_PORT: '99999', CUSTOS_LOG_LEVEL: 'debug' });
    expect(error.message).toMatch(/^CUSTOS_PORT /);
  });
});

describe('loadConfig for the key providers', () => {
  const rootKey = Buffer.alloc(32, 7).toString('base64');

  it('puts the root key file in the data directory unless CUSTOS_KEY_FILE names one', () => {
    expect(loadConfig({ CUSTOS_DATA_DIR: 'var/x' }).keyFile).toBe(path.resolve('var/x/root.key'));
    expect(loadConfig({ CUSTOS_KEY_FILE: '/etc/custos/root.key' }).keyFile).toBe(
      '/etc/custos/root.key',
    );
  });

  it('reads the env provider root key and the pkcs11 settings', () => {
    expect(loadConfig({ CUSTOS_KEY_PROVIDER: 'env', CUSTOS_ROOT_KEY: rootKey })).toMatchObject({
      keyProvider: 'env',
      rootKey,
    });
    expect(
      loadConfig({
        CUSTOS_KEY_PROVIDER: 'pkcs11',
        CUSTOS_PKCS11_TOKEN_LABEL: 'custos',
        CUSTOS_PKCS11_PIN: '1234',
        CUSTOS_PKCS11_KEY_LABEL: 'root-2026',
      }),
    ).toMatchObject({ pkcs11TokenLabel: 'custos', pkcs11Pin: '1234', pkcs11KeyLabel: 'root-2026' });
  });

  it('refuses the env provider without CUSTOS_ROOT_KEY', () => {
    expect(errorOf({ CUSTOS_KEY_PROVIDER: 'env' }).message).toContain('CUSTOS_ROOT_KEY is not set');
  });

  it('refuses the pkcs11 provider without a token label or PIN', () => {
    expect(errorOf({ CUSTOS_KEY_PROVIDER: 'pkcs11', CUSTOS_PKCS11_PIN: '1234' }).message).toContain(
      'CUSTOS_PKCS11_TOKEN_LABEL is not set',
    );
    expect(
      errorOf({ CUSTOS_KEY_PROVIDER: 'pkcs11', CUSTOS_PKCS11_TOKEN_LABEL: 't' }).message,
    ).toContain('CUSTOS_PKCS11_PIN is not set');
  });

  it('never echoes a wrong root key or PIN', () => {
    const almost = `${rootKey.slice(0, 40)}QQ==`;
    expect(errorOf({ CUSTOS_ROOT_KEY: almost }).message).not.toContain(almost.slice(0, 20));
    const pin = '9'.repeat(256);
    expect(errorOf({ CUSTOS_PKCS11_PIN: pin }).message).not.toContain('9999');
  });
});

describe('describeConfig', () => {
  it('redacts the root key, the PIN and the key store URL', () => {
    const shown = describeConfig(
      loadConfig({
        CUSTOS_ROOT_KEY: Buffer.alloc(32, 9).toString('base64'),
        CUSTOS_PKCS11_PIN: 'pin-4321',
        CUSTOS_KEYS_DATABASE_URL: 'postgres://k:k3ysecret@h/keys',
      }),
    );
    const text = JSON.stringify(shown);
    expect(text).not.toContain(Buffer.alloc(32, 9).toString('base64'));
    expect(text).not.toContain('pin-4321');
    expect(text).not.toContain('k3ysecret');
    expect(shown).toMatchObject({
      rootKey: '[redacted]',
      pkcs11Pin: '[redacted]',
      keysDatabaseUrl: '[redacted]',
    });
  });

  it('redacts the database URL and keeps the rest', () => {
    const config = loadConfig({ CUSTOS_DATABASE_URL: 'postgres://u:s3cret@h/db' });
    const shown = describeConfig(config);
    expect(JSON.stringify(shown)).not.toContain('s3cret');
    expect(shown.databaseUrl).toBe('[redacted]');
    expect(shown.port).toBe(8080);
    expect(describeConfig(loadConfig({})).databaseUrl).toBeUndefined();
  });
});

describe('setupPasswordFrom', () => {
  it('reads CUSTOS_SETUP_PASSWORD and treats empty as absent', () => {
    expect(setupPasswordFrom({ CUSTOS_SETUP_PASSWORD: 'a long passphrase here' })).toBe(
      'a long passphrase here',
    );
    expect(setupPasswordFrom({ CUSTOS_SETUP_PASSWORD: '' })).toBeUndefined();
    expect(setupPasswordFrom({})).toBeUndefined();
  });
});

describe('loadConfig for SIEM streaming', () => {
  const secret = 's'.repeat(32);

  it('reads a TLS syslog destination with its CA and client certificate', () => {
    expect(
      loadConfig({
        CUSTOS_SIEM_SYSLOG_URL: 'tls://siem.example:6514',
        CUSTOS_SIEM_FORMAT: 'cef',
        CUSTOS_SIEM_CA_FILE: 'ca.pem',
        CUSTOS_SIEM_CERT_FILE: '/etc/custos/client.pem',
        CUSTOS_SIEM_KEY_FILE: '/etc/custos/client.key',
      }),
    ).toMatchObject({
      siemSyslogUrl: 'tls://siem.example:6514',
      siemFormat: 'cef',
      siemCaFile: path.resolve('ca.pem'),
      siemCertFile: '/etc/custos/client.pem',
      siemKeyFile: '/etc/custos/client.key',
    });
    expect(loadConfig({ CUSTOS_SIEM_SYSLOG_URL: 'tcp://[::1]:514' }).siemSyslogUrl).toBe(
      'tcp://[::1]:514',
    );
  });

  it('refuses TLS files without a tls:// URL, and half a client certificate', () => {
    expect(
      errorOf({ CUSTOS_SIEM_SYSLOG_URL: 'tcp://siem:514', CUSTOS_SIEM_CA_FILE: 'ca.pem' }).message,
    ).toContain('need a tls://');
    expect(
      errorOf({ CUSTOS_SIEM_SYSLOG_URL: 'tls://siem:6514', CUSTOS_SIEM_CERT_FILE: 'c.pem' })
        .message,
    ).toContain('go together');
    expect(errorOf({ CUSTOS_SIEM_SYSLOG_URL: 'tcp://siem:70000' }).message).toContain('65535');
  });

  it('reads a syslog witness, whose tls:// URL may carry the TLS files alone', () => {
    expect(
      loadConfig({
        CUSTOS_AUDIT_WITNESS_SYSLOG: 'tls://witness.example:6514',
        CUSTOS_SIEM_CA_FILE: 'ca.pem',
      }),
    ).toMatchObject({
      auditWitnessSyslog: 'tls://witness.example:6514',
      siemSyslogUrl: undefined,
      siemCaFile: path.resolve('ca.pem'),
    });
    expect(
      errorOf({ CUSTOS_AUDIT_WITNESS_SYSLOG: 'tcp://w:514', CUSTOS_SIEM_CA_FILE: 'ca.pem' })
        .message,
    ).toContain('need a tls://');
    expect(errorOf({ CUSTOS_AUDIT_WITNESS_SYSLOG: 'tcp://w:65536' }).message).toContain(
      'CUSTOS_AUDIT_WITNESS_SYSLOG has a port above 65535',
    );
  });

  it('needs the webhook URL and secret together, and never echoes either', () => {
    expect(errorOf({ CUSTOS_SIEM_WEBHOOK_URL: 'https://siem.example/h' }).message).toContain(
      'go together',
    );
    expect(errorOf({ CUSTOS_SIEM_WEBHOOK_SECRET: secret }).message).toContain('go together');
    const bad = errorOf({ CUSTOS_SIEM_WEBHOOK_URL: 'gopher://token-abc@siem/x' }).message;
    expect(bad).not.toContain('token-abc');
    const config = loadConfig({
      CUSTOS_SIEM_WEBHOOK_URL: 'https://siem.example/h?token=abc',
      CUSTOS_SIEM_WEBHOOK_SECRET: secret,
    });
    expect(JSON.stringify(describeConfig(config))).not.toMatch(/token=abc|s{32}/);
  });
});
