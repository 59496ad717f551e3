import type { FastifyInstance, FastifyReply, FastifyRequest } from 'fastify';
import type { Kysely } from 'kysely';
import type { Database } from '../../db/schema.ts';
import { AppError } from '../../errors.ts';
import type { Actor } from '../../core/policy/index.ts';
import { auditActor } from './event.ts';
import { appendAlone, type AuditRecorder } from './service.ts';
import type { CategoriesSource } from './settings.ts';

/**
 * Audit events seen at the HTTP layer: refused authorizations (mandatory), and the optional
 * `apiCalls` category: one `api.call` event per authenticated API request
 * (method and route pattern as the target, never the URL with its ids or query; the status as
 * the reason). Written after the response, in its own transaction: the call's own change was
 * already recorded fail-closed by its service, so a failure here is logged, not returned.
 * With the category off it costs one cached lookup per request and no database work.
 */
export function registerHttpAudit(
  app: FastifyInstance,
  deps: {
    db: Kysely<Database>;
    log: AuditRecorder;
    policy: CategoriesSource;
  },
) {
  /**
   * Mandatory: every authorization refusal of a signed-in caller (`forbidden`: policy.forbidden,
   * user.role_not_allowed, auth.csrf_failed...) as `authz.denied`, the route as target and the
   * refusal code as reason. Nothing changed, so there is no transaction to join; written before
   * the 403 is sent, and a failure to write it is logged.
   */
  app.addHook('onError', async (request, _reply, error) => {
    const actor = request.actor;
    if (!actor || !(error instanceof AppError) || error.kind !== 'forbidden') return;
    try {
      await appendAlone(deps.db, deps.log, [
        {
          tenantId: actor.tenantId,
          type: 'authz.denied',
          ...auditActor(actor),
          target: { type: 'route', id: `${request.method} ${request.routeOptions.url ?? '?'}` },
          outcome: 'failure',
          reason: error.code,
        },
      ]);
    } catch (failure) {
      request.log.error({ err: failure }, 'authz.denied audit event not recorded');
    }
  });

  /** The `api.call` event of a finished request, when the tenant records them. */
  async function recordCall(request: FastifyRequest, reply: FastifyReply, actor: Actor) {
    try {
      if (!(await deps.policy.categories(actor.tenantId)).apiCalls) return;
      await appendAlone(deps.db, deps.log, [
        {
          tenantId: actor.tenantId,
          type: 'api.call',
          ...auditActor(actor),
          target: { type: 'route', id: `${request.method} ${request.routeOptions.url ?? '?'}` },
          outcome: reply.statusCode < 400 ? 'success' : 'failure',
          reason: String(reply.statusCode),
        },
      ]);
    } catch (error) {
      // Warn, not error: the request's own failure (e.g. the database gone) is already logged.
      request.log.warn({ err: error }, 'api.call audit event not recorded');
    }
  }

  // A callback hook: with the category known to be off (the cached case) a request costs no
  // promise here, only this check.
  app.addHook('onResponse', (request, reply, done) => {
    const actor = request.actor;
    if (!actor || request.is404 || !request.url.startsWith('/api/')) return done();
    if (deps.policy.cachedCategories?.(actor.tenantId)?.apiCalls === false) return done();
    void recordCall(request, reply, actor).then(() => done());
  });
}
