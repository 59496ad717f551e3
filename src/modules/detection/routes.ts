import { Type } from '@sinclair/typebox';
import type { FastifyInstance } from 'fastify';
import { actorOf } from '../../http/auth.ts';
import {
  IdParams,
  Nullable,
  PageQuery,
  pageOf,
  problemResponses,
  Text,
  Timestamp,
} from '../../http/schemas.ts';
import type { AlertFilters, AlertService } from './service.ts';
import {
  SettingsPatchSchema,
  SettingsSchema,
  type DetectionSettingsPatch,
  type DetectionSettingsService,
} from './settings.ts';

const Severity = Type.Union(['low', 'medium', 'high', 'critical'].map((s) => Type.Literal(s)));
const Status = Type.Union(['open', 'acknowledged', 'resolved'].map((s) => Type.Literal(s)));
const Uuid = Type.String({ format: 'uuid' });

const Alert = Type.Object(
  {
    id: Uuid,
    rule: Type.String({ description: 'The rule id, e.g. brute_force' }),
    severity: Severity,
    status: Status,
    subjectUserId: Nullable(Uuid),
    subjectIp: Nullable(Type.String()),
    firstSeenAt: Timestamp,
    lastSeenAt: Timestamp,
    count: Type.Integer({ description: 'Findings merged into this alert' }),
    details: Type.Record(
      Type.String(),
      Type.Union([
        Type.String(),
        Type.Number(),
        Type.Boolean(),
        Type.Null(),
        Type.Array(Type.String()),
      ]),
      { description: 'Counts, thresholds and actions taken; never a personal value' },
    ),
    createdAt: Timestamp,
    acknowledgedAt: Nullable(Timestamp),
    acknowledgedBy: Nullable(Uuid),
    resolvedAt: Nullable(Timestamp),
    resolvedBy: Nullable(Uuid),
  },
  { $id: 'Alert', title: 'Alert' },
);

export function registerDetectionRoutes(
  app: FastifyInstance,
  deps: { alerts: AlertService; settings: DetectionSettingsService },
) {
  const { alerts, settings } = deps;
  app.addSchema(Alert);
  const tags = ['Detection'];

  app.get(
    '/api/v1/alerts',
    {
      schema: {
        tags,
        summary: 'Security alerts of the tenant, newest first (owners and admins)',
        querystring: Type.Object(
          {
            ...PageQuery,
            status: Type.Optional(Status),
            rule: Type.Optional(Text(64)),
            severity: Type.Optional(Severity),
          },
          { additionalProperties: false },
        ),
        response: { 200: pageOf(Type.Ref('Alert')), ...problemResponses },
      },
    },
    async (request) => {
      const q = request.query as Omit<AlertFilters, 'limit'> & { limit?: number };
      return alerts.list(actorOf(request), { ...q, limit: q.limit ?? 50 });
    },
  );

  for (const [action, run] of [
    ['acknowledge', alerts.acknowledge],
    ['resolve', alerts.resolve],
  ] as const) {
    app.post(
      `/api/v1/alerts/:id/${action}`,
      {
        schema: {
          tags,
          summary:
            action === 'acknowledge'
              ? 'Acknowledge an open alert (owners and admins)'
              : 'Resolve an alert (owners and admins)',
          params: IdParams,
          response: { 200: Type.Ref('Alert'), ...problemResponses },
        },
      },
      async (request) => run(actorOf(request), (request.params as { id: string }).id),
    );
  }

  app.get(
    '/api/v1/detection/settings',
    {
      schema: {
        tags,
        summary: 'Detection rules, thresholds, responses and business hours (owners and admins)',
        response: { 200: SettingsSchema, ...problemResponses },
      },
    },
    async (request) => settings.get(actorOf(request)),
  );

  app.patch(
    '/api/v1/detection/settings',
    {
      schema: {
        tags,
        summary: 'Change detection settings (owners and admins); every change is audited',
        body: SettingsPatchSchema,
        response: { 200: SettingsSchema, ...problemResponses },
      },
    },
    async (request) => settings.update(actorOf(request), request.body as DetectionSettingsPatch),
  );
}
