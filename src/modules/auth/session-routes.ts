import { Type } from '@sinclair/typebox';
import type { FastifyInstance } from 'fastify';
import { actorOf } from '../../http/auth.ts';
import { IdParams, problemResponses } from '../../http/schemas.ts';
import type { SessionService } from './sessions.ts';

const SessionItem = Type.Object({
  id: Type.String({ format: 'uuid' }),
  createdAt: Type.String({ format: 'date-time' }),
  lastSeenAt: Type.String({ format: 'date-time' }),
  expiresAt: Type.String({ format: 'date-time', description: 'The absolute end of the session' }),
  ip: Type.Union([Type.String(), Type.Null()], { description: 'Client address at sign-in' }),
  userAgent: Type.Union([Type.String(), Type.Null()]),
  current: Type.Boolean({ description: 'True for the session making this request' }),
});

const Revoked = Type.Object({
  revoked: Type.Integer({ minimum: 0, description: 'How many sessions were ended' }),
});

export function registerSessionRoutes(app: FastifyInstance, sessions: SessionService) {
  app.get(
    '/api/v1/auth/sessions',
    {
      config: { mfaEnrolment: true },
      schema: {
        tags: ['Auth'],
        summary: "The caller's own active sessions",
        response: { 200: Type.Object({ items: Type.Array(SessionItem) }), ...problemResponses },
      },
    },
    async (request) => ({ items: await sessions.list(actorOf(request)) }),
  );
  app.delete(
    '/api/v1/auth/sessions/:id',
    {
      schema: {
        tags: ['Auth'],
        summary: "End one of the caller's own sessions",
        params: IdParams,
        response: { 204: Type.Null(), ...problemResponses },
      },
    },
    async (request, reply) => {
      await sessions.revoke(actorOf(request), (request.params as { id: string }).id);
      return reply.code(204).send();
    },
  );
  app.post(
    '/api/v1/auth/sessions/revoke-others',
    {
      schema: {
        tags: ['Auth'],
        summary: "End all the caller's sessions except the current one",
        response: { 200: Revoked, ...problemResponses },
      },
    },
    async (request) => ({ revoked: await sessions.revokeOthers(actorOf(request)) }),
  );
  app.delete(
    '/api/v1/users/:id/sessions',
    {
      schema: {
        tags: ['Users'],
        summary: "End all of a user's sessions (owners and admins)",
        params: IdParams,
        response: { 200: Revoked, ...problemResponses },
      },
    },
    async (request) => ({
      revoked: await sessions.revokeForUser(
        actorOf(request),
        (request.params as { id: string }).id,
      ),
    }),
  );
}
