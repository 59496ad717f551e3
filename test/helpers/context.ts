import { Writable } from 'node:stream';
import type { FastifyInstance, LightMyRequestResponse } from 'fastify';
import { createManualClock } from '../../src/clock.ts';
import { loadConfig } from '../../src/config.ts';
import { createServices, type Services } from '../../src/compose.ts';
import { assertKeysUsable, openKeys } from '../../src/modules/keys/open.ts';
import { createProtectedValueCounter } from '../../src/modules/records/protected-values.ts';
import { SEALED_SPECS } from '../../src/sealed-specs.ts';
import { buildApp } from '../../src/http/app.ts';
import { loggerOptions } from '../../src/http/logging.ts';
import { pino } from 'pino';
import { setupTenant } from '../../src/modules/tenants/service.ts';
import type { Role } from '../../src/db/schema.ts';
import type { DatabaseHandle } from '../../src/db/database.ts';
import type { AuditSink } from '../../src/modules/auth/events.ts';
import { createTestDatabase, openAppHandle, type TestDatabase } from './database.ts';
import { acrossTenants } from '../../src/db/tenant-scope.ts';

export const PASSWORD = 'correct horse battery staple';

export interface Session {
  tenantId: string;
  tenant: string;
  userId: string;
  email: string;
  role: Role;
  cookie: string;
  csrfToken: string;
  /** Headers for a cookie-authenticated request (with the CSRF token). */
  headers: Record<string, string>;
}

export interface TestContext {
  app: FastifyInstance;
  /**
   * The app's services as test code calls them: outside a request there is no tenant scope, so
   * each call runs in the system scope, like the operator's CLI; `database` is the test's own
   * handle (past the tenant walls). The app itself uses the plain services.
   */
  services: Services;
  database: TestDatabase;
  /** The handle the app under test uses (behind the tenant walls on PostgreSQL). */
  appDatabase: DatabaseHandle;
  clock: ReturnType<typeof createManualClock>;
  /** Every JSON log line the app wrote. */
  logs: string[];
  /** A new tenant with its owner, signed in. */
  tenant(slug?: string): Promise<Session>;
  /** A user with `role` in the owner's tenant, signed in. */
  user(owner: Session, role: Role, email?: string): Promise<Session>;
  login(tenant: string, email: string, password?: string): Promise<Session>;
  /**
   * A step-up of `s` (`POST /api/v1/auth/step-up`) with `proof`: a password (by default
   * `PASSWORD`), a TOTP `{code}`, a `{recoveryCode}`, a `{passkey}` assertion, or an
   * `{authenticator}` that answers this session's passkey options. When it succeeds the session
   * goes on under its new token (`renewSession`); the answer is returned for the test to check.
   */
  stepUp(
    s: Session,
    proof?: string | StepUpProof,
    options?: { remoteAddress?: string },
  ): Promise<LightMyRequestResponse>;
  close(): Promise<void>;
}

/** What a step-up can be given (see `TestContext.stepUp`). */
export type StepUpProof =
  | { password: string }
  | { code: string }
  | { recoveryCode: string }
  | { passkey: unknown }
  | { authenticator: { assert(options: { challenge: string; rpId?: string }): unknown } };

let counter = 0;
const unique = (prefix: string) => `${prefix}${process.pid}-${++counter}`;

