/**
 * ArcSight Common Event Format (CEF) escaping and assembly.
 *
 * Header fields escape `\` and `|`; extension values escape `\` and `=` and write CR and LF as
 * the two-character sequences `\r` and `\n`. Neither may carry a raw line break (a header has no
 * escape for one, so it becomes a space). Extension keys are alphanumeric.
 */

export function escapeCefHeader(value: string): string {
  return value.replace(/[\\|]/g, (c) => `\\${c}`).replace(/\r\n|[\r\n]/g, ' ');
}

export function escapeCefExtension(value: string): string {
  return value
    .replace(/[\\=]/g, (c) => `\\${c}`)
    .replace(/\r\n|[\r\n]/g, (c) => (c === '\r' ? '\\r' : '\\n'));
}

export interface CefEvent {
  vendor: string;
  product: string;
  version: string;
  /** Device Event Class ID. */
  signatureId: string;
  name: string;
  /** 0 (lowest) .. 10. */
  severity: number;
  /** Keys must be alphanumeric; undefined and null values are left out. */
  extension: readonly (readonly [key: string, value: string | number | null | undefined])[];
}

const KEY = /^[A-Za-z0-9]{1,63}$/;

/**
 * One CEF line (version 0).
 *
 * @example
 * formatCef({ vendor: 'Custos', product: 'CRM', version: '1', signatureId: 'a|b', name: 'x',
 *   severity: 3, extension: [['msg', 'a=b\nc']] })
 * // 'CEF:0|Custos|CRM|1|a\\|b|x|3|msg=a\\=b\\nc'
 */
export function formatCef(e: CefEvent): string {
  if (!Number.isInteger(e.severity) || e.severity < 0 || e.severity > 10) {
    throw new TypeError('CEF severity must be an integer 0..10');
  }
  const header = [e.vendor, e.product, e.version, e.signatureId, e.name]
    .map(escapeCefHeader)
    .join('|');
  const ext: string[] = [];
  for (const [key, value] of e.extension) {
    if (!KEY.test(key)) throw new TypeError(`bad CEF extension key ${key}`);
    if (value === null || value === undefined) continue;
    ext.push(`${key}=${escapeCefExtension(String(value))}`);
  }
  return `CEF:0|${header}|${e.severity}|${ext.join(' ')}`;
}

/** Reads the extension of a CEF line back (for receivers and tests). */
export function parseCefExtension(extension: string): Map<string, string> {
  const out = new Map<string, string>();
  // A key starts after a space and is followed by an unescaped `=`.
  const re = /(?:^| )([A-Za-z0-9]+)=((?:\\.|[^\\=])*?)(?= [A-Za-z0-9]+=|$)/gs;
  for (const m of extension.matchAll(re)) {
    const raw = m[2] ?? '';
    out.set(
      m[1]!,
      raw.replace(/\\(.)/gs, (_s, c: string) => (c === 'n' ? '\n' : c === 'r' ? '\r' : c)),
    );
  }
  return out;
}
