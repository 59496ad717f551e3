import { Transform, type Readable, type TransformCallback } from 'node:stream';
import { TextDecoder } from 'node:util';
import type { CsvError } from 'csv-parse';
import { parse } from 'csv-parse';
import { AppError } from '../../errors.ts';

/** One record as a spreadsheet shows it: `row` 1 is the header line. */
export interface CsvRecord {
  row: number;
  values: string[];
}

/** A row that cannot be read (bad quoting, bytes that are not text): reported, not fatal. */
export interface CsvFault {
  row: number;
  reason: string;
}

const unsupportedEncoding = (detail: string) =>
  new AppError('invalid', 'import.unsupported_encoding', 'not UTF-8 or UTF-16 text', { detail });

/** Files whose first bytes are not text are refused whole rather than row by row. */
const SNIFF_BYTES = 64 * 1024;

/**
 * Bytes to text. The encoding is read from the byte order mark: UTF-16 LE/BE when present,
 * otherwise UTF-8 (BOM stripped). Decoding is strict, so Latin-1 or Windows-1252 files fail
 * instead of importing mojibake. Bytes that are not text within the first 64 KiB (or UTF-16
 * without BOM) fail the stream with import.unsupported_encoding; later, the complete lines before
 * the bad one are passed on, the rest of the input is drained unread and `faulted` is set.
 */
export class TextDecodeStream extends Transform {
  faulted = false;
  private decoder: TextDecoder | undefined;
  private label = 'utf-8';
  private head = Buffer.alloc(0);
  private offset = 0;

  constructor() {
    super({ decodeStrings: true, encoding: 'utf8' });
  }

  override _transform(chunk: Buffer, _enc: BufferEncoding, done: TransformCallback): void {
    if (this.faulted) return done();
    try {
      if (!this.decoder) {
        this.head = Buffer.concat([this.head, chunk]);
        if (this.head.length < 4) return done();
        chunk = this.start(this.head);
      }
      done(null, this.decode(chunk, true));
    } catch (error) {
      done(error as Error);
    }
  }

  override _flush(done: TransformCallback): void {
    if (this.faulted) return done();
    try {
      const rest = this.decoder ? Buffer.alloc(0) : this.start(this.head);
      done(null, this.decode(rest, false));
    } catch (error) {
      done(error as Error);
    }
  }

  private decode(chunk: Buffer, stream: boolean): string {
    try {
      const text = this.decoder!.decode(chunk, { stream });
      this.offset += chunk.length;
      return text;
    } catch {
      if (this.offset < SNIFF_BYTES) throw notText();
      this.faulted = true;
      if (this.label !== 'utf-8') return '';
      // Keep the whole lines before the bad bytes (a line feed byte is never inside a UTF-8
      // sequence), so that every row read is complete.
      const lines = new TextDecoder('utf-8', { fatal: true });
      let good = '';
      for (let start = 0, end = chunk.indexOf(0x0a); end >= 0; end = chunk.indexOf(0x0a, start)) {
        try {
          good += lines.decode(chunk.subarray(start, end + 1));
        } catch {
          break;
        }
        start = end + 1;
      }
      return good;
    }
  }

  private start(head: Buffer): Buffer {
    let skip = 0;
    if (head[0] === 0xff && head[1] === 0xfe) [this.label, skip] = ['utf-16le', 2];
    else if (head[0] === 0xfe && head[1] === 0xff) [this.label, skip] = ['utf-16be', 2];
    else if (head[0] === 0xef && head[1] === 0xbb && head[2] === 0xbf) skip = 3;
    else if (head.subarray(0, 64).includes(0)) {
      throw unsupportedEncoding(
        'The file looks like UTF-16 without a byte order mark. Save it as "CSV UTF-8".',
      );
    }
    // ignoreBOM: the mark was removed above; a second one would be data.
    this.decoder = new TextDecoder(this.label, { fatal: true, ignoreBOM: true });
    this.offset = skip;
    return head.subarray(skip);
  }
}

const notText = () =>
  unsupportedEncoding(
    'The file is not UTF-8 text (nor UTF-16 with a byte order mark). Save it as "CSV UTF-8".',
  );