export async function createTestContext(
  env: Record<string, string> = {},
  options: { audit?: AuditSink } = {},
): Promise<TestContext> {
  const database = await createTestDatabase();
  const clock = createManualClock(new Date());
  // On PostgreSQL the keys live where the product puts them: schema `custos_keys` of the
  // database (the same store a CLI given CUSTOS_DATABASE_URL opens).
  const config = loadConfig({
    CUSTOS_DATA_DIR: database.dataDir,
    CUSTOS_LOG_LEVEL: 'info',
    ...(database.url === undefined ? {} : { CUSTOS_DATABASE_URL: database.url }),
    ...env,
  });
  // Keys opened eagerly and checked, as server.ts does (retiring refuses a version that still
  // seals stored values).
  const keys = await openKeys(config, {
    clock,
    protectedValues: createProtectedValueCounter(database.handle.db, SEALED_SPECS),
  });
  await assertKeysUsable(keys);
  const logs: string[] = [];
  const logStream = new Writable({
    write(chunk: Buffer, _enc, cb) {
      logs.push(...chunk.toString('utf8').split('\n').filter(Boolean));
      cb();
    },
  });
  const appDatabase = openAppHandle(database);
  const appServices = createServices({
    config,
    database: appDatabase.handle,
    clock,
    keys: keys.service,
    // Background work (mail) logs beside the requests, so tests read both in `logs`.
    log: pino(loggerOptions(config.logLevel), logStream),
    ...options,
  });
  const app = await buildApp({ config, services: appServices, logStream });
  const services = testView(appServices, database);

  async function login(tenant: string, email: string, password = PASSWORD): Promise<Session> {
    const res = await app.inject({
      method: 'POST',
      url: '/api/v1/auth/login',
      payload: { tenant, email, password },
    });
    if (res.statusCode !== 200) throw new Error(`login failed: ${res.statusCode} ${res.body}`);
    const body = res.json<{ user: { id: string; role: Role }; csrfToken: string }>();
    const cookie = sessionCookie(res);
    const tenantRow = await database.handle.db
      .selectFrom('tenants')
      .select('id')
      .where('slug', '=', tenant)
      .executeTakeFirstOrThrow();
    return {
      tenantId: tenantRow.id,
      tenant,
      userId: body.user.id,
      email,
      role: body.user.role,
      cookie,
      csrfToken: body.csrfToken,
      headers: { cookie, 'x-csrf-token': body.csrfToken },
    };
  }

  return {
    app,
    services,
    database,
    appDatabase: appDatabase.handle,
    clock,
    logs,
    async tenant(slug = unique('t')) {
      const email = `owner@${slug}.example`;
      await setupTenant(
        { db: database.handle.db, clock, users: appServices.userCrypto },
        { slug, name: `Tenant ${slug}`, ownerEmail: email, ownerName: 'Owner', password: PASSWORD },
      );
      return login(slug, email);
    },
    async user(owner, role, email = `${unique(role)}@${owner.tenant}.example`) {
      const res = await app.inject({
        method: 'POST',
        url: '/api/v1/users',
        headers: owner.headers,
        payload: { email, name: `A ${role}`, role, password: PASSWORD },
      });
      if (res.statusCode !== 201)
        throw new Error(`user creation failed: ${res.statusCode} ${res.body}`);
      return login(owner.tenant, email);
    },
    login,
    async stepUp(s, proof = PASSWORD, options = {}) {
      const inject = (url: string, payload?: object) =>
        app.inject({
          method: 'POST',
          url,
          headers: s.headers,
          ...(payload === undefined ? {} : { payload }),
          ...(options.remoteAddress === undefined ? {} : { remoteAddress: options.remoteAddress }),
        });
      let payload: object = typeof proof === 'string' ? { password: proof } : proof;
      if (typeof proof !== 'string' && 'authenticator' in proof) {
        const asked = await inject('/api/v1/auth/step-up/passkey-options');
        if (asked.statusCode !== 200) {
          throw new Error(`step-up passkey options: ${asked.statusCode} ${asked.body}`);
        }
        payload = { passkey: proof.authenticator.assert(asked.json()) };
      }
      const res = await inject('/api/v1/auth/step-up', payload);
      if (res.statusCode === 200) renewSession(s, res);
      return res;
    },
    async close() {
      await app.close();
      await services.throttleStore.close();
      await services.mailer.settled();
      services.mailer.close();
      await keys.service.close().catch(() => undefined);
      await appDatabase.close();
      await database.drop();
    },
  };
}

/** `GET /api/v1/tenant/settings` as `s`, or `PATCH` with `payload` when one is given. */
export function tenantSettings(ctx: TestContext, s: Session, payload?: object) {
  return ctx.app.inject({
    method: payload ? 'PATCH' : 'GET',
    url: '/api/v1/tenant/settings',
    headers: s.headers,
    ...(payload ? { payload } : {}),
  });
}

export function sessionCookie(res: LightMyRequestResponse): string {
  const cookie = res.cookies.find((c) => c.name === '__Host-custos_session');
  if (!cookie) throw new Error('no session cookie');
  return `${cookie.name}=${cookie.value}`;
}

/**
 * After an answer that gave the session a new token (step-up, an enrolment that lifted the
 * tenant's MFA hold), the session goes on with the new cookie and CSRF token (in place, so
 * `s.headers` captured earlier follows).
 */
export function renewSession(s: Session, res: LightMyRequestResponse): void {
  s.cookie = sessionCookie(res);
  s.csrfToken = res.json<{ csrfToken: string }>().csrfToken;
  s.headers.cookie = s.cookie;
  s.headers['x-csrf-token'] = s.csrfToken;
}

function testView(services: Services, database: TestDatabase): Services {
  const view: Record<string, unknown> = {};
  for (const [name, value] of Object.entries(services)) {
    view[name] =
      name === 'database'
        ? database.handle
        : (typeof value === 'object' && value !== null) || typeof value === 'function'
          ? acrossTenants('cli', value)
          : value;
  }
  return view as Services;
}
