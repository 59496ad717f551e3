import { Type } from '@sinclair/typebox';
import type { FastifyInstance } from 'fastify';
import { actorOf } from '../../http/auth.ts';
import { Email, IdParams, Name, problemResponses, RoleSchema } from '../../http/schemas.ts';
import type { Role, UserStatus } from '../../db/schema.ts';
import type { UserService } from './service.ts';

const Status = Type.Union([Type.Literal('active'), Type.Literal('disabled')]);
const User = Type.Object(
  {
    id: Type.String({ format: 'uuid' }),
    email: Type.String(),
    name: Type.String(),
    role: RoleSchema,
    status: Status,
    createdAt: Type.String({ format: 'date-time' }),
    updatedAt: Type.String({ format: 'date-time' }),
    version: Type.Integer(),
  },
  { $id: 'User', title: 'User' },
);

export function registerUserRoutes(app: FastifyInstance, users: UserService) {
  app.addSchema(User);
  const ref = Type.Ref('User');
  const tags = ['Users'];
  app.get(
    '/api/v1/users',
    {
      schema: {
        tags,
        summary: 'List the users of the tenant (owners and admins)',
        response: { 200: Type.Object({ items: Type.Array(ref) }), ...problemResponses },
      },
    },
    async (request) => ({ items: await users.list(actorOf(request)) }),
  );
  app.post(
    '/api/v1/users',
    {
      schema: {
        tags,
        summary: 'Create a user (owners and admins)',
        body: Type.Object(
          {
            email: Email,
            name: Name(200),
            role: RoleSchema,
            password: Type.String({ minLength: 1, maxLength: 1024 }),
          },
          { additionalProperties: false },
        ),
        response: { 201: ref, ...problemResponses },
      },
    },
    async (request, reply) => {
      const body = request.body as { email: string; name: string; role: Role; password: string };
      return reply.code(201).send(await users.create(actorOf(request), body));
    },
  );
  app.get(
    '/api/v1/users/:id',
    {
      schema: {
        tags,
        summary: 'Get a user',
        params: IdParams,
        response: { 200: ref, ...problemResponses },
      },
    },
    async (request) => users.get(actorOf(request), (request.params as { id: string }).id),
  );
  app.post(
    '/api/v1/users/:id/unlock',
    {
      schema: {
        tags,
        summary: 'Lift a sign-in lockout (owners and admins)',
        params: IdParams,
        response: { 200: ref, ...problemResponses },
      },
    },
    async (request) => users.unlock(actorOf(request), (request.params as { id: string }).id),
  );
  app.patch(
    '/api/v1/users/:id',
    {
      schema: {
        tags,
        summary: "Change a user's name, role or status",
        params: IdParams,
        body: Type.Object(
          {
            name: Type.Optional(Name(200)),
            role: Type.Optional(RoleSchema),
            status: Type.Optional(Status),
          },
          { additionalProperties: false, minProperties: 1 },
        ),
        response: { 200: ref, ...problemResponses },
      },
    },
    async (request) =>
      users.update(
        actorOf(request),
        (request.params as { id: string }).id,
        request.body as { name?: string; role?: Role; status?: UserStatus },
      ),
  );
}
