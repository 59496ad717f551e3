import type { FastifyInstance, FastifyRequest } from 'fastify';
import type {} from '@fastify/cookie';
import { requireSecondFactorEnrolled, type Actor, type RequestMeta } from '../core/policy/index.ts';
import { AppError } from '../errors.ts';
import type { AuthService } from '../modules/auth/service.ts';
import { csrfTokenFor, safeEqual } from '../modules/identity/tokens.ts';
import { runWithHolder, type ScopeHolder } from '../db/tenant-scope.ts';

export const SESSION_COOKIE = '__Host-custos_session';
export const CSRF_HEADER = 'x-csrf-token';

declare module 'fastify' {
  interface FastifyRequest {
    actor: Actor | null;
    /** The request's tenant scope (see src/db/tenant-scope.ts). */
    tenantScope: ScopeHolder | null;
  }
  interface FastifyContextConfig {
    /** Reachable without a session or API key. */
    public?: boolean;
    /**
     * Reachable by a session that must still enrol a second factor (the tenant requires one):
     * enrolment itself, step-up, the user's own session information and sign-out.
     */
    mfaEnrolment?: boolean;
  }
}

export function requestMeta(request: FastifyRequest): RequestMeta {
  const ua = request.headers['user-agent'];
  return {
    requestId: request.id,
    ip: request.ip || null,
    userAgent: typeof ua === 'string' ? ua : null,
  };
}

/** The authenticated actor; throws when a route forgot to require one. */
export function actorOf(request: FastifyRequest): Actor {
  if (!request.actor) throw new TypeError('route reached without an actor');
  return request.actor;
}

const UNSAFE = new Set(['POST', 'PUT', 'PATCH', 'DELETE']);

/**
 * Cross-site request forgery defence for cookie-authenticated writes: the request must carry
 * the session's CSRF token (a cross-site page cannot read it), and an Origin header, when
 * present, must match the Host. Bearer-authenticated requests are not exposed to CSRF.
 */
function checkCsrf(request: FastifyRequest, sessionToken: string) {
  if (!UNSAFE.has(request.method)) return;
  const fail = (why: string) =>
    new AppError('forbidden', 'auth.csrf_failed', `csrf check failed: ${why}`, {
      detail: `Cookie-authenticated writes need the ${CSRF_HEADER} header from sign-in and a same-origin request.`,
    });
  const origin = request.headers.origin;
  if (origin !== undefined && !sameOrigin(origin, request.headers.host)) throw fail('origin');
  const site = request.headers['sec-fetch-site'];
  if (site === 'cross-site') throw fail('sec-fetch-site');
  const token = request.headers[CSRF_HEADER];
  if (typeof token !== 'string' || !safeEqual(token, csrfTokenFor(sessionToken)))
    throw fail('token');
}

function sameOrigin(origin: string, host: string | undefined): boolean {
  try {
    const url = new URL(origin);
    // The session cookie is Secure: our own pages are https, or http on loopback in development.
    // A plain-http page on our host name (a downgraded or injected one) is another origin.
    const loopback = ['localhost', '127.0.0.1', '[::1]'].includes(url.hostname);
    if (url.protocol !== 'https:' && !(url.protocol === 'http:' && loopback)) return false;
    const withPort = url.port ? url.host : `${url.host}:${url.protocol === 'https:' ? 443 : 80}`;
    return host !== undefined && (url.host === host || withPort === host);
  } catch {
    return false;
  }
}

/**
 * Tenant walls for HTTP: every request runs in a tenant scope holder. Until the actor is known it
 * is `system` (pre-auth: the session or API-key lookup, and the public routes that sign someone
 * in, whose tenant is what they establish); once the auth hook knows the actor it becomes the
 * actor's tenant for the rest of the request. The holder is entered again where the request
 * resumes from a socket event, outside its async context: after its body was read
 * (`preValidation`; every later stage, the handler and the answer's `onSend` follow from there),
 * when an error is answered (a body that failed to parse) and when the response has finished.
 * Each stage costs a hook call on every request, so there are no more of them than that
 * (test/integration/tenant-scope-http.test.ts checks every stage).
 */
function registerTenantScope(app: FastifyInstance) {
  app.decorateRequest('tenantScope', null);
  app.addHook('onRequest', (request, _reply, done) => {
    const holder: ScopeHolder = { scope: { kind: 'system', reason: 'pre-auth' } };
    request.tenantScope = holder;
    runWithHolder(holder, done);
  });
  const reenter = (request: FastifyRequest, done: () => void) => {
    if (request.tenantScope) runWithHolder(request.tenantScope, done);
    else done();
  };
  app.addHook('preValidation', (request, _reply, done) => reenter(request, done));
  app.addHook('onResponse', (request, _reply, done) => reenter(request, done));
  app.addHook('onError', (request, _reply, _error, done) => reenter(request, done));
}

/**
 * Who is calling: sets `request.actor` and narrows the tenant scope, or throws. Undefined when
 * done without waiting (a public route, a known session): no promise on the common path.
 */
function authenticate(request: FastifyRequest, auth: AuthService): Promise<void> | undefined {
  // `routeOptions` is a getter that builds a new object on every read: read it once.
  const route = request.routeOptions;
  if (route.config.public === true || route.url === undefined) return undefined;
  const meta = requestMeta(request);
  const header = request.headers.authorization;
  if (typeof header === 'string' && header.length > 0) {
    const match = /^Bearer\s+(\S+)$/i.exec(header);
    if (!match?.[1]) {
      throw new AppError(
        'unauthenticated',
        'auth.api_key_invalid',
        'malformed authorization header',
        {
          detail: 'Send API keys as "Authorization: Bearer <key>".',
        },
      );
    }
    return auth.actorFromApiKey(match[1], meta).then((actor) => {
      admit(request, actor);
      requireSecondFactorEnrolled(actor, false);
    });
  }
  const token = request.cookies[SESSION_COOKIE];
  if (!token) {
    throw new AppError('unauthenticated', 'auth.unauthenticated', 'no credentials', {
      detail: 'Sign in or send an API key.',
    });
  }
  const enrolment = route.config.mfaEnrolment === true;
  const actor = auth.actorFromSession(token, meta);
  if (actor instanceof Promise) {
    return actor.then((known) => admitSession(request, known, token, enrolment));
  }
  admitSession(request, actor, token, enrolment);
  return undefined;
}

// Module-level, not a closure per request: tsx names every named closure as it is created.
function admitSession(request: FastifyRequest, actor: Actor, token: string, enrolment: boolean) {
  admit(request, actor);
  checkCsrf(request, token);
  requireSecondFactorEnrolled(actor, enrolment);
}

/** From here on the request is `actor`'s and sees its tenant only. */
function admit(request: FastifyRequest, actor: Actor) {
  request.actor = actor;
  if (request.tenantScope) request.tenantScope.scope = { kind: 'tenant', tenantId: actor.tenantId };
}

export function registerAuthentication(app: FastifyInstance, auth: AuthService) {
  app.decorateRequest('actor', null);
  registerTenantScope(app);
  app.addHook('onRequest', (request, _reply, done) => {
    let pending: Promise<void> | undefined;
    try {
      pending = authenticate(request, auth);
    } catch (error) {
      done(error as Error);
      return;
    }
    if (pending) pending.then(() => done(), done);
    else done();
  });
}
