import type { FastifyRequest } from 'fastify';
import type { LoggerOptions } from 'pino';
import { protectedFieldNames } from '../core/privacy/index.ts';

/** Query parameters whose values are safe to log; every other value is replaced. */
const SAFE_QUERY_KEYS = new Set(['limit', 'sort', 'order', 'stage', 'type']);

/**
 * Path segments shown as they are: route words (`api-keys`, `openapi.json`, `v1`) and UUIDs. Any
 * other segment may be a value a client put in the path (`/contacts/jane@example.com`).
 */
const SAFE_SEGMENT =
  /^(?:[a-z]+(?:-[a-z]+)*(?:\.[a-z]+)?|v\d+|[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12})?$/;

/** The URL with every query value and path value that might be personal replaced. */
export function redactUrl(url: string): string {
  const q = url.indexOf('?');
  const path = (q < 0 ? url : url.slice(0, q))
    .split('/')
    .map((segment) => (SAFE_SEGMENT.test(segment) ? segment : '[redacted]'))
    .join('/');
  if (q < 0) return path;
  const params = new URLSearchParams(url.slice(q + 1));
  const shown: string[] = [];
  for (const [key, value] of params) {
    shown.push(
      `${encodeURIComponent(key)}=${SAFE_QUERY_KEYS.has(key) ? encodeURIComponent(value) : '[redacted]'}`,
    );
  }
  return `${path}?${shown.join('&')}`;
}

const credentialFields = [
  'password',
  'newPassword',
  'currentPassword',
  'token',
  'secret',
  'key',
  'apiKey',
  'csrfToken',
];

/**
 * pino options: JSON lines, no request headers (cookies and bearer keys never reach the log),
 * URLs with query values redacted, and any personal or credential field redacted wherever it
 * appears in a logged object (names from the data map).
 */
export function loggerOptions(level: string): LoggerOptions {
  const fields = [...new Set([...protectedFieldNames(), ...credentialFields])];
  // Two levels cover how the code logs (`{ err }`, `{ contact: {...} }`); every extra wildcard level
  // is paid on every request, when Fastify makes the request's child logger.
  const paths = fields.flatMap((f) => [f, `*.${f}`]);
  return {
    level,
    redact: {
      paths: [...paths, 'req.headers', 'headers.cookie', 'headers.authorization'],
      censor: '[redacted]',
    },
    serializers: {
      req(req: FastifyRequest) {
        return { method: req.method, url: redactUrl(req.url), remoteAddress: req.ip };
      },
      res(res: { statusCode: number }) {
        return { statusCode: res.statusCode };
      },
      err(err: Error & { code?: unknown }) {
        // Only type, message, code and stack: driver errors carry row values in other fields
        // (PostgreSQL's `detail`), which must not reach the log.
        return { type: err.name, message: err.message, code: err.code, stack: err.stack };
      },
    },
  };
}
