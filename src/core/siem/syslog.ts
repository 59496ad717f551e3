import { Buffer } from 'node:buffer';

/** RFC 5424 severities (section 6.2.1). */
export type SyslogSeverity = 0 | 1 | 2 | 3 | 4 | 5 | 6 | 7;

/** One SD-ELEMENT: an SD-ID and its parameters, in order. */
export interface StructuredDataElement {
  /** `name@<private enterprise number>` for anything not registered with IANA. */
  id: string;
  params: readonly (readonly [name: string, value: string])[];
}

export interface SyslogMessage {
  /** 0..23; 13 is "log audit", 10 "security/authorization". */
  facility: number;
  severity: SyslogSeverity;
  /** Written as RFC 3339 in UTC with milliseconds. */
  timestamp: Date;
  hostname: string;
  appName: string;
  procId?: string | null;
  msgId?: string | null;
  structuredData?: readonly StructuredDataElement[];
  /** The free-form part (MSG-ANY). */
  msg?: string;
}

const NIL = '-';
/** SD-NAME: 1*32 PRINTUSASCII except `=`, SP, `]` and `"`. */
const SD_NAME = /^[!#-<>-\\^-~]{1,32}$/;

/**
 * A header field: PRINTUSASCII (33..126) only, at most `max` characters, NILVALUE when empty.
 * Anything else is replaced by `_` rather than refused, so a strange host name cannot stop the
 * stream.
 */
function headerField(value: string | null | undefined, max: number): string {
  if (value === null || value === undefined || value === '') return NIL;
  return value.replace(/[^!-~]/g, '_').slice(0, max);
}

/** PARAM-VALUE escaping (RFC 5424 section 6.3.3): `"`, `\` and `]` take a backslash. */
export function escapeParamValue(value: string): string {
  return value.replace(/["\\\]]/g, (c) => `\\${c}`);
}

function structuredData(elements: readonly StructuredDataElement[] | undefined): string {
  if (!elements || elements.length === 0) return NIL;
  return elements
    .map((e) => {
      if (!SD_NAME.test(e.id)) throw new TypeError(`bad SD-ID ${e.id}`);
      const params = e.params.map(([name, value]) => {
        if (!SD_NAME.test(name)) throw new TypeError(`bad SD-PARAM name ${name}`);
        return ` ${name}="${escapeParamValue(value)}"`;
      });
      return `[${e.id}${params.join('')}]`;
    })
    .join('');
}

/**
 * Formats an RFC 5424 message (without transport framing).
 *
 * @example
 * formatSyslog({ facility: 13, severity: 6, timestamp: new Date(0), hostname: 'h', appName: 'custos', msg: 'hi' })
 * // '<110>1 1970-01-01T00:00:00.000Z h custos - - - hi'
 */
export function formatSyslog(m: SyslogMessage): string {
  if (!Number.isInteger(m.facility) || m.facility < 0 || m.facility > 23) {
    throw new TypeError('syslog facility must be 0..23');
  }
  const pri = m.facility * 8 + m.severity;
  const header = [
    `<${pri}>1`,
    m.timestamp.toISOString(),
    headerField(m.hostname, 255),
    headerField(m.appName, 48),
    headerField(m.procId, 128),
    headerField(m.msgId, 32),
    structuredData(m.structuredData),
  ].join(' ');
  return m.msg === undefined || m.msg === '' ? header : `${header} ${m.msg}`;
}

/**
 * Octet-counting framing (RFC 6587 section 3.4.1, also RFC 5425 for TLS): `MSG-LEN SP MSG`,
 * where MSG-LEN counts the UTF-8 bytes, so a message may hold any byte including LF.
 *
 * @example
 * frameOctetCounting('<13>1 - - - - - -').toString() // '17 <13>1 - - - - - -'
 */
export function frameOctetCounting(message: string | Uint8Array): Buffer {
  const bytes = typeof message === 'string' ? Buffer.from(message, 'utf8') : Buffer.from(message);
  return Buffer.concat([Buffer.from(`${bytes.length} `, 'ascii'), bytes]);
}

/**
 * Splits a stream of octet-counted frames back into messages (for receivers and tests).
 * Throws TypeError on a malformed or truncated frame.
 */
export function parseOctetCounted(stream: Uint8Array): Buffer[] {
  const buf = Buffer.from(stream);
  const out: Buffer[] = [];
  let at = 0;
  while (at < buf.length) {
    const space = buf.indexOf(0x20, at);
    const digits = space < 0 ? '' : buf.subarray(at, space).toString('ascii');
    if (!/^[1-9][0-9]{0,8}$/.test(digits)) throw new TypeError(`bad frame length at ${at}`);
    const len = Number(digits);
    const end = space + 1 + len;
    if (end > buf.length) throw new TypeError(`truncated frame at ${at}`);
    out.push(buf.subarray(space + 1, end));
    at = end;
  }
  return out;
}
