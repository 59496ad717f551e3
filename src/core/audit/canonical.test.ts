import { describe, expect, it } from 'vitest';
import { canonicalBytes } from './canonical.ts';

const text = (value: unknown) => new TextDecoder().decode(canonicalBytes(value));
const unrepresentable = expect.objectContaining({ code: 'CANONICAL_UNREPRESENTABLE' });

describe('canonicalBytes', () => {
  it('sorts keys and drops whitespace, whatever order the event was built in', () => {
    expect(text({ b: [1, { d: true, c: null }], a: 'x' })).toBe(
      '{"a":"x","b":[1,{"c":null,"d":true}]}',
    );
    expect(text({ a: 1, b: 2 })).toBe(text({ b: 2, a: 1 }));
  });

  it('serialises numbers and strings as RFC 8785 requires', () => {
    // Values from RFC 8785 section 3.2.2 / appendix B.
    expect(text([1e30, 4.5, 0.002, 1e-27, -0, Number('333333333.33333329')])).toBe(
      '[1e+30,4.5,0.002,1e-27,0,333333333.3333333]',
    );
    expect(text('\u20ac$\u000f\nA\'B"\\\\"/')).toBe('"€$\\u000f\\nA\'B\\"\\\\\\\\\\"/"');
  });

  it('sorts keys by UTF-16 code units, as RFC 8785 section 3.2.3 does', () => {
    expect(
      text({ '\u20ac': 1, '\r': 2, '\ud83d\ude00': 3, '1': 4, '\u0080': 5, '\u00f6': 6 }),
    ).toBe('{"\\r":2,"1":4,"\u0080":5,"ö":6,"€":1,"😀":3}');
  });

  it('encodes the text as UTF-8', () => {
    expect([...canonicalBytes('é')]).toEqual([0x22, 0xc3, 0xa9, 0x22]);
  });

  it('omits object properties that are undefined, like JSON', () => {
    expect(text({ a: 1, reason: undefined })).toBe('{"a":1}');
  });

  it.each([
    ['undefined at the top level', undefined],
    ['NaN', { n: NaN }],
    ['Infinity', [Infinity]],
    ['a BigInt', { n: 10n }],
    ['a function', { f: () => 1 }],
    ['a symbol', { s: Symbol('x') }],
    ['undefined in an array', [1, undefined]],
    ['a lone surrogate', { s: '\ud800' }],
    ['a lone surrogate in a key', { ['\udc00']: 1 }],
    ['a Date', { at: new Date(0) }],
    ['a Map', new Map()],
    ['a Uint8Array', { bytes: new Uint8Array(2) }],
  ])('refuses %s', (_, value) => {
    expect(() => canonicalBytes(value)).toThrow(unrepresentable);
  });

  it('refuses a circular structure', () => {
    const loop: Record<string, unknown> = {};
    loop.self = loop;
    expect(() => canonicalBytes(loop)).toThrow(unrepresentable);
  });

  it('accepts the same object twice when it is not a cycle', () => {
    const shared = { x: 1 };
    expect(text({ a: shared, b: shared })).toBe('{"a":{"x":1},"b":{"x":1}}');
  });

  it('accepts objects without a prototype', () => {
    const bare = Object.assign(Object.create(null) as Record<string, unknown>, { k: 'v' });
    expect(text(bare)).toBe('{"k":"v"}');
  });
});
