import {
  Type,
  type Static,
  type StringOptions,
  type TSchema,
  type TUnsafe,
} from '@sinclair/typebox';

/**
 * Free text as the API accepts it: any Unicode except NUL and unpaired surrogates, which neither
 * database can store faithfully (they would come back changed). Patterns run with the `u` flag.
 */
export const TEXT_PATTERN = '^[^\\u0000\\uD800-\\uDFFF]*$';

export const Text = (maxLength: number, options: StringOptions = {}) =>
  Type.String({ maxLength, pattern: TEXT_PATTERN, ...options });

/** A display name: free text with at least one non-space character. */
export const Name = (maxLength: number) =>
  Type.String({ maxLength, pattern: '^(?=[\\s\\S]*\\S)[^\\u0000\\uD800-\\uDFFF]*$' });

/**
 * A value or null. For a schema with one primitive `type` this is `type: [t, 'null']` rather than
 * `anyOf`: the response serializer then writes the field directly instead of running a validator
 * per field to pick a branch, and validation errors name the real problem instead of
 * "must be null". Anything else falls back to `anyOf`.
 */
export const Nullable = <T extends TSchema>(schema: T): TUnsafe<Static<T> | null> => {
  const type = (schema as { type?: unknown }).type;
  if (typeof type === 'string' && type !== 'null' && schema.anyOf === undefined) {
    return Type.Unsafe<Static<T> | null>({ ...schema, type: [type, 'null'] });
  }
  return Type.Unsafe<Static<T> | null>(Type.Union([schema, Type.Null()]));
};

export const Uuid = Type.String({ format: 'uuid', description: 'UUIDv7 id' });
export const Timestamp = Type.String({ format: 'date-time', description: 'ISO 8601, UTC' });
export const DateOnly = Type.String({ format: 'date', description: 'YYYY-MM-DD' });
export const Email = Type.String({ format: 'email', maxLength: 254, pattern: TEXT_PATTERN });
export const RoleSchema = Type.Union(
  ['owner', 'admin', 'manager', 'agent', 'viewer', 'auditor'].map((r) => Type.Literal(r)),
);

export const IdParams = Type.Object({ id: Uuid }, { additionalProperties: false });

/** RFC 9457 problem details, as every error is answered. */
export const Problem = Type.Object(
  {
    type: Type.String(),
    title: Type.String(),
    status: Type.Integer(),
    code: Type.String({ description: 'Stable machine-readable code; see README "Error codes"' }),
    detail: Type.Optional(Type.String()),
    instance: Type.String({ description: 'The request id' }),
    errors: Type.Optional(Type.Array(Type.Object({ field: Type.String(), reason: Type.String() }))),
  },
  { $id: 'Problem', title: 'Problem' },
);

/** An error response as it is sent: `application/problem+json`, not `application/json`. */
export const problemResponse = {
  description: 'Problem details (RFC 9457)',
  content: { 'application/problem+json': { schema: Type.Ref('Problem') } },
};
const ref = problemResponse;

/** Error responses documented on every route. */
export const problemResponses = {
  400: ref,
  401: ref,
  403: ref,
  404: ref,
  409: ref,
  412: ref,
  413: ref,
  415: ref,
  428: ref,
  429: ref,
  500: ref,
};

export const PageQuery = {
  limit: Type.Optional(Type.Integer({ minimum: 1, maximum: 200, default: 50 })),
  cursor: Type.Optional(Type.String({ maxLength: 512, pattern: '^[A-Za-z0-9_-]*$' })),
};

export const pageOf = <T extends TSchema>(item: T) =>
  Type.Object({
    items: Type.Array(item),
    nextCursor: Nullable(Type.String()),
  });
