import { Type } from '@sinclair/typebox';
import type { FastifyInstance } from 'fastify';
import { actorOf } from '../../http/auth.ts';
import { Nullable, problemResponses, Timestamp } from '../../http/schemas.ts';
import type { AuditSettingsPatch, AuditSettingsService } from './settings.ts';

const RetentionDays = Type.Integer({
  minimum: 30,
  maximum: 36_500,
  description: 'Days audit events are kept before pruning',
});

/** A case or matter reference: it enters the audit log, so no names or free text. */
const HoldReason = Type.String({
  pattern: '^[A-Za-z0-9][A-Za-z0-9 ._:/#-]{0,99}$',
  description: 'Case or matter reference (letters, digits, space . _ : / # -), never personal data',
});

const Settings = Type.Object({
  retentionDays: Nullable(RetentionDays),
  effectiveRetentionDays: Type.Integer(),
  legalHold: Type.Object({
    enabled: Type.Boolean(),
    reason: Nullable(Type.String()),
    since: Nullable(Timestamp),
  }),
  categories: Type.Object({
    recordReads: Type.Boolean({ description: 'record.read on every read of a contact' }),
    apiCalls: Type.Boolean({ description: 'api.call (method, route, status) for every request' }),
  }),
  mandatory: Type.Array(Type.String(), { description: 'Always recorded, cannot be turned off' }),
  defaults: Type.Object({ retentionDays: Type.Integer() }),
});

export function registerAuditSettingsRoutes(app: FastifyInstance, settings: AuditSettingsService) {
  const tags = ['Audit'];
  app.get(
    '/api/v1/audit/settings',
    {
      schema: {
        tags,
        summary: 'Audit retention, legal hold and optional event categories (owners and admins)',
        response: { 200: Settings, ...problemResponses },
      },
    },
    async (request) => settings.get(actorOf(request)),
  );
  app.patch(
    '/api/v1/audit/settings',
    {
      schema: {
        tags,
        summary: 'Change audit retention or the optional event categories (audited)',
        body: Type.Object(
          {
            retentionDays: Type.Optional(Nullable(RetentionDays)),
            recordReads: Type.Optional(Type.Boolean()),
            apiCalls: Type.Optional(Type.Boolean()),
          },
          { additionalProperties: false, minProperties: 1 },
        ),
        response: { 200: Settings, ...problemResponses },
      },
    },
    async (request) => settings.update(actorOf(request), request.body as AuditSettingsPatch),
  );
  app.post(
    '/api/v1/audit/legal-hold',
    {
      schema: {
        tags,
        summary: 'Place a legal hold: no audit event is pruned until it is released (audited)',
        body: Type.Object({ reason: HoldReason }, { additionalProperties: false }),
        response: { 200: Settings, ...problemResponses },
      },
    },
    async (request) =>
      settings.placeHold(actorOf(request), (request.body as { reason: string }).reason),
  );
  app.post(
    '/api/v1/audit/legal-hold/release',
    {
      schema: {
        tags,
        summary: 'Release the legal hold (audited)',
        body: Type.Object({ reason: HoldReason }, { additionalProperties: false }),
        response: { 200: Settings, ...problemResponses },
      },
    },
    async (request) =>
      settings.releaseHold(actorOf(request), (request.body as { reason: string }).reason),
  );
}
