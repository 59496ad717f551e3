import { expect } from 'vitest';

/** Asserts a problem+json answer: its status and its stable `code`. */
export function expectCode(
  res: { statusCode: number; json(): { code?: string } },
  status: number,
  code: string,
) {
  expect(res.statusCode).toBe(status);
  expect(res.json().code).toBe(code);
}
