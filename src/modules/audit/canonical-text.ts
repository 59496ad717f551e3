import type { AuditEventBody } from './event.ts';

// How an append writes an event's canonical text (RFC 8785) without the general canonicaliser:
// for the one known shape of an event body.

// A string RFC 8785 writes as is between quotes: no quote, backslash, control character or
// surrogate. Others are escaped as JSON.stringify does (RFC 8785 shares its string form), but a
// surrogate sends the event the general way: JSON.stringify escapes a lone one, RFC 8785 refuses
// it.
// eslint-disable-next-line no-control-regex -- JSON escapes the control characters
const ESCAPED = /["\\\u0000-\u001f\ud800-\udfff]/;
const SURROGATE = /[\ud800-\udfff]/;
// Field names that need no escaping (eventBody allows identifiers only, sorted).
// eslint-disable-next-line no-control-regex -- as above
const PLAIN_NAME = /^[^"\\\u0000-\u001f\ud800-\udfff]*$/;

// Thrown by `str` for a value the direct writer leaves to the general path.
const UNPLAIN = new Error('left to the general path');

function str(value: string | null): string {
  if (value === null) return 'null';
  if (typeof value !== 'string') throw UNPLAIN;
  if (!ESCAPED.test(value)) return `"${value}"`;
  if (SURROGATE.test(value)) throw UNPLAIN;
  return JSON.stringify(value);
}

/**
 * The RFC 8785 text of an event body (keys in code-unit order), written directly for this one
 * known shape: the same text the general canonicaliser gives, in a fraction of the time.
 * Undefined for bodies it leaves to the general path: a surrogate in a value (RFC 8785 refuses a
 * lone one), field names out of order or needing escapes, a leaf index that is not a safe
 * integer, a value of another type.
 *
 * @example
 * ```ts
 * const text = canonicalText(body) ?? decoder.decode(canonicalBytes(body));
 * ```
 */
export function canonicalText(body: AuditEventBody): string | undefined {
  const { fields, target, actor, breakGlassId } = body;
  if (!Number.isSafeInteger(body.leafIndex) || body.v !== 1) return undefined;
  for (let i = 0; i < fields.length; i++) {
    const name = fields[i];
    if (typeof name !== 'string' || !PLAIN_NAME.test(name)) return undefined;
    if (i > 0 && !(fields[i - 1]! < name)) return undefined;
  }
  try {
    return (
      `{"actor":{"id":${str(actor.id)},"kind":${str(actor.kind)}},` +
      (breakGlassId === undefined ? '' : `"breakGlassId":${str(breakGlassId)},`) +
      `"fields":[${fields.map((f) => `"${f}"`).join(',')}],"id":${str(body.id)},` +
      `"ip":${str(body.ip)},"leafIndex":${body.leafIndex},` +
      `"occurredAt":${str(body.occurredAt)},"outcome":${str(body.outcome)},` +
      `"reason":${str(body.reason)},"requestId":${str(body.requestId)},` +
      `"target":${target === null ? 'null' : `{"id":${str(target.id)},"type":${str(target.type)}}`},` +
      `"tenantId":${str(body.tenantId)},"type":${str(body.type)},` +
      `"userAgent":${str(body.userAgent)},"v":1}`
    );
  } catch (error) {
    if (error === UNPLAIN) return undefined;
    throw error;
  }
}
