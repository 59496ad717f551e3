import canonicalize from 'canonicalize';
import { AuditIntegrityError } from './errors.ts';

const encoder = new TextEncoder();

/**
 * Canonical bytes of an audit event: RFC 8785 (JSON Canonicalization Scheme) text, UTF-8 encoded.
 * The same event always yields the same bytes, whatever the key order it was built with.
 *
 * Only plain JSON data is accepted, so that what is hashed is exactly what is stored:
 * plain objects, arrays, strings, finite numbers, booleans and `null`. An object property whose
 * value is `undefined` is omitted (as `JSON.stringify` does). Everything else throws
 * `CANONICAL_UNREPRESENTABLE`: `undefined` at the top level or in an array, `NaN`, `Infinity`,
 * `BigInt`, functions, symbols, strings with a lone surrogate, cycles, and non-plain objects such
 * as `Date`, `Map` or `Uint8Array` (convert them first, e.g. `date.toISOString()`).
 *
 * @example
 * ```ts
 * canonicalBytes({ b: 1, a: 'x' }); // bytes of '{"a":"x","b":1}'
 * ```
 */
export function canonicalBytes(value: unknown): Uint8Array {
  assertRepresentable(value, '$', new Set());
  let text: string | undefined;
  try {
    text = canonicalize(value);
  } catch (error) {
    throw new AuditIntegrityError('CANONICAL_UNREPRESENTABLE', 'value cannot be canonicalised', {
      cause: error,
    });
  }
  if (text === undefined) {
    throw new AuditIntegrityError('CANONICAL_UNREPRESENTABLE', 'value has no JSON form');
  }
  return encoder.encode(text);
}

function refuse(path: string, what: string): never {
  throw new AuditIntegrityError('CANONICAL_UNREPRESENTABLE', `${what} at ${path}`);
}

// Walks the value once before canonicalize(): the package turns some of these into invalid JSON
// (a nested function becomes the text `undefined`) or silently into `null`.
function assertRepresentable(value: unknown, path: string, stack: Set<object>): void {
  switch (typeof value) {
    case 'string':
      if (hasLoneSurrogate(value)) refuse(path, 'lone surrogate');
      return;
    case 'boolean':
      return;
    case 'number':
      if (!Number.isFinite(value)) refuse(path, 'non-finite number');
      return;
    case 'bigint':
      return refuse(path, 'BigInt');
    case 'undefined':
      return refuse(path, 'undefined');
    case 'function':
    case 'symbol':
      return refuse(path, typeof value);
    case 'object':
      break;
  }
  if (value === null) return;
  if (stack.has(value)) refuse(path, 'circular reference');
  stack.add(value);
  if (Array.isArray(value)) {
    for (let i = 0; i < value.length; i++) {
      assertRepresentable(value[i], `${path}[${i}]`, stack);
    }
  } else {
    const proto: unknown = Object.getPrototypeOf(value);
    if (proto !== Object.prototype && proto !== null) refuse(path, 'non-plain object');
    for (const key of Object.keys(value)) {
      const child: unknown = (value as Record<string, unknown>)[key];
      if (child === undefined) continue;
      if (hasLoneSurrogate(key)) refuse(path, 'lone surrogate in key');
      assertRepresentable(child, `${path}.${key}`, stack);
    }
  }
  stack.delete(value);
}

// Without the `u` flag the regex sees UTF-16 code units, which is what we need here.
const LONE_SURROGATE = /[\uD800-\uDBFF](?![\uDC00-\uDFFF])|(?<![\uD800-\uDBFF])[\uDC00-\uDFFF]/;

function hasLoneSurrogate(text: string): boolean {
  return LONE_SURROGATE.test(text);
}
