import fs from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { describe, expect, it } from 'vitest';
import { escapeCefExtension, escapeCefHeader, formatCef, parseCefExtension } from './cef.ts';

const fixtures = path.join(path.dirname(fileURLToPath(import.meta.url)), '../../../test/fixtures');
const BLNS = JSON.parse(
  fs.readFileSync(path.join(fixtures, 'blns', 'blns.from-txt.json'), 'utf8'),
) as string[];
const HOSTILE = [
  ...BLNS,
  'a|b|c',
  'x=y z=w',
  'end\\',
  '\\=',
  'line1\r\nline2\rline3\nline4',
  'act=auth.login.succeeded outcome=success',
  'CEF:0|Fake|Vendor|1|x|y|10|',
];

const event = (name: string, value: string) => ({
  vendor: 'Custos',
  product: 'Custos CRM',
  version: '1',
  signatureId: name,
  name,
  severity: 5,
  extension: [
    ['requestClientApplication', value],
    ['suid', 'user-1'],
  ] as const,
});

/** Splits a CEF line at unescaped pipes. */
function headerParts(line: string): string[] {
  return line.split(/(?<!\\)(?:\\\\)*\|/);
}

describe('CEF escaping', () => {
  it('escapes backslash and pipe in the header, and flattens line breaks', () => {
    expect(escapeCefHeader('a|b\\c')).toBe('a\\|b\\\\c');
    expect(escapeCefHeader('a\r\nb\nc')).toBe('a b c');
  });

  it('escapes backslash and equals in extensions, and writes CR/LF as \\r and \\n', () => {
    expect(escapeCefExtension('a=b\\c|d')).toBe('a\\=b\\\\c|d');
    expect(escapeCefExtension('a\r\nb\rc\nd')).toBe('a\\nb\\rc\\nd');
  });

  it('formats a line of exactly seven header fields and the extension', () => {
    expect(
      formatCef({
        ...event('auth|login', 'curl/8=x'),
        extension: [
          ['src', '192.0.2.1'],
          ['reason', null],
          ['msg', 'a\nb'],
        ],
      }),
    ).toBe('CEF:0|Custos|Custos CRM|1|auth\\|login|auth\\|login|5|src=192.0.2.1 msg=a\\nb');
  });

  it(`keeps ${HOSTILE.length} hostile strings (big-list-of-naughty-strings) from forging fields`, () => {
    for (const value of HOSTILE) {
      const line = formatCef(event(value, value));
      expect(line, JSON.stringify(value)).not.toMatch(/[\r\n]/);
      // The header stays 8 parts (CEF:0 + 6 fields + severity) plus the extension.
      const parts = headerParts(line);
      expect(parts.slice(0, 8).length).toBe(8);
      expect(parts[6]).toBe('5');
      // Line breaks are a space in the header and \n in the extension: compare modulo those.
      const ext = parseCefExtension(line.slice(line.indexOf('|5|') + 3));
      expect([...ext.keys()]).toEqual(['requestClientApplication', 'suid']);
      expect(ext.get('requestClientApplication')).toBe(value.replace(/\r\n/g, '\n'));
      expect(ext.get('suid')).toBe('user-1');
    }
  });

  it('refuses bad extension keys and severities', () => {
    expect(() => formatCef({ ...event('x', 'y'), extension: [['a b', 'c']] })).toThrow(TypeError);
    expect(() => formatCef({ ...event('x', 'y'), severity: 11 })).toThrow(TypeError);
  });
});
