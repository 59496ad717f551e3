import { describe, expect, it } from 'vitest';
import { lengthPrefixed } from './encoding.ts';

/** The encoding spelled out: domain and parts, each as a 4-byte big-endian length and UTF-8. */
function reference(domain: string, parts: readonly string[]): Buffer {
  return Buffer.concat(
    [domain, ...parts].flatMap((part) => {
      const bytes = Buffer.from(part, 'utf8');
      const length = Buffer.alloc(4);
      length.writeUInt32BE(bytes.length);
      return [length, bytes];
    }),
  );
}

describe('lengthPrefixed', () => {
  const cases: string[][] = [
    [],
    [''],
    ['tenant-1', 'contact', '01a21d70-a6f5-72dc-bd80-ccda15e7c590', '5', 'email', '14'],
    ['a|b', 'c'],
    ['a', 'b|c'],
    ['Zoë', 'naïve café', '日本語', '🙂 emoji', '\u007f\u0080', 'x'.repeat(5000)],
    ['mixed ascii then é', 'é then ascii'],
  ];

  it('writes each part as its UTF-8 length and bytes, after the domain', () => {
    for (const parts of cases) {
      expect(lengthPrefixed('custos/test/v1', parts)).toEqual(reference('custos/test/v1', parts));
    }
    expect(lengthPrefixed('é', ['🙂'])).toEqual(reference('é', ['🙂']));
  });

  it('puts a head in front of the encoding when given one', () => {
    const head = Buffer.from([2, 3, 0xff]);
    for (const parts of cases) {
      expect(lengthPrefixed('d', parts, head)).toEqual(
        Buffer.concat([head, reference('d', parts)]),
      );
    }
  });

  it('keeps ambiguous splits apart', () => {
    expect(lengthPrefixed('d', ['a|b', 'c']).equals(lengthPrefixed('d', ['a', 'b|c']))).toBe(false);
  });

  it('refuses lone surrogates and parts that are not strings', () => {
    expect(() => lengthPrefixed('d', ['ok', 'x\uD800'])).toThrow(/part 2 is not well-formed/);
    expect(() => lengthPrefixed('d', ['\uDC00'])).toThrow(TypeError);
    expect(() => lengthPrefixed('\uD800', [])).toThrow(/part 0/);
    expect(() => lengthPrefixed('d', [1 as unknown as string])).toThrow(/part 1 must be a string/);
    // A well-formed pair is fine.
    expect(lengthPrefixed('d', ['\uD83D\uDE42'])).toEqual(reference('d', ['🙂']));
  });
});
