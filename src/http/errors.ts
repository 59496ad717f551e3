import type { FastifyError, FastifyReply, FastifyRequest } from 'fastify';
import { STEP_UP_CHALLENGE } from '../core/policy/fresh-auth.ts';
import { AppError, assertUnreachable, type ErrorCode, type ErrorKind } from '../errors.ts';

/** The only place that knows HTTP status codes. */
export function statusOf(kind: ErrorKind): number {
  switch (kind) {
    case 'invalid':
      return 400;
    case 'unauthenticated':
      return 401;
    case 'forbidden':
      return 403;
    case 'not_found':
      return 404;
    case 'conflict':
      return 409;
    case 'precondition_failed':
      return 412;
    case 'too_large':
      return 413;
    case 'unsupported_media_type':
      return 415;
    case 'precondition_required':
      return 428;
    case 'rate_limited':
      return 429;
    case 'internal':
      return 500;
    case 'unavailable':
      return 503;
    default:
      return assertUnreachable(kind);
  }
}

const titles: Record<ErrorKind, string> = {
  invalid: 'Invalid request',
  unauthenticated: 'Authentication required',
  forbidden: 'Forbidden',
  not_found: 'Not found',
  conflict: 'Conflict',
  precondition_failed: 'Precondition failed',
  precondition_required: 'Precondition required',
  too_large: 'Payload too large',
  unsupported_media_type: 'Unsupported media type',
  rate_limited: 'Too many requests',
  unavailable: 'Service unavailable',
  internal: 'Internal error',
};

interface ValidationItem {
  instancePath?: string;
  message?: string;
  keyword?: string;
  params?: Record<string, unknown>;
}

/** Fastify's own errors (parsing, limits, validation) as AppErrors; anything else is internal. */
export function toAppError(error: unknown): AppError {
  if (error instanceof AppError) return error;
  const fe = error as Partial<FastifyError> & {
    validation?: ValidationItem[];
    validationContext?: string;
  };
  if (Array.isArray(fe.validation)) {
    const part = fe.validationContext ?? 'body';
    const errors = fe.validation.map((v) => describeValidation(part, v));
    return new AppError('invalid', 'request.invalid', 'schema validation failed', {
      detail: errors.map((e) => `${e.field}: ${e.reason}`).join('; '),
      errors,
      cause: error,
    });
  }
  const simple = (kind: ErrorKind, code: ErrorCode, detail: string) =>
    new AppError(kind, code, fe.message ?? detail, { detail, cause: error });
  switch (fe.code) {
    case 'FST_ERR_CTP_BODY_TOO_LARGE':
      return simple('too_large', 'request.too_large', 'The request body is larger than allowed.');
    case 'FST_ERR_CTP_INVALID_MEDIA_TYPE':
      return simple(
        'unsupported_media_type',
        'request.unsupported_media_type',
        'This content type is not accepted here.',
      );
    case 'FST_ERR_CTP_EMPTY_JSON_BODY':
    case 'FST_ERR_CTP_INVALID_JSON_BODY':
      return simple('invalid', 'request.malformed_json', 'The body is not valid JSON.');
    case 'FST_ERR_CTP_INVALID_CONTENT_LENGTH':
      return simple(
        'invalid',
        'request.invalid',
        'The Content-Length header does not match the body.',
      );
    case undefined:
    default:
      break;
  }
  if (error instanceof SyntaxError && fe.statusCode === 400) {
    return simple('invalid', 'request.malformed_json', 'The body is not valid JSON.');
  }
  if (typeof fe.statusCode === 'number' && fe.statusCode >= 400 && fe.statusCode < 500) {
    // Other client errors raised by Fastify or its plugins (e.g. prototype poisoning).
    return simple('invalid', 'request.invalid', 'The request could not be processed.');
  }
  return new AppError('internal', 'server.internal', 'unexpected error', { cause: error });
}

function describeValidation(part: string, v: ValidationItem): { field: string; reason: string } {
  let field = `${part}${v.instancePath ?? ''}`;
  let reason = v.message ?? 'is invalid';
  if (v.keyword === 'additionalProperties' && typeof v.params?.additionalProperty === 'string') {
    field = `${field}/${v.params.additionalProperty}`;
    reason = 'is not an accepted field';
  } else if (v.keyword === 'required' && typeof v.params?.missingProperty === 'string') {
    field = `${field}/${v.params.missingProperty}`;
    reason = 'is required';
  } else if (v.keyword === 'pattern') {
    reason =
      'contains characters that are not accepted (NUL or unpaired surrogates) or has the wrong form';
  }
  return { field, reason };
}

export function sendProblem(request: FastifyRequest, reply: FastifyReply, error: AppError) {
  const status = statusOf(error.kind);
  if (status >= 500) {
    request.log.error({ err: error.cause ?? error, code: error.code }, error.message);
  } else {
    request.log.info({ code: error.code, status }, 'request refused');
  }
  const body: Record<string, unknown> = {
    type: 'about:blank',
    title: titles[error.kind],
    status,
    code: error.code,
    instance: request.id,
  };
  if (error.detail !== undefined) body.detail = error.detail;
  if (error.errors !== undefined) body.errors = error.errors;
  if (error.kind === 'unauthenticated') {
    const challenge =
      error.code === 'auth.step_up_required' ? STEP_UP_CHALLENGE : 'Bearer realm="custos"';
    reply.header('www-authenticate', challenge);
  }
  return reply.code(status).type('application/problem+json').send(JSON.stringify(body));
}
