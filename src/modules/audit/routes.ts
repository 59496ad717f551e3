import { Type } from '@sinclair/typebox';
import type { FastifyInstance } from 'fastify';
import { authorize } from '../../core/policy/index.ts';
import { actorOf } from '../../http/auth.ts';
import {
  Nullable,
  PageQuery,
  pageOf,
  problemResponses,
  Text,
  Timestamp,
} from '../../http/schemas.ts';
import type { AuditQueries, EventFilters } from './queries.ts';
import type { AuditService } from './service.ts';

const Hex32 = Type.String({ pattern: '^[0-9a-f]{64}$', description: 'SHA-256, lower-case hex' });
const Index = Type.Integer({ minimum: 0, maximum: Number.MAX_SAFE_INTEGER });

const AuditEvent = Type.Object(
  {
    leafIndex: Index,
    leafHash: Hex32,
    id: Type.String(),
    type: Type.String(),
    occurredAt: Timestamp,
    actor: Type.Object({ kind: Type.String(), id: Nullable(Type.String()) }),
    ip: Nullable(Type.String()),
    userAgent: Nullable(Type.String()),
    requestId: Nullable(Type.String()),
    target: Nullable(Type.Object({ type: Type.String(), id: Type.String() })),
    outcome: Type.String(),
    reason: Nullable(Type.String()),
    fields: Type.Array(Type.String(), { description: 'Changed field names, never values' }),
    breakGlassId: Type.Optional(
      Type.String({ description: 'The break-glass grant the event was recorded under' }),
    ),
    canonical: Type.String({
      description: 'RFC 8785 bytes of the event (UTF-8); leafHash = SHA-256(0x00 || canonical)',
    }),
  },
  { $id: 'AuditEvent', title: 'AuditEvent' },
);

const Checkpoint = Type.Object(
  {
    tenantId: Type.String(),
    treeSize: Index,
    rootHash: Hex32,
    timestamp: Timestamp,
    keyId: Hex32,
    signature: Type.String({ pattern: '^[0-9a-f]{128}$', description: 'Ed25519, hex' }),
  },
  { $id: 'AuditCheckpoint', title: 'AuditCheckpoint' },
);

export function registerAuditRoutes(
  app: FastifyInstance,
  deps: { service: AuditService; queries: AuditQueries },
) {
  const { service, queries } = deps;
  app.addSchema(AuditEvent);
  app.addSchema(Checkpoint);
  const tags = ['Audit'];

  app.get(
    '/api/v1/audit/events',
    {
      schema: {
        tags,
        summary: 'Audit events of the tenant, in log order',
        querystring: Type.Object(
          {
            ...PageQuery,
            type: Type.Optional(Text(100)),
            targetType: Type.Optional(Text(100)),
            targetId: Type.Optional(Text(100)),
            from: Type.Optional(Timestamp),
            to: Type.Optional(Timestamp),
          },
          { additionalProperties: false },
        ),
        response: { 200: pageOf(Type.Ref('AuditEvent')), ...problemResponses },
      },
    },
    async (request) => {
      const q = request.query as Omit<EventFilters, 'limit'> & { limit?: number };
      return queries.listEvents(actorOf(request), { ...q, limit: q.limit ?? 50 });
    },
  );

  app.get(
    '/api/v1/audit/checkpoints/latest',
    {
      schema: {
        tags,
        summary: 'The latest signed tree head (signed now if the log grew since the last one)',
        response: { 200: Type.Ref('AuditCheckpoint'), ...problemResponses },
      },
    },
    async (request) => {
      const actor = actorOf(request);
      authorize(actor, 'read', 'audit');
      return service.checkpoint(actor.tenantId);
    },
  );

  app.get(
    '/api/v1/audit/proofs/inclusion',
    {
      schema: {
        tags,
        summary: 'RFC 9162 inclusion proof of a leaf in the tree of the first treeSize leaves',
        querystring: Type.Object(
          { leafIndex: Index, treeSize: Index },
          { additionalProperties: false },
        ),
        response: {
          200: Type.Object({
            leafIndex: Index,
            treeSize: Index,
            leafHash: Hex32,
            proof: Type.Array(Hex32, { description: 'Innermost hash first' }),
          }),
          ...problemResponses,
        },
      },
    },
    async (request) => {
      const q = request.query as { leafIndex: number; treeSize: number };
      return queries.inclusion(actorOf(request), q.leafIndex, q.treeSize);
    },
  );

  app.get(
    '/api/v1/audit/proofs/consistency',
    {
      schema: {
        tags,
        summary: 'RFC 9162 consistency proof that the tree of `from` leaves is a prefix of `to`',
        querystring: Type.Object({ from: Index, to: Index }, { additionalProperties: false }),
        response: {
          200: Type.Object({ from: Index, to: Index, proof: Type.Array(Hex32) }),
          ...problemResponses,
        },
      },
    },
    async (request) => {
      const q = request.query as { from: number; to: number };
      return queries.consistency(actorOf(request), q.from, q.to);
    },
  );

  app.get(
    '/api/v1/audit/public-key',
    {
      schema: {
        tags,
        summary: 'The Ed25519 public key that signs checkpoints',
        response: {
          200: Type.Object({
            algorithm: Type.Literal('Ed25519'),
            keyId: Hex32,
            publicKeyPem: Type.String(),
          }),
          ...problemResponses,
        },
      },
    },
    async (request) => {
      authorize(actorOf(request), 'read', 'audit');
      const { keyId, publicKeyPem } = service.signingKey();
      return { algorithm: 'Ed25519' as const, keyId, publicKeyPem };
    },
  );
}
