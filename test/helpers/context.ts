import { Writable } from 'node:stream';
import type { FastifyInstance, LightMyRequestResponse } from 'fastify';
import { createManualClock } from '../../src/clock.ts';
import { loadConfig } from '../../src/config.ts';
import { createServices, type Services } from '../../src/compose.ts';
import { assertKeysUsable, openKeys } from '../../src/modules/keys/open.ts';
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
  close(): Promise<void>;
}

let counter = 0;
const unique = (prefix: string) => `${prefix}${process.pid}-${++counter}`;

export async function createTestContext(
  env: Record<string, string> = {},
  options: { audit?: AuditSink } = {},
): Promise<TestContext> {
  const database = await createTestDatabase();
  const clock = createManualClock(new Date());
  const config = loadConfig({
    CUSTOS_DATA_DIR: database.dataDir,
    CUSTOS_LOG_LEVEL: 'info',
    ...env,
  });
  // Keys opened eagerly and checked, as server.ts does.
  const keys = await openKeys(config, { clock });
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
        { db: database.handle.db, clock },
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

export function sessionCookie(res: LightMyRequestResponse): string {
  const cookie = res.cookies.find((c) => c.name === '__Host-custos_session');
  if (!cookie) throw new Error('no session cookie');
  return `${cookie.name}=${cookie.value}`;
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
