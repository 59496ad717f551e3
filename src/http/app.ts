import { randomUUID } from 'node:crypto';
import cookie from '@fastify/cookie';
import swagger from '@fastify/swagger';
import swaggerUi from '@fastify/swagger-ui';
import { Type } from '@sinclair/typebox';
import Fastify, { type FastifyInstance } from 'fastify';
import type { DestinationStream } from 'pino';
import type { Config } from '../config.ts';
import type { Services } from '../compose.ts';
import { AppError } from '../errors.ts';
import { registerAuthentication } from './auth.ts';
import { sendProblem, toAppError } from './errors.ts';
import { loggerOptions } from './logging.ts';
import { Problem, problemResponse } from './schemas.ts';
import { validatorCompiler } from './validation.ts';
import { registerAuthRoutes } from '../modules/auth/routes.ts';
import { registerAccountRoutes } from '../modules/account/routes.ts';
import { registerUserRoutes } from '../modules/users/routes.ts';
import { registerRoleRoutes } from '../modules/roles/routes.ts';
import { registerTeamRoutes } from '../modules/teams/routes.ts';
import { registerPermissionRoutes } from '../modules/permissions/routes.ts';
import { registerSessionRoutes } from '../modules/auth/session-routes.ts';
import { registerTenantSettingsRoutes } from '../modules/tenant-settings/routes.ts';
import { registerMfaRoutes } from '../modules/mfa/routes.ts';
import { registerPasskeyRoutes } from '../modules/passkeys/routes.ts';
import { registerApiKeyRoutes } from '../modules/api-keys/routes.ts';
import { registerAuditRoutes } from '../modules/audit/routes.ts';
import { registerReportRoutes } from '../modules/reports/routes.ts';
import { registerAuditSettingsRoutes } from '../modules/audit/settings-routes.ts';
import { registerHttpAudit } from '../modules/audit/api-call-hook.ts';
import { registerDetectionRoutes } from '../modules/detection/routes.ts';
import { registerRecordRoutes } from '../modules/records/routes.ts';
import { registerContactTransferRoutes } from '../modules/contacts/transfer-routes.ts';
import { registerRevealRoute } from '../modules/records/reveal-routes.ts';
import { registerBreakGlassRoutes } from '../modules/break-glass/routes.ts';
import { ContactCreate, ContactFilters, ContactItem } from '../modules/contacts/schema.ts';
import { CompanyCreate, CompanyFilters, CompanyItem } from '../modules/companies/schema.ts';
import { DealCreate, DealFilters, DealItem } from '../modules/deals/schema.ts';
import { ActivityCreate, ActivityFilters, ActivityItem } from '../modules/activities/schema.ts';

export interface AppOptions {
  config: Pick<Config, 'logLevel' | 'bodyLimit' | 'importLimit' | 'trustProxy'>;
  services: Services;
  /** Where JSON log lines go (standard output when absent); tests capture them. */
  logStream?: DestinationStream;
}

