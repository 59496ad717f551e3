import type { EventTuple } from './verify-source.ts';

// How `audit verify` checks an event's columns against its stored canonical text (RFC 8785) row
// by row, without the general canonicaliser: for the one known shape of an event body. The
// append path writes the canonical text with the same writer (`canonicalTextOfColumns`), so the
// bytes hashed are the ones verification reads the columns back as.

// A string RFC 8785 writes as is between quotes: no quote, backslash, control character or
// surrogate. Others are escaped as JSON.stringify does (RFC 8785 shares its string form), but a
// surrogate sends the row the general way: JSON.stringify escapes a lone one, RFC 8785 refuses it.
// eslint-disable-next-line no-control-regex -- JSON escapes the control characters
const ESCAPED = /["\\\u0000-\u001f\ud800-\udfff]/;
const SURROGATE = /[\ud800-\udfff]/;
// A `fields` column already in canonical form: an array of strings that need no escaping.
const PLAIN_FIELDS =
  // eslint-disable-next-line no-control-regex -- as above
  /^\[(?:"[^"\\\u0000-\u001f\ud800-\udfff]*"(?:,"[^"\\\u0000-\u001f\ud800-\udfff]*")*)?\]$/;

// Thrown by `str` for a value the direct writer leaves to the general path.
const UNPLAIN = new Error('left to the general path');

function str(value: string | null): string {
  if (value === null) return 'null';
  // A BLOB (SQLite) with a string's bytes is not that string: the general path refuses it.
  if (typeof value !== 'string') throw UNPLAIN;
  if (!ESCAPED.test(value)) return `"${value}"`;
  if (SURROGATE.test(value)) throw UNPLAIN;
  return JSON.stringify(value);
}

/**
 * The RFC 8785 text of the body `bodyFromRow` builds from the row's columns (keys in code-unit
 * order), written directly for this one known shape. The stored canonical text must equal it
 * exactly: then the columns agree with the hashed bytes member by member, and the bytes are
 * canonical. Undefined for rows it leaves to the general path (verifyLog canonicalises the
 * columns and compares bytes): a surrogate, a `fields` column not in canonical form, half a
 * target, a value of another type.
 */
export function canonicalTextOfColumns(tenantId: string, row: EventTuple): string | undefined {
  const [leafIndex, , , id, type, occurredAt, actorKind, actorId, ip, userAgent, requestId] = row;
  const [, , , , , , , , , , , targetType, targetId, outcome, reason, fields, breakGlassId] = row;
  const index = Number(leafIndex);
  if (!Number.isSafeInteger(index) || typeof fields !== 'string' || !PLAIN_FIELDS.test(fields)) {
    return undefined;
  }
  try {
    let target = 'null';
    if (targetType !== null || targetId !== null) {
      if (targetType === null || targetId === null) return undefined;
      target = `{"id":${str(targetId)},"type":${str(targetType)}}`;
    }
    return (
      `{"actor":{"id":${str(actorId)},"kind":${str(actorKind)}},` +
      (breakGlassId === null ? '' : `"breakGlassId":${str(breakGlassId)},`) +
      `"fields":${fields},"id":${str(id)},"ip":${str(ip)},"leafIndex":${index},` +
      `"occurredAt":${str(occurredAt)},"outcome":${str(outcome)},"reason":${str(reason)},` +
      `"requestId":${str(requestId)},"target":${target},"tenantId":${str(tenantId)},` +
      `"type":${str(type)},"userAgent":${str(userAgent)},"v":1}`
    );
  } catch (error) {
    if (error === UNPLAIN) return undefined;
    throw error;
  }
}

const QUOTE = 0x22;
const BACKSLASH = 0x5c;

// Where `text` ends if `c` spells it from `at`, else -1 (charCodeAt past the end is NaN).
function literal(c: string, at: number, text: string): number {
  for (let i = 0; i < text.length; i++) {
    if (c.charCodeAt(at + i) !== text.charCodeAt(i)) return -1;
  }
  return at + text.length;
}

