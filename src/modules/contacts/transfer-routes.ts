import { Readable, Transform, type TransformCallback } from 'node:stream';
import type { JsonWebKey } from 'node:crypto';
import { Type, type Static } from '@sinclair/typebox';
import type { FastifyInstance, FastifyReply, FastifyRequest } from 'fastify';
import { actorOf } from '../../http/auth.ts';
import { Nullable, problemResponses } from '../../http/schemas.ts';
import { AppError } from '../../errors.ts';
import { IMPORT_TARGETS } from './csv-mapping.ts';
import type { ImportOptions, ImportReport } from './import.ts';
import { JOSE_MEDIA_TYPE, type ContactTransfer, type ExportResult } from './transfer.ts';

const ImportQuery = Type.Object(
  {
    mode: Type.Optional(
      Type.Union([Type.Literal('all-or-nothing'), Type.Literal('best-effort')], {
        description: 'all-or-nothing (default): any bad row and nothing is written.',
      }),
    ),
    onDuplicate: Type.Optional(
      Type.Union([Type.Literal('skip'), Type.Literal('merge')], {
        description:
          'A row whose e-mail is already a contact (or an earlier row): skip it (default) or merge its non-empty values in.',
      }),
    ),
    companies: Type.Optional(
      Type.Union([Type.Literal('create'), Type.Literal('match')], {
        description:
          'A company name the tenant lacks: create the company (default) or fail the row.',
      }),
    ),
    mapping: Type.Optional(
      Type.String({
        maxLength: 8192,
        description: `JSON object: CSV header -> one of ${IMPORT_TARGETS.join(', ')} (or null to ignore the column). Wins over recognised header names.`,
      }),
    ),
  },
  { additionalProperties: false },
);

export const ImportReportSchema = Type.Object(
  {
    mode: Type.Union([Type.Literal('all-or-nothing'), Type.Literal('best-effort')]),
    committed: Type.Boolean(),
    total: Type.Integer(),
    created: Type.Integer(),
    updated: Type.Integer(),
    skipped: Type.Integer(),
    failed: Type.Integer(),
    companiesCreated: Type.Integer(),
    errors: Type.Array(
      Type.Object({
        row: Type.Integer({ description: 'Spreadsheet row number; the header is row 1' }),
        field: Nullable(Type.String({ description: 'CSV column header' })),
        reason: Type.String(),
      }),
    ),
    errorsTruncated: Type.Boolean(),
    ignoredColumns: Type.Array(Type.String()),
  },
  { $id: 'ContactImportReport', title: 'ContactImportReport' },
);

const ExportFormatSchema = Type.Union([Type.Literal('csv'), Type.Literal('json')], {
  description: 'csv (default) or json',
});

const ExportQuery = Type.Object(
  { format: Type.Optional(ExportFormatSchema) },
  { additionalProperties: false },
);

const ExportBody = Type.Object(
  {
    format: Type.Optional(ExportFormatSchema),
    recipientKey: Type.Optional(
      Type.String({
        maxLength: 16384,
        description:
          'RSA public key, PEM (-----BEGIN PUBLIC KEY----- or -----BEGIN RSA PUBLIC KEY-----), at least 2048 bits',
      }),
    ),
    recipientJwk: Type.Optional(
      Type.Object(
        {
          kty: Type.String({ maxLength: 16 }),
          n: Type.Optional(Type.String({ maxLength: 4096 })),
          e: Type.Optional(Type.String({ maxLength: 64 })),
        },
        {
          // Other members (kid, use, alg...) are allowed; private ones are refused by the export.
          additionalProperties: true,
          maxProperties: 32,
          description: 'RSA public key as a JWK (RFC 7517): kty "RSA", n, e',
        },
      ),
    ),
  },
  { additionalProperties: false },
);

function sendExport(reply: FastifyReply, result: ExportResult) {
  return reply
    .type(result.mediaType)
    .header('content-disposition', `attachment; filename="${result.filename}"`)
    .header('cache-control', 'no-store')
    .send(result.body);
}

/** Counts bytes as they pass and fails the stream past `limit` (413). */
function byteLimit(limit: number): Transform {
  let seen = 0;
  return new Transform({
    transform(chunk: Buffer, _enc, done: TransformCallback) {
      seen += chunk.length;
      if (seen > limit) done(tooLarge(limit));
      else done(null, chunk);
    },
  });
}

const tooLarge = (limit: number) =>
  new AppError('too_large', 'request.too_large', 'import over the byte limit', {
    detail: `A CSV import may have at most ${limit} bytes.`,
  });

function parseMapping(raw: string | undefined): Record<string, string | null> | undefined {
  if (raw === undefined) return undefined;
  const bad = () =>
    new AppError('invalid', 'import.invalid_mapping', 'mapping is not a JSON object', {
      detail: 'mapping must be a JSON object of CSV header -> field name (or null).',
    });
  let parsed: unknown;
  try {
    parsed = JSON.parse(raw);
  } catch {
    throw bad();
  }
  if (typeof parsed !== 'object' || parsed === null || Array.isArray(parsed)) throw bad();
  const entries = Object.entries(parsed as Record<string, unknown>);
  if (entries.some(([, v]) => v !== null && typeof v !== 'string')) throw bad();
  return Object.fromEntries(entries) as Record<string, string | null>;
}

