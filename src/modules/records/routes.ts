import { Type, type TObject, type TProperties } from '@sinclair/typebox';
import type { FastifyInstance } from 'fastify';
import { actorOf } from '../../http/auth.ts';
import {
  IdParams,
  Nullable,
  PageQuery,
  Timestamp,
  pageOf,
  problemResponses,
} from '../../http/schemas.ts';
import { etagOf, versionFromIfMatch } from './etag.ts';
import type { ApiRecord, RecordService } from './service.ts';

export interface RecordRouteOptions {
  /** URL segment: `contacts`. */
  path: string;
  /** OpenAPI tag and schema name: `Contact`. */
  name: string;
  service: RecordService;
  /** Response schema of one record (common fields are added). */
  item: TObject;
  /** Body of POST; PATCH takes the same fields, all optional. */
  create: TObject;
  /** Extra exact-match filters in the query string. */
  filters: TProperties;
}

export const RecordCommon = {
  id: Type.String({ format: 'uuid' }),
  ownerId: Nullable(Type.String({ format: 'uuid' })),
  createdAt: Timestamp,
  updatedAt: Timestamp,
  version: Type.Integer({ minimum: 1 }),
  maskedFields: Type.Optional(
    Type.Array(Type.String(), {
      description:
        'Fields your role sees masked (their values here are masks, e.g. ***-**-6789); reveal them with POST /api/v1/contacts/{id}/reveal where allowed. Absent when nothing is masked.',
    }),
  ),
};

/** The five REST routes of a CRM object, identical in shape for every object. */
export function registerRecordRoutes(app: FastifyInstance, o: RecordRouteOptions) {
  const base = `/api/v1/${o.path}`;
  const item = Type.Object(
    { ...RecordCommon, ...o.item.properties },
    { $id: o.name, title: o.name },
  );
  app.addSchema(item);
  const itemRef = Type.Ref(o.name);
  const patch = Type.Partial(o.create, { additionalProperties: false, minProperties: 1 });
  const sortNames = Object.keys(o.service.spec.sorts);
  const query = Type.Object(
    {
      ...PageQuery,
      sort: Type.Optional(
        Type.String({
          description: `One of ${sortNames.join(', ')}; prefix "-" for descending. Default createdAt.`,
          pattern: `^-?(${sortNames.join('|')})$`,
        }),
      ),
      createdAfter: Type.Optional(Timestamp),
      createdBefore: Type.Optional(Timestamp),
      updatedAfter: Type.Optional(Timestamp),
      ...o.filters,
    },
    { additionalProperties: false },
  );
  const tags = [o.name];
  const withEtag = (r: ApiRecord) => ({ etag: etagOf(r.version), record: r });

  app.get(
    base,
    {
      schema: {
        tags,
        summary: `List ${o.path}`,
        querystring: query,
        response: { 200: pageOf(itemRef), ...problemResponses },
      },
    },
    async (request) => {
      const {
        limit = 50,
        cursor,
        sort,
        ...filters
      } = request.query as Record<string, string | undefined> & {
        limit?: number;
      };
      return o.service.list(actorOf(request), { limit, cursor, sort, filters });
    },
  );

  app.post(
    base,
    {
      schema: {
        tags,
        summary: `Create a ${o.service.spec.noun}`,
        body: o.create,
        response: { 201: itemRef, ...problemResponses },
      },
    },
    async (request, reply) => {
      const { etag, record } = withEtag(
        await o.service.create(actorOf(request), request.body as Record<string, unknown>),
      );
      return reply
        .code(201)
        .header('etag', etag)
        .header('location', `${base}/${record.id}`)
        .send(record);
    },
  );

  app.get(
    `${base}/:id`,
    {
      schema: {
        tags,
        summary: `Get a ${o.service.spec.noun}`,
        params: IdParams,
        response: { 200: itemRef, ...problemResponses },
      },
    },
    async (request, reply) => {
      const { id } = request.params as { id: string };
      const { etag, record } = withEtag(await o.service.get(actorOf(request), id));
      return reply.header('etag', etag).send(record);
    },
  );

  app.patch(
    `${base}/:id`,
    {
      schema: {
        tags,
        summary: `Change a ${o.service.spec.noun} (If-Match required)`,
        params: IdParams,
        headers: Type.Object({ 'if-match': Type.Optional(Type.String()) }),
        body: patch,
        response: { 200: itemRef, ...problemResponses },
      },
    },
    async (request, reply) => {
      const { id } = request.params as { id: string };
      const version = versionFromIfMatch(request.headers['if-match'], true) as number;
      const { etag, record } = withEtag(
        await o.service.update(
          actorOf(request),
          id,
          version,
          request.body as Record<string, unknown>,
        ),
      );
      return reply.header('etag', etag).send(record);
    },
  );

  app.delete(
    `${base}/:id`,
    {
      schema: {
        tags,
        summary: `Delete a ${o.service.spec.noun} (If-Match optional)`,
        params: IdParams,
        headers: Type.Object({ 'if-match': Type.Optional(Type.String()) }),
        response: { 204: Type.Null(), ...problemResponses },
      },
    },
    async (request, reply) => {
      const { id } = request.params as { id: string };
      const version = versionFromIfMatch(request.headers['if-match'], false);
      await o.service.remove(actorOf(request), id, version);
      return reply.code(204).send();
    },
  );
}
