import type { FastifyInstance, FastifyReply, FastifyRequest } from 'fastify';
import type {} from '@fastify/cookie';
import { requireSecondFactorEnrolled, type Actor, type RequestMeta } from '../core/policy/index.ts';
import { AppError } from '../errors.ts';
import type { AuthService } from '../modules/auth/service.ts';
import { csrfTokenFor, safeEqual } from '../modules/identity/tokens.ts';

export const SESSION_COOKIE = '__Host-custos_session';
export const CSRF_HEADER = 'x-csrf-token';

declare module 'fastify' {
  interface FastifyRequest {
    actor: Actor | null;
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

export function registerAuthentication(app: FastifyInstance, auth: AuthService) {
  app.decorateRequest('actor', null);
  app.addHook('onRequest', async (request: FastifyRequest, _reply: FastifyReply) => {
    if (request.routeOptions.config.public === true || request.routeOptions.url === undefined)
      return;
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
      request.actor = await auth.actorFromApiKey(match[1], meta);
      requireSecondFactorEnrolled(request.actor, false);
      return;
    }
    const token = request.cookies[SESSION_COOKIE];
    if (!token) {
      throw new AppError('unauthenticated', 'auth.unauthenticated', 'no credentials', {
        detail: 'Sign in or send an API key.',
      });
    }
    request.actor = await auth.actorFromSession(token, meta);
    checkCsrf(request, token);
    requireSecondFactorEnrolled(request.actor, request.routeOptions.config.mfaEnrolment === true);
  });
}