// Where `value` ends if `c` spells it from `at` as RFC 8785 writes a string that needs no
// escaping ("value"), or as null; else -1, also for a value that would need escaping.
function plain(c: string, at: number, value: unknown): number {
  if (value === null) return literal(c, at, 'null');
  if (typeof value !== 'string' || c.charCodeAt(at) !== QUOTE) return -1;
  const from = at + 1;
  for (let i = 0; i < value.length; i++) {
    const k = value.charCodeAt(i);
    if (k < 0x20 || k === QUOTE || k === BACKSLASH || (k >= 0xd800 && k <= 0xdfff)) return -1;
    if (c.charCodeAt(from + i) !== k) return -1;
  }
  const end = from + value.length;
  return c.charCodeAt(end) === QUOTE ? end + 1 : -1;
}

// The last `fields` value found in canonical form: most events of a log share a few.
let plainFields = '[]';

/**
 * True when `canonical` (the row's stored text) is exactly what `canonicalTextOfColumns` writes
 * for the row and no string in it needed escaping, which is most events. Compared in place,
 * character by character: building the text for each row was most of the garbage a
 * verification made. False for any difference and for every row it does not decide (a value to
 * escape, a surrogate, a `fields` column not in canonical form, half a target, a value of
 * another type): those go to `canonicalTextOfColumns`.
 *
 * @example
 * ```ts
 * if (columnsSpellCanonical(tenantId, row)) hash(row[1]); // the columns are the hashed bytes
 * ```
 */
export function columnsSpellCanonical(tenantId: string, row: EventTuple): boolean {
  const [leafIndex, c, , id, type, occurredAt, actorKind, actorId, ip, userAgent, requestId] = row;
  const [, , , , , , , , , , , targetType, targetId, outcome, reason, fields, breakGlassId] = row;
  const index = Number(leafIndex);
  if (typeof c !== 'string' || !Number.isSafeInteger(index) || typeof fields !== 'string') {
    return false;
  }
  if (fields !== plainFields) {
    if (!PLAIN_FIELDS.test(fields)) return false;
    plainFields = fields;
  }
  let at = literal(c, 0, '{"actor":{"id":');
  if (at >= 0) at = plain(c, at, actorId);
  if (at >= 0) at = literal(c, at, ',"kind":');
  if (at >= 0) at = plain(c, at, actorKind);
  if (at >= 0) at = literal(c, at, '},');
  if (breakGlassId !== null) {
    if (at >= 0) at = literal(c, at, '"breakGlassId":');
    if (at >= 0) at = plain(c, at, breakGlassId);
    if (at >= 0) at = literal(c, at, ',');
  }
  if (at >= 0) at = literal(c, at, '"fields":');
  if (at >= 0) at = literal(c, at, fields);
  if (at >= 0) at = literal(c, at, ',"id":');
  if (at >= 0) at = plain(c, at, id);
  if (at >= 0) at = literal(c, at, ',"ip":');
  if (at >= 0) at = plain(c, at, ip);
  if (at >= 0) at = literal(c, at, ',"leafIndex":');
  if (at >= 0) at = literal(c, at, String(index));
  if (at >= 0) at = literal(c, at, ',"occurredAt":');
  if (at >= 0) at = plain(c, at, occurredAt);
  if (at >= 0) at = literal(c, at, ',"outcome":');
  if (at >= 0) at = plain(c, at, outcome);
  if (at >= 0) at = literal(c, at, ',"reason":');
  if (at >= 0) at = plain(c, at, reason);
  if (at >= 0) at = literal(c, at, ',"requestId":');
  if (at >= 0) at = plain(c, at, requestId);
  if (at >= 0) at = literal(c, at, ',"target":');
  if (targetType === null && targetId === null) {
    if (at >= 0) at = literal(c, at, 'null');
  } else if (targetType === null || targetId === null) {
    return false;
  } else {
    if (at >= 0) at = literal(c, at, '{"id":');
    if (at >= 0) at = plain(c, at, targetId);
    if (at >= 0) at = literal(c, at, ',"type":');
    if (at >= 0) at = plain(c, at, targetType);
    if (at >= 0) at = literal(c, at, '}');
  }
  if (at >= 0) at = literal(c, at, ',"tenantId":');
  if (at >= 0) at = plain(c, at, tenantId);
  if (at >= 0) at = literal(c, at, ',"type":');
  if (at >= 0) at = plain(c, at, type);
  if (at >= 0) at = literal(c, at, ',"userAgent":');
  if (at >= 0) at = plain(c, at, userAgent);
  if (at >= 0) at = literal(c, at, ',"v":1}');
  return at === c.length;
}
