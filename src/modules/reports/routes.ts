import { Type } from '@sinclair/typebox';
import type { FastifyInstance } from 'fastify';
import { actorOf } from '../../http/auth.ts';
import { problemResponses } from '../../http/schemas.ts';
import { renderSecurityReport } from './html.ts';
import type { ReportService } from './service.ts';

const Count = Type.Integer({ minimum: 0 });
const SecurityReport = Type.Object(
  {
    tenant: Type.Object({ id: Type.String(), slug: Type.String(), name: Type.String() }),
    from: Type.String({ format: 'date-time' }),
    to: Type.String({ format: 'date-time' }),
    bucket: Type.Union([Type.Literal('hour'), Type.Literal('day')]),
    signIns: Type.Array(
      Type.Object({ at: Type.String({ format: 'date-time' }), succeeded: Count, failed: Count }),
    ),
    alertsByRule: Type.Array(Type.Object({ rule: Type.String(), count: Count })),
    sensitiveByUser: Type.Array(
      Type.Object({
        userId: Type.String(),
        name: Type.Union([Type.String(), Type.Null()]),
        reads: Count,
        exports: Count,
      }),
    ),
    topAddresses: Type.Array(Type.Object({ ip: Type.String(), events: Count, failures: Count })),
    totals: Type.Object({ events: Count, signIns: Count, signInFailures: Count, alerts: Count }),
  },
  { $id: 'SecurityReport', title: 'SecurityReport' },
);

/** The HTML report runs nothing and loads nothing: inline styles and inline SVG only. */
const REPORT_CSP =
  "default-src 'none'; style-src 'unsafe-inline'; img-src data:; frame-ancestors 'none'";

export function registerReportRoutes(app: FastifyInstance, reports: ReportService) {
  app.addSchema(SecurityReport);
  app.get(
    '/api/v1/reports/security',
    {
      schema: {
        tags: ['Reports'],
        summary: 'Security report of the tenant (JSON, or HTML with SVG charts)',
        description:
          'Sign-ins and failures over time, alerts by rule, sensitive reads and exports by user, top client addresses. Administrators only. `format=html` (or `Accept: text/html`) returns a self-contained page.',
        querystring: Type.Object(
          {
            from: Type.Optional(
              Type.String({
                maxLength: 40,
                description: 'Start (inclusive), date or ISO time; default 30 days before `to`',
              }),
            ),
            to: Type.Optional(
              Type.String({
                maxLength: 40,
                description: 'End (exclusive), date or ISO time; default now',
              }),
            ),
            format: Type.Optional(Type.Union([Type.Literal('json'), Type.Literal('html')])),
          },
          { additionalProperties: false },
        ),
        response: {
          200: {
            description: 'The report',
            content: {
              'application/json': { schema: Type.Ref('SecurityReport') },
              'text/html': { schema: Type.String() },
            },
          },
          ...problemResponses,
        },
      },
    },
    async (request, reply) => {
      const query = request.query as { from?: string; to?: string; format?: 'json' | 'html' };
      const data = await reports.security(actorOf(request), query);
      const html =
        query.format === 'html' ||
        (query.format === undefined && wantsHtml(request.headers.accept));
      if (!html) return reply.type('application/json').send(data);
      return reply
        .type('text/html; charset=utf-8')
        .header('content-security-policy', REPORT_CSP)
        .send(renderSecurityReport(data));
    },
  );
}

/** HTML only when the client prefers it to JSON (a browser), never by default. */
function wantsHtml(accept: string | undefined): boolean {
  if (!accept) return false;
  const html = accept.indexOf('text/html');
  const json = accept.indexOf('application/json');
  return html >= 0 && (json < 0 || html < json);
}
