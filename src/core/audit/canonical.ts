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
  assertRepresentable(value, [], new Set());
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

// The path is only spelled out on failure, to keep the walk cheap.
function refuse(trail: readonly (string | number)[], what: string): never {
  const path = trail.map((k) => (typeof k === 'number' ? `[${k}]` : `.${k}`)).join('');
  throw new AuditIntegrityError('CANONICAL_UNREPRESENTABLE', `${what} at $${path}`);
}

// Walks the value once before canonicalize(): the package turns some of these into invalid JSON
// (a nested function becomes the text `undefined`), silently into `null` (undefined in an
// array) or into whatever `toJSON` returns. It refuses NaN, Infinity, lone surrogates and cycles
// itself; the cycle check here only keeps this walk finite.
function assertRepresentable(value: unknown, trail: (string | number)[], stack: Set<object>): void {
  switch (typeof value) {
    case 'string': // lone surrogates: canonicalize() refuses them itself
    case 'boolean':
      return;
    case 'number':
      if (!Number.isFinite(value)) refuse(trail, 'non-finite number');
      return;
    case 'bigint':
      return refuse(trail, 'BigInt');
    case 'undefined':
      return refuse(trail, 'undefined');
    case 'function':
    case 'symbol':
      return refuse(trail, typeof value);
    case 'object':
      break;
  }
  if (value === null) return;
  if (stack.has(value)) refuse(trail, 'circular reference');
  stack.add(value);
  if (Array.isArray(value)) {
    for (let i = 0; i < value.length; i++) {
      trail.push(i);
      assertRepresentable(value[i], trail, stack);
      trail.pop();
    }
  } else {
    const proto: unknown = Object.getPrototypeOf(value);
    if (proto !== Object.prototype && proto !== null) refuse(trail, 'non-plain object');
    for (const key of Object.keys(value)) {
      const child: unknown = (value as Record<string, unknown>)[key];
      if (child === undefined) continue;
      trail.push(key);
      assertRepresentable(child, trail, stack);
      trail.pop();
    }
  }
  stack.delete(value);
}