const REASONS: Record<string, string> = {
  CSV_QUOTE_NOT_CLOSED: 'a quoted value is never closed (a missing ")',
  CSV_INVALID_CLOSING_QUOTE: 'a closing quote is followed by other characters',
  CSV_MAX_RECORD_SIZE: 'the row is longer than 1 MiB',
  CSV_RECORD_INCONSISTENT_FIELDS_LENGTH: 'the row has a different number of values',
};

/**
 * Reads CSV records from a byte stream without holding the file in memory. Yields records with
 * their spreadsheet row numbers (a value with line breaks stays one row; blank lines count) and
 * faults for rows that cannot be read; reading goes on after a fault when the parser can resync,
 * and ends after a text-decoding fault. Quotes inside unquoted values are data, as spreadsheets
 * take them. Throws AppError(import.unsupported_encoding) when the file is not UTF-8/UTF-16
 * text; errors of the input stream itself (size limit, aborted upload) propagate as they are.
 *
 * @example
 * ```ts
 * for await (const item of readCsv(fs.createReadStream('contacts.csv'))) {
 *   if ('values' in item) console.log(item.row, item.values);
 * }
 * ```
 */
export async function* readCsv(input: Readable): AsyncGenerator<CsvRecord | CsvFault> {
  for await (const batch of readCsvBatches(input)) yield* batch;
}

/**
 * `readCsv` a batch at a time: every record the parser holds when asked (one input chunk's
 * worth, hundreds of rows), in order, never an empty batch. A large import reads this way: an
 * async step per record (the stream's iterator, then the generator's) cost more than parsing
 * the record.
 *
 * @example
 * ```ts
 * for await (const batch of readCsvBatches(input)) for (const item of batch) handle(item);
 * ```
 */
export async function* readCsvBatches(input: Readable): AsyncGenerator<(CsvRecord | CsvFault)[]> {
  const decoder = new TextDecodeStream();
  const parser = parse({
    relax_quotes: true,
    relax_column_count: true,
    skip_empty_lines: false,
    skip_records_with_error: true,
    max_record_size: 1024 * 1024,
  });
  // Parse errors arrive as events while records wait in the stream buffer: each is placed after
  // the number of records parsed when it happened.
  const faults: { after: number; reason: string }[] = [];
  parser.on('skip', (error: CsvError) => {
    const reason = REASONS[error.code] ?? 'the row cannot be read as CSV';
    faults.push({ after: parser.info.records, reason });
  });
  // The parser is read in paused mode: these listeners stay for its whole life (an event with
  // no listener would be lost) and wake the reader when it waits.
  let wake: (() => void) | undefined;
  let ended = false;
  let failure: { error: unknown } | undefined;
  parser.on('readable', () => wake?.());
  parser.on('end', () => {
    ended = true;
    wake?.();
  });
  parser.on('close', () => {
    ended = true;
    wake?.();
  });
  parser.on('error', (error) => {
    failure ??= { error };
    wake?.();
  });
  // Listeners stay after reading ends: a late error of the upload must not go unhandled.
  input.on('error', (error) => parser.destroy(error));
  decoder.on('error', (error) => parser.destroy(error));
  input.pipe(decoder).pipe(parser);
  let row = 0;
  let parsed = 0;
  const rethrow = () => {
    if (failure !== undefined) throw failure.error;
  };
  const faultsUpTo = (count: number, into: (CsvRecord | CsvFault)[]) => {
    while (faults.length > 0 && faults[0]!.after <= count) {
      row++;
      into.push({ row, reason: faults.shift()!.reason });
    }
  };
  try {
    for (;;) {
      rethrow();
      const batch: (CsvRecord | CsvFault)[] = [];
      for (let values = parser.read() as string[] | null; values !== null;) {
        faultsUpTo(parsed, batch);
        parsed++;
        row++;
        batch.push({ row, values });
        values = parser.read() as string[] | null;
      }
      rethrow();
      if (batch.length > 0) {
        yield batch;
        continue;
      }
      if (ended) break;
      await new Promise<void>((resolve) => (wake = resolve));
      wake = undefined;
    }
    const rest: (CsvRecord | CsvFault)[] = [];
    faultsUpTo(Number.MAX_SAFE_INTEGER, rest);
    if (decoder.faulted) {
      rest.push({
        row: row + 1,
        reason: 'the file is not valid UTF-8 text from this row on; nothing after it was read',
      });
    }
    if (rest.length > 0) yield rest;
  } finally {
    input.unpipe(decoder);
    decoder.destroy();
    parser.destroy();
  }
}
