import { Type } from '@sinclair/typebox';
import type { FastifyInstance } from 'fastify';
import { actorOf } from '../../http/auth.ts';
import {
  IdParams,
  Nullable,
  problemResponses,
  RoleSchema,
  Name,
  Timestamp,
} from '../../http/schemas.ts';
import type { Role } from '../../db/schema.ts';
import type { ApiKeyService } from './service.ts';

const ApiKeyProps = {
  id: Type.String({ format: 'uuid' }),
  name: Type.String(),
  prefix: Type.String({ description: 'The public start of the key, to recognise it' }),
  role: RoleSchema,
  userId: Type.String({ format: 'uuid' }),
  createdAt: Timestamp,
  expiresAt: Nullable(Timestamp),
  lastUsedAt: Nullable(Timestamp),
  revokedAt: Nullable(Timestamp),
};
const ApiKey = Type.Object(ApiKeyProps, { $id: 'ApiKey', title: 'ApiKey' });

export function registerApiKeyRoutes(app: FastifyInstance, keys: ApiKeyService) {
  app.addSchema(ApiKey);
  const tags = ['API keys'];
  app.post(
    '/api/v1/api-keys',
    {
      schema: {
        tags,
        summary: 'Create an API key (the secret is shown once)',
        body: Type.Object(
          {
            name: Name(200),
            role: Type.Optional(RoleSchema),
            expiresAt: Type.Optional(Timestamp),
          },
          { additionalProperties: false },
        ),
        response: {
          201: Type.Object({ ...ApiKeyProps, key: Type.String({ description: 'Shown only now' }) }),
          ...problemResponses,
        },
      },
    },
    async (request, reply) => {
      const body = request.body as { name: string; role?: Role; expiresAt?: string };
      return reply
        .code(201)
        .header('cache-control', 'no-store')
        .send(await keys.create(actorOf(request), body));
    },
  );
  app.get(
    '/api/v1/api-keys',
    {
      schema: {
        tags,
        summary: 'List the API keys of the tenant',
        response: {
          200: Type.Object({ items: Type.Array(Type.Ref('ApiKey')) }),
          ...problemResponses,
        },
      },
    },
    async (request) => ({ items: await keys.list(actorOf(request)) }),
  );
  app.delete(
    '/api/v1/api-keys/:id',
    {
      schema: {
        tags,
        summary: 'Revoke an API key',
        params: IdParams,
        response: { 204: Type.Null(), ...problemResponses },
      },
    },
    async (request, reply) => {
      await keys.revoke(actorOf(request), (request.params as { id: string }).id);
      return reply.code(204).send();
    },
  );
}