function checkCharset(request: FastifyRequest) {
  const type = request.headers['content-type'] ?? '';
  const charset = /;\s*charset="?([^";\s]+)/i.exec(type)?.[1]?.toLowerCase();
  if (
    charset !== undefined &&
    !['utf-8', 'utf8', 'utf-16', 'utf-16le', 'utf-16be'].includes(charset)
  ) {
    throw new AppError('unsupported_media_type', 'import.unsupported_encoding', 'charset', {
      detail: 'Send the CSV as UTF-8 (or UTF-16 with a byte order mark).',
    });
  }
}

/**
 * POST /api/v1/contacts/import (raw CSV body, streamed) and GET /api/v1/contacts/export.
 * Registered before the generic contact routes; the CSV body parser lives only in this scope.
 */
export async function registerContactTransferRoutes(
  app: FastifyInstance,
  o: { transfer: ContactTransfer; importLimit: number },
) {
  await app.register(async (scope) => {
    scope.addSchema(ImportReportSchema);
    // The stream is handed on unread: the importer consumes it as it parses.
    scope.addContentTypeParser(['text/csv', 'application/csv'], (_request, payload, done) =>
      done(null, payload),
    );

    scope.post(
      '/api/v1/contacts/import',
      {
        schema: {
          tags: ['Contact'],
          summary: 'Import contacts from CSV (Content-Type: text/csv)',
          querystring: ImportQuery,
          response: { 200: Type.Ref('ContactImportReport'), ...problemResponses },
        },
      },
      async (request): Promise<ImportReport> => {
        const body = request.body;
        if (!(body instanceof Readable)) {
          throw new AppError(
            'unsupported_media_type',
            'request.unsupported_media_type',
            'not csv',
            {
              detail: 'Send the file as the request body with Content-Type: text/csv.',
            },
          );
        }
        checkCharset(request);
        const declared = Number(request.headers['content-length']);
        if (Number.isFinite(declared) && declared > o.importLimit) throw tooLarge(o.importLimit);
        const q = request.query as Omit<ImportOptions, 'mapping'> & { mapping?: string };
        const options: ImportOptions = {
          ...(q.mode ? { mode: q.mode } : {}),
          ...(q.onDuplicate ? { onDuplicate: q.onDuplicate } : {}),
          ...(q.companies ? { companies: q.companies } : {}),
          mapping: parseMapping(q.mapping),
        };
        // pipe, not pipeline: an over-limit error must not destroy the request (and its reply).
        const limited = body.pipe(byteLimit(o.importLimit));
        body.on('error', (error) => limited.destroy(error));
        const report = await o.transfer.import(actorOf(request), limited, options);
        if (!report.committed) {
          throw new AppError('invalid', 'import.rejected', 'all-or-nothing import refused', {
            detail: `${report.failed} of ${report.total} rows cannot be imported; nothing was imported. Fix them or import with mode=best-effort.`,
            errors: report.errors.map((e) => ({
              field: `row/${e.row}${e.field === null ? '' : `/${e.field}`}`,
              reason: e.reason,
            })),
          });
        }
        return report;
      },
    );

    scope.get(
      '/api/v1/contacts/export',
      {
        schema: {
          tags: ['Contact'],
          summary: 'Export contacts as CSV (formula cells neutralised) or JSON',
          description:
            'Needs a sign-in or step-up less than 5 minutes old (auth.step_up_required) and the export permission; audited as contacts.exported. To receive the export encrypted to an RSA key, use POST.',
          querystring: ExportQuery,
          response: {
            200: {
              description:
                'csv: UTF-8 CSV with BOM, CRLF line ends, header row of field names. json: an array of objects with the same keys.',
              content: {
                'text/csv': { schema: { type: 'string' } },
                'application/json': { schema: { type: 'array' } },
              },
            },
            ...problemResponses,
          },
        },
      },
      async (request, reply) => {
        const { format } = request.query as Static<typeof ExportQuery>;
        const actor = actorOf(request);
        await o.transfer.assertExportAllowed(actor);
        return sendExport(reply, await o.transfer.export(actor, { format }));
      },
    );

    scope.post(
      '/api/v1/contacts/export',
      {
        schema: {
          tags: ['Contact'],
          summary: 'Export contacts encrypted to a recipient RSA key (JWE, application/jose)',
          description:
            'The CSV or JSON export sealed as a JWE in compact serialisation (RFC 7516): key management RSA-OAEP-256, content encryption A256GCM, protected header {alg, enc, kid, cty} where kid is the RFC 7638 SHA-256 thumbprint of the recipient key and cty the media type of the plaintext. Any JOSE implementation opens it with the private key. Give exactly one of recipientKey (PEM) or recipientJwk. Same step-up, permission and audit as GET.',
          body: ExportBody,
          response: {
            200: {
              description: 'Compact JWE: five base64url parts joined by dots',
              content: { [JOSE_MEDIA_TYPE]: { schema: { type: 'string' } } },
            },
            ...problemResponses,
          },
        },
      },
      async (request, reply) => {
        const body = request.body as Static<typeof ExportBody>;
        if ((body.recipientKey === undefined) === (body.recipientJwk === undefined)) {
          throw new AppError('invalid', 'request.invalid', 'one recipient key expected', {
            detail: 'Give exactly one of recipientKey (PEM) or recipientJwk.',
            errors: [
              { field: 'body/recipientKey', reason: 'exactly one of recipientKey or recipientJwk' },
            ],
          });
        }
        const recipient = body.recipientKey ?? (body.recipientJwk as JsonWebKey);
        const actor = actorOf(request);
        await o.transfer.assertExportAllowed(actor);
        return sendExport(
          reply,
          await o.transfer.export(actor, { format: body.format, recipient }),
        );
      },
    );
  });
}
