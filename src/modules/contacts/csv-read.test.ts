import fs from 'node:fs';
import path from 'node:path';
import { Readable } from 'node:stream';
import { fileURLToPath } from 'node:url';
import { describe, expect, it } from 'vitest';
import { AppError } from '../../errors.ts';
import { readCsv, type CsvFault, type CsvRecord } from './csv-read.ts';

const fixtures = path.resolve(
  path.dirname(fileURLToPath(import.meta.url)),
  '../../../test/fixtures',
);

async function read(bytes: Buffer | string, chunk = 7): Promise<(CsvRecord | CsvFault)[]> {
  const buf = typeof bytes === 'string' ? Buffer.from(bytes, 'utf8') : bytes;
  // Small chunks: multi-byte characters and BOMs split across reads must still decode.
  const chunks: Buffer[] = [];
  for (let i = 0; i < buf.length; i += chunk) chunks.push(buf.subarray(i, i + chunk));
  const out: (CsvRecord | CsvFault)[] = [];
  for await (const item of readCsv(Readable.from(chunks))) out.push(item);
  return out;
}

const rows = (items: (CsvRecord | CsvFault)[]) =>
  items.map((i) => {
    if (!('values' in i)) throw new Error(`fault at ${i.row}: ${i.reason}`);
    return i.values;
  });

function asObjects(values: string[][]): Record<string, string>[] {
  const [header, ...data] = values;
  return data.map((r) => Object.fromEntries(header!.map((h, i) => [h, r[i] ?? ''])));
}

async function codeOf(promise: Promise<unknown>): Promise<string | undefined> {
  try {
    await promise;
  } catch (error) {
    return error instanceof AppError ? error.code : `not an AppError: ${String(error)}`;
  }
  return undefined;
}

describe('readCsv against csv-spectrum', () => {
  const dir = path.join(fixtures, 'csv-spectrum');
  const names = fs.readdirSync(path.join(dir, 'csvs')).map((f) => f.replace(/\.csv$/, ''));
  // Upstream's expected JSON for location_coordinates is an object with a different phone number
  // than its CSV: the fixture disagrees with itself, so it cannot be compared.
  const broken = new Set(['location_coordinates']);

  it.each(names.filter((n) => !broken.has(n)))('parses %s as the expected JSON', async (name) => {
    let csv = fs.readFileSync(path.join(dir, 'csvs', `${name}.csv`));
    // The stored copies of the *_crlf cases lost their CRs; upstream's are CRLF, so restore them.
    if (name.endsWith('_crlf')) csv = Buffer.from(csv.toString('utf8').replace(/\r?\n/g, '\r\n'));
    const expected: unknown = JSON.parse(
      fs.readFileSync(path.join(dir, 'json', `${name}.json`), 'utf8'),
    );
    expect(asObjects(rows(await read(csv)))).toEqual(expected);
  });
});

describe('readCsv against the vanillaes RFC 4180 cases', () => {
  const dir = path.join(fixtures, 'csv-parser-suites/vanillaes');
  const cases = fs.readdirSync(dir).filter((f) => /^rfc\d\.json$/.test(f));
  it.each(cases)('follows %s', async (file) => {
    const c = JSON.parse(fs.readFileSync(path.join(dir, file), 'utf8')) as {
      csv: string[];
      json: string[][];
    };
    expect(rows(await read(c.csv.join('\n')))).toEqual(c.json);
  });
});

describe('readCsv against the mafintosh csv-parser fixtures', () => {
  const dir = path.join(fixtures, 'csv-parser-suites/mafintosh');
  const file = (name: string) => fs.readFileSync(path.join(dir, name));

  it('keeps escaped quotes and line breaks inside quoted values, one row each', async () => {
    const items = await read(file('quotes+newlines.csv'));
    expect(rows(items)).toEqual([
      ['a', 'b'],
      ['1', 'ha \n"ha" \nha'],
      ['2', ' \n"" \n'],
      ['3', '4'],
    ]);
    // Spreadsheet rows: a value spanning lines is still one row.
    expect(items.map((i) => i.row)).toEqual([1, 2, 3, 4]);
    expect(rows(await read(file('escape-quotes.csv')))[2]).toEqual(['2', '""']);
  });

  it('keeps empty columns and commas in quotes', async () => {
    // This fixture has no header line (upstream passes one as an option).
    expect(rows(await read(file('empty-columns.csv')))).toEqual([
      ['2007-01-01', '', ''],
      ['2007-01-02', '', ''],
    ]);
    expect(rows(await read(file('comma-in-quote.csv')))[1]).toEqual([
      'John',
      'Doe',
      '120 any st.',
      'Anytown, WW',
      '08123',
    ]);
  });

  it('reads bad data and ragged rows without throwing', async () => {
    expect(rows(await read(file('bad-data.csv')))).toEqual([
      ['', 'somejunk', '<! />'],
      ['', 'nope', ''],
      ['yes', 'yup', 'yeah'],
      ['ok', 'ok', 'ok!'],
    ]);
    expect(rows(await read(file('strict.csv'))).at(-1)).toEqual(['7', '8', '9', '10']);
  });

  it('decodes UTF-16 LE and BE with a byte order mark, and UTF-8 split mid-character', async () => {
    const utf8 = rows(await read(file('utf8.csv'), 1));
    expect(utf8[0]).toEqual(['a', 'b', 'c']);
    expect(rows(await read(file('utf16.csv'), 3))).toEqual(utf8);
    expect(rows(await read(file('utf16-big.csv'), 5))).toEqual(utf8);
  });

  it('reads CR-only line ends (old Mac files)', async () => {
    const values = rows(await read(file('mac-newlines.csv')));
    expect(values[0]).toEqual(['a', 'b', 'c']);
    expect(values.length).toBeGreaterThan(1);
  });

  it('refuses Latin-1 text with import.unsupported_encoding instead of garbling it', async () => {
    expect(await codeOf(read(file('latin.csv')))).toBe('import.unsupported_encoding');
  });
});

describe('readCsv on broken input', () => {
  it('strips a UTF-8 byte order mark from the first header', async () => {
    expect(rows(await read('\uFEFFa,b\r\n1,2\r\n'))).toEqual([
      ['a', 'b'],
      ['1', '2'],
    ]);
  });

  it('reports an unclosed quote as a fault at its row and stops', async () => {
    const items = await read('a,b\n1,2\n3,"open\n4,5\n');
    expect(items.slice(0, 2).map((i) => i.row)).toEqual([1, 2]);
    const fault = items[2] as CsvFault;
    expect(fault.row).toBe(3);
    expect(fault.reason).toMatch(/never closed/);
    expect(items).toHaveLength(3);
  });

  it('counts blank lines as spreadsheet rows', async () => {
    const items = await read('a\n1\n\n2\n');
    expect(items.map((i) => i.row)).toEqual([1, 2, 3, 4]);
  });

  it('refuses UTF-16 without a byte order mark', async () => {
    const bytes = Buffer.from('a,b\n1,2\n', 'utf16le');
    expect(await codeOf(read(bytes))).toBe('import.unsupported_encoding');
  });

  it('turns invalid UTF-8 after the first rows into a fault, not a crash', async () => {
    const head = Buffer.from(`a,b\n${'x,y\n'.repeat(20_000)}`);
    const items = await read(Buffer.concat([head, Buffer.from([0x61, 0xe9, 0x0a])]), 65_536);
    const last = items.at(-1) as CsvFault;
    expect('values' in last).toBe(false);
    expect(last.reason).toMatch(/not valid UTF-8/);
  });
});
