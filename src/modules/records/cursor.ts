import { AppError } from '../../errors.ts';
import { isUuid } from '../../ids.ts';

/** Keyset position: the sort it belongs to, the last row's sort value and id. */
export interface Cursor {
  sort: string;
  direction: 'asc' | 'desc';
  value: string | number;
  id: string;
}

export function encodeCursor(cursor: Cursor): string {
  return Buffer.from(
    JSON.stringify([cursor.sort, cursor.direction, cursor.value, cursor.id]),
    'utf8',
  ).toString('base64url');
}

const invalid = () =>
  new AppError('invalid', 'request.invalid_cursor', 'invalid cursor', {
    detail: 'The cursor is not one this list returned, or belongs to another sort order.',
  });

export function decodeCursor(raw: string, sort: string, direction: 'asc' | 'desc'): Cursor {
  let parsed: unknown;
  try {
    parsed = JSON.parse(Buffer.from(raw, 'base64url').toString('utf8'));
  } catch {
    throw invalid();
  }
  if (!Array.isArray(parsed) || parsed.length !== 4) throw invalid();
  const [s, d, value, id] = parsed as unknown[];
  if (s !== sort || d !== direction) throw invalid();
  if (typeof value !== 'string' && typeof value !== 'number') throw invalid();
  if (typeof id !== 'string' || !isUuid(id)) throw invalid();
  return { sort, direction, value, id };
}
