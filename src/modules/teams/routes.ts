import { Type } from '@sinclair/typebox';
import type { FastifyInstance } from 'fastify';
import { actorOf } from '../../http/auth.ts';
import { IdParams, Name, problemResponses, Uuid } from '../../http/schemas.ts';
import type { TeamService } from './service.ts';

const Team = Type.Object(
  {
    id: Type.String(),
    name: Type.String(),
    memberIds: Type.Array(Type.String()),
    createdAt: Type.String({ format: 'date-time' }),
    updatedAt: Type.String({ format: 'date-time' }),
  },
  { $id: 'Team', title: 'Team' },
);
const MemberParams = Type.Object({ id: Uuid, userId: Uuid }, { additionalProperties: false });

export function registerTeamRoutes(app: FastifyInstance, teams: TeamService) {
  app.addSchema(Team);
  const ref = Type.Ref('Team');
  const tags = ['Teams'];
  const body = Type.Object({ name: Name(100) }, { additionalProperties: false });
  app.get(
    '/api/v1/teams',
    {
      schema: {
        tags,
        summary: 'The tenant’s teams with their members (users capability: read)',
        response: { 200: Type.Object({ items: Type.Array(ref) }), ...problemResponses },
      },
    },
    async (request) => ({ items: await teams.list(actorOf(request)) }),
  );
  app.post(
    '/api/v1/teams',
    {
      schema: {
        tags,
        summary: 'Create a team (users capability)',
        body,
        response: { 201: ref, ...problemResponses },
      },
    },
    async (request, reply) =>
      reply.code(201).send(await teams.create(actorOf(request), request.body as { name: string })),
  );
  app.get(
    '/api/v1/teams/:id',
    {
      schema: {
        tags,
        summary: 'A team',
        params: IdParams,
        response: { 200: ref, ...problemResponses },
      },
    },
    async (request) => teams.get(actorOf(request), (request.params as { id: string }).id),
  );
  app.patch(
    '/api/v1/teams/:id',
    {
      schema: {
        tags,
        summary: 'Rename a team',
        params: IdParams,
        body,
        response: { 200: ref, ...problemResponses },
      },
    },
    async (request) =>
      teams.rename(
        actorOf(request),
        (request.params as { id: string }).id,
        (request.body as { name: string }).name,
      ),
  );
  app.delete(
    '/api/v1/teams/:id',
    {
      schema: {
        tags,
        summary: 'Delete a team',
        params: IdParams,
        response: { 204: Type.Null(), ...problemResponses },
      },
    },
    async (request, reply) => {
      await teams.remove(actorOf(request), (request.params as { id: string }).id);
      return reply.code(204).send();
    },
  );
  app.put(
    '/api/v1/teams/:id/members/:userId',
    {
      schema: {
        tags,
        summary: 'Add a user to a team (idempotent)',
        params: MemberParams,
        response: { 200: ref, ...problemResponses },
      },
    },
    async (request) => {
      const p = request.params as { id: string; userId: string };
      return teams.addMember(actorOf(request), p.id, p.userId);
    },
  );
  app.delete(
    '/api/v1/teams/:id/members/:userId',
    {
      schema: {
        tags,
        summary: 'Remove a user from a team',
        params: MemberParams,
        response: { 200: ref, ...problemResponses },
      },
    },
    async (request) => {
      const p = request.params as { id: string; userId: string };
      return teams.removeMember(actorOf(request), p.id, p.userId);
    },
  );
}