/** Builds the HTTP application without listening; tests drive it with `app.inject()`. */
export async function buildApp(options: AppOptions): Promise<FastifyInstance> {
  const { config, services } = options;
  const app = Fastify({
    logger: {
      ...loggerOptions(config.logLevel),
      ...(options.logStream ? { stream: options.logStream } : {}),
    },
    bodyLimit: config.bodyLimit,
    trustProxy: config.trustProxy,
    genReqId: () => randomUUID(),
    requestIdHeader: false,
    ajv: { customOptions: { removeAdditional: false } },
    routerOptions: { ignoreTrailingSlash: false, maxParamLength: 200 },
  });
  app.setValidatorCompiler(validatorCompiler);
  // The API speaks JSON only: Fastify's built-in text/plain parser would let a plain-text body
  // reach validation (400) instead of being refused as an unsupported media type (415).
  app.removeContentTypeParser('text/plain');
  app.addSchema(Problem);

  app.setErrorHandler((error, request, reply) => sendProblem(request, reply, toAppError(error)));
  app.setNotFoundHandler((request, reply) =>
    sendProblem(
      request,
      reply,
      new AppError('not_found', 'request.route_not_found', 'no such route', {
        detail: `${request.method} ${request.url.split('?')[0] ?? ''} is not a route of this API.`,
      }),
    ),
  );
  // Headers every answer carries, errors included (they survive the error handler), set once
  // when the request arrives: a synchronous hook costs less than an async onSend on every reply.
  app.addHook('onRequest', (request, reply, done) => {
    reply.header('x-request-id', request.id);
    reply.header('x-content-type-options', 'nosniff');
    reply.header('referrer-policy', 'no-referrer');
    if (request.url.startsWith('/api/')) reply.header('cache-control', 'no-store');
    done();
  });

  await app.register(cookie);
  await app.register(swagger, {
    openapi: {
      openapi: '3.1.0',
      info: {
        title: 'Custos CRM API',
        version: '1',
        description:
          'Contacts, companies, deals and activities. Errors are application/problem+json (RFC 9457) with a stable `code`.',
      },
      components: {
        securitySchemes: {
          session: { type: 'apiKey', in: 'cookie', name: '__Host-custos_session' },
          apiKey: { type: 'http', scheme: 'bearer', description: 'custos_<prefix>_<secret>' },
        },
      },
      security: [{ session: [] }, { apiKey: [] }],
    },
    refResolver: {
      buildLocalReference: (json, _base, _fragment, i) =>
        typeof json.$id === 'string' ? json.$id : `def-${i}`,
    },
  });
  // The UI is static and loads the public document: reachable without signing in.
  app.addHook('onRoute', (route) => {
    if (route.url === '/docs' || route.url.startsWith('/docs/')) {
      route.config = { ...route.config, public: true };
    }
  });
  await app.register(swaggerUi, {
    routePrefix: '/docs',
    uiConfig: { url: '/api/v1/openapi.json' },
  });

  registerAuthentication(app, services.auth);
  registerHttpAudit(app, {
    db: services.database.db,
    log: services.auditLog,
    policy: services.auditSettings,
  });

  app.get('/api/v1/openapi.json', { config: { public: true }, schema: { hide: true } }, async () =>
    app.swagger(),
  );
  app.get(
    '/healthz',
    {
      config: { public: true },
      schema: {
        tags: ['Health'],
        response: { 200: Type.Object({ status: Type.Literal('ok') }), 500: problemResponse },
      },
    },
    async () => ({ status: 'ok' as const }),
  );
  app.get(
    '/readyz',
    {
      config: { public: true },
      schema: {
        tags: ['Health'],
        response: { 200: Type.Object({ status: Type.Literal('ready') }), 503: problemResponse },
      },
    },
    async () => {
      const probes = [
        ['database', () => services.database.ping()],
        ['key store', () => services.keys.ping()],
      ] as const;
      for (const [what, probe] of probes) {
        try {
          await probe();
        } catch (error) {
          throw new AppError('unavailable', 'server.unavailable', `${what} unreachable`, {
            detail: `The ${what} is not reachable.`,
            cause: error,
          });
        }
      }
      return { status: 'ready' as const };
    },
  );

  registerAuthRoutes(app, services.auth);
  registerAccountRoutes(app, services.account);
  registerMfaRoutes(app, services.mfa, services.clock);
  registerPasskeyRoutes(app, {
    passkeys: services.passkeys,
    signIn: services.passkeySignIn,
    auth: services.auth,
  });
  registerUserRoutes(app, services.users);
  registerRoleRoutes(app, services.roles);
  registerTeamRoutes(app, services.teams);
  registerPermissionRoutes(app, services.permissions);
  registerSessionRoutes(app, services.sessions);
  registerTenantSettingsRoutes(app, services.tenantSettings);
  registerApiKeyRoutes(app, services.apiKeys);
  registerAuditRoutes(app, { service: services.auditLog, queries: services.auditQueries });
  registerReportRoutes(app, services.reports);
  registerAuditSettingsRoutes(app, services.auditSettings);
  registerDetectionRoutes(app, {
    alerts: services.alerts,
    settings: services.detectionSettings,
  });
  await registerContactTransferRoutes(app, {
    transfer: services.contactTransfer,
    importLimit: config.importLimit,
  });
  registerRevealRoute(app, { path: 'contacts', name: 'Contact', reveal: services.contactReveal });
  registerBreakGlassRoutes(app, services.breakGlass);
  registerRecordRoutes(app, {
    path: 'contacts',
    name: 'Contact',
    service: services.contacts,
    item: ContactItem,
    create: ContactCreate,
    filters: ContactFilters,
  });
  registerRecordRoutes(app, {
    path: 'companies',
    name: 'Company',
    service: services.companies,
    item: CompanyItem,
    create: CompanyCreate,
    filters: CompanyFilters,
  });
  registerRecordRoutes(app, {
    path: 'deals',
    name: 'Deal',
    service: services.deals,
    item: DealItem,
    create: DealCreate,
    filters: DealFilters,
  });
  registerRecordRoutes(app, {
    path: 'activities',
    name: 'Activity',
    service: services.activities,
    item: ActivityItem,
    create: ActivityCreate,
    filters: ActivityFilters,
  });

  await app.ready();
  return app;
}
