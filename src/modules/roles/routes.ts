import { Type } from '@sinclair/typebox';
import type { FastifyInstance } from 'fastify';
import type { CustomRoleSpec } from '../../core/policy/index.ts';
import { actorOf } from '../../http/auth.ts';
import { IdParams, Name, Nullable, problemResponses, Text, Uuid } from '../../http/schemas.ts';
import { RoleSpec, RoleView } from './schema.ts';
import type { RoleService } from './service.ts';

const RoleParams = Type.Object(
  { id: Type.String({ pattern: '^[A-Za-z0-9-]{1,64}$' }) },
  { additionalProperties: false },
);

export function registerRoleRoutes(app: FastifyInstance, roles: RoleService) {
  app.addSchema(RoleView);
  const ref = Type.Ref('Role');
  const tags = ['Roles'];
  app.get(
    '/api/v1/roles',
    {
      schema: {
        tags,
        summary: 'The built-in roles and the tenant’s custom roles (roles capability: read)',
        response: { 200: Type.Object({ items: Type.Array(ref) }), ...problemResponses },
      },
    },
    async (request) => ({ items: await roles.list(actorOf(request)) }),
  );
  app.post(
    '/api/v1/roles',
    {
      schema: {
        tags,
        summary: 'Create a custom role, never above your own (roles capability, fresh sign-in)',
        body: Type.Object(
          { name: Name(100), description: Type.Optional(Nullable(Text(500))), spec: RoleSpec },
          { additionalProperties: false },
        ),
        response: { 201: ref, ...problemResponses },
      },
    },
    async (request, reply) => {
      const body = request.body as {
        name: string;
        description?: string | null;
        spec: CustomRoleSpec;
      };
      return reply.code(201).send(await roles.create(actorOf(request), body));
    },
  );
  app.get(
    '/api/v1/roles/:id',
    {
      schema: {
        tags,
        summary: 'A role, built-in (by name) or custom (by id)',
        params: RoleParams,
        response: { 200: ref, ...problemResponses },
      },
    },
    async (request) => roles.get(actorOf(request), (request.params as { id: string }).id),
  );
  app.patch(
    '/api/v1/roles/:id',
    {
      schema: {
        tags,
        summary: 'Change a custom role; it counts on the holders’ next request',
        params: IdParams,
        body: Type.Object(
          {
            name: Type.Optional(Name(100)),
            description: Type.Optional(Nullable(Text(500))),
            spec: Type.Optional(RoleSpec),
          },
          { additionalProperties: false, minProperties: 1 },
        ),
        response: { 200: ref, ...problemResponses },
      },
    },
    async (request) =>
      roles.update(
        actorOf(request),
        (request.params as { id: string }).id,
        request.body as { name?: string; description?: string | null; spec?: CustomRoleSpec },
      ),
  );
  app.delete(
    '/api/v1/roles/:id',
    {
      schema: {
        tags,
        summary: 'Delete a custom role nobody holds',
        params: IdParams,
        response: { 204: Type.Null(), ...problemResponses },
      },
    },
    async (request, reply) => {
      await roles.remove(actorOf(request), (request.params as { id: string }).id);
      return reply.code(204).send();
    },
  );
  app.put(
    '/api/v1/users/:id/custom-role',
    {
      schema: {
        tags,
        summary: 'Give a user a custom role, or null for their built-in role (users capability)',
        params: IdParams,
        body: Type.Object({ roleId: Nullable(Uuid) }, { additionalProperties: false }),
        response: {
          200: Type.Object({
            userId: Type.String(),
            role: Type.String(),
            customRoleId: Type.Union([Type.String(), Type.Null()]),
          }),
          ...problemResponses,
        },
      },
    },
    async (request) =>
      roles.assign(
        actorOf(request),
        (request.params as { id: string }).id,
        (request.body as { roleId: string | null }).roleId,
      ),
  );
}
