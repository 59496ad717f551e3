import { Type, type Static } from '@sinclair/typebox';
import type { FastifyInstance } from 'fastify';
import { BREAK_GLASS_MAX_MINUTES } from '../../core/policy/index.ts';
import { actorOf } from '../../http/auth.ts';
import { IdParams, Nullable, Text, Timestamp, problemResponses } from '../../http/schemas.ts';
import {
  BREAK_GLASS_REASON_MAX,
  BREAK_GLASS_REASON_MIN,
  type BreakGlassService,
} from './service.ts';

const Uuid = Type.String({ format: 'uuid' });

const Grant = Type.Object(
  {
    id: Uuid,
    userId: Uuid,
    reason: Type.String(),
    openedAt: Timestamp,
    expiresAt: Timestamp,
    endedAt: Nullable(Timestamp),
    endedBy: Nullable(Uuid),
    status: Type.Union([Type.Literal('open'), Type.Literal('expired'), Type.Literal('ended')]),
  },
  { $id: 'BreakGlassGrant', title: 'BreakGlassGrant' },
);

const OpenBody = Type.Object(
  {
    reason: Text(BREAK_GLASS_REASON_MAX, {
      minLength: BREAK_GLASS_REASON_MIN,
      description: `Why emergency access is needed, in words (${BREAK_GLASS_REASON_MIN}+ characters); audited and shown to administrators`,
    }),
    minutes: Type.Integer({ minimum: 1, maximum: BREAK_GLASS_MAX_MINUTES }),
  },
  { additionalProperties: false },
);

/** POST/GET /api/v1/break-glass, DELETE /api/v1/break-glass/{id}. */
export function registerBreakGlassRoutes(app: FastifyInstance, service: BreakGlassService) {
  app.addSchema(Grant);
  const tags = ['Break-glass'];
  const grantRef = Type.Ref('BreakGlassGrant');

  app.post(
    '/api/v1/break-glass',
    {
      schema: {
        tags,
        summary: 'Open emergency access (break-glass) for up to 60 minutes',
        description:
          'Owners and admins, with a sign-in or step-up less than 5 minutes old. While open, every record field reads in full, every record read is audited, and every audit event carries the grant id. Audited as auth.break_glass.opened, which raises a critical break_glass alert. One open grant per user.',
        body: OpenBody,
        response: { 201: grantRef, ...problemResponses },
      },
    },
    async (request, reply) => {
      const body = request.body as Static<typeof OpenBody>;
      return reply.code(201).send(await service.open(actorOf(request), body));
    },
  );

  app.get(
    '/api/v1/break-glass',
    {
      schema: {
        tags,
        summary: "The tenant's break-glass grants, newest first (owners and admins)",
        querystring: Type.Object(
          { limit: Type.Optional(Type.Integer({ minimum: 1, maximum: 200, default: 50 })) },
          { additionalProperties: false },
        ),
        response: { 200: Type.Object({ items: Type.Array(grantRef) }), ...problemResponses },
      },
    },
    async (request) => {
      const { limit } = request.query as { limit?: number };
      return { items: await service.list(actorOf(request), limit ?? 50) };
    },
  );

  app.delete(
    '/api/v1/break-glass/:id',
    {
      schema: {
        tags,
        summary: 'End emergency access early',
        params: IdParams,
        response: { 200: grantRef, ...problemResponses },
      },
    },
    async (request) => {
      const { id } = request.params as { id: string };
      return service.end(actorOf(request), id);
    },
  );
}
