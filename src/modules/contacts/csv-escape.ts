/**
 * Spreadsheet formula injection (OWASP "CSV Injection"): a cell that starts with `=`, `+`, `-`,
 * `@`, tab or carriage return is evaluated by Excel, LibreOffice and Google Sheets. Export
 * prefixes such cells with `'`, which spreadsheets show as text. Leading spaces before a trigger
 * are covered too, and cells already starting with quotes before a trigger get one more quote, so
 * that `restoreCell(neutralizeCell(v)) === v` for every string: a round trip loses nothing.
 */
const TRIGGER = /^'*(?:\s*[=+\-@]|[\t\r])/;

/** The cell as it is safe to write into a CSV a spreadsheet will open. */
export function neutralizeCell(value: string): string {
  return TRIGGER.test(value) ? `'${value}` : value;
}

/** Undoes `neutralizeCell` on import: `'=SUM(A1)` becomes `=SUM(A1)` again. */
export function restoreCell(value: string): string {
  return value.startsWith("'") && TRIGGER.test(value.slice(1)) ? value.slice(1) : value;
}
