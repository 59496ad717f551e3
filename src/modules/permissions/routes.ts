import { Type } from '@sinclair/typebox';
import type { FastifyInstance } from 'fastify';
import {
  capabilities,
  recordResources,
  type Action,
  type Resource,
} from '../../core/policy/index.ts';
import { actorOf } from '../../http/auth.ts';
import { Nullable, problemResponses, Uuid } from '../../http/schemas.ts';
import type { PermissionService } from './service.ts';

const literals = (values: readonly string[]) => Type.Union(values.map((v) => Type.Literal(v)));

export function registerPermissionRoutes(app: FastifyInstance, permissions: PermissionService) {
  app.get(
    '/api/v1/permissions/explain',
    {
      schema: {
        tags: ['Roles'],
        summary:
          'Why a user may or may not do an action: allowed, role, rule and scope (admins and auditors)',
        querystring: Type.Object(
          {
            userId: Uuid,
            resource: literals([...recordResources, ...capabilities]),
            action: literals(['read', 'create', 'update', 'delete', 'import', 'export', 'manage']),
            field: Type.Optional(Type.String({ pattern: '^[A-Za-z][A-Za-z0-9]{0,63}$' })),
          },
          { additionalProperties: false },
        ),
        response: {
          200: Type.Object({
            allowed: Type.Boolean(),
            role: Type.String(),
            customRole: Nullable(Type.Object({ id: Type.String(), name: Type.String() })),
            rule: Type.String(),
            scope: Nullable(literals(['own', 'team', 'all'])),
            field: Nullable(
              Type.Object({
                name: Type.String(),
                read: literals(['full', 'masked', 'none']),
                write: Type.Boolean(),
                reveal: Type.Boolean(),
                rule: Type.String(),
              }),
            ),
          }),
          ...problemResponses,
        },
      },
    },
    async (request) =>
      permissions.explain(
        actorOf(request),
        request.query as { userId: string; resource: Resource; action: Action; field?: string },
      ),
  );
}
