import { describe, expect, it } from 'vitest';
import { escapeParamValue, formatSyslog, frameOctetCounting, parseOctetCounted } from './syslog.ts';
import { parseSyslogUrl } from './syslog-sender.ts';

const base = {
  facility: 13,
  severity: 6 as const,
  timestamp: new Date('2026-01-15T09:00:00.123Z'),
  hostname: 'crm-1',
  appName: 'custos',
};

describe('formatSyslog (RFC 5424)', () => {
  it('writes PRI = facility * 8 + severity, version 1, and NILVALUE for empty fields', () => {
    expect(formatSyslog({ ...base, msg: 'hello' })).toBe(
      '<110>1 2026-01-15T09:00:00.123Z crm-1 custos - - - hello',
    );
    expect(formatSyslog({ ...base, facility: 10, severity: 3 })).toBe(
      '<83>1 2026-01-15T09:00:00.123Z crm-1 custos - - -',
    );
  });

  it('escapes ", \\ and ] in structured data parameter values', () => {
    expect(escapeParamValue('a"b\\c]d[e=f')).toBe('a\\"b\\\\c\\]d[e=f');
    const line = formatSyslog({
      ...base,
      msgId: 'auth.login.failed',
      structuredData: [{ id: 'custos@32473', params: [['tenant', 'x"] [evil@1 a="b']] }],
      msg: '{}',
    });
    expect(line).toBe(
      '<110>1 2026-01-15T09:00:00.123Z crm-1 custos - auth.login.failed ' +
        '[custos@32473 tenant="x\\"\\] [evil@1 a=\\"b"] {}',
    );
  });

  it('keeps header fields to printable US-ASCII and their maximum lengths', () => {
    const line = formatSyslog({
      ...base,
      hostname: 'crm 1\nfake',
      appName: 'a'.repeat(60),
      msgId: 'm'.repeat(40),
    });
    const [, , host, app, , msgId] = line.split(' ');
    expect(host).toBe('crm_1_fake');
    expect(app).toHaveLength(48);
    expect(msgId).toHaveLength(32);
  });

  it('refuses malformed SD-IDs and facilities (programming mistakes)', () => {
    expect(() => formatSyslog({ ...base, structuredData: [{ id: 'bad id', params: [] }] })).toThrow(
      TypeError,
    );
    expect(() =>
      formatSyslog({ ...base, structuredData: [{ id: 'x@1', params: [['a=b', 'c']] }] }),
    ).toThrow(TypeError);
    expect(() => formatSyslog({ ...base, facility: 24 })).toThrow(TypeError);
  });
});

describe('octet-counting framing (RFC 6587 3.4.1)', () => {
  it('prefixes the length in bytes, not characters', () => {
    expect(frameOctetCounting('abc').toString()).toBe('3 abc');
    // é is 2 bytes, 😀 is 4.
    expect(frameOctetCounting('é😀').toString()).toBe('6 é😀');
  });

  it('round-trips messages holding LF, spaces and digits', () => {
    const messages = ['12 34\n56', '\n', 'x'.repeat(70_000), '<1>1 - - - - - -'];
    const stream = Buffer.concat(messages.map((m) => frameOctetCounting(m)));
    expect(parseOctetCounted(stream).map((b) => b.toString())).toEqual(messages);
  });

  it('refuses truncated and malformed frames', () => {
    expect(() => parseOctetCounted(Buffer.from('10 short'))).toThrow(/truncated/);
    expect(() => parseOctetCounted(Buffer.from('x3 abc'))).toThrow(/bad frame/);
    expect(() => parseOctetCounted(Buffer.from('03 abc'))).toThrow(/bad frame/);
  });
});

describe('parseSyslogUrl', () => {
  it('reads tcp and tls URLs, IPv6 in brackets', () => {
    expect(parseSyslogUrl('tcp://siem.example:514')).toEqual({
      transport: 'tcp',
      host: 'siem.example',
      port: 514,
    });
    expect(parseSyslogUrl('tls://[::1]:6514')).toEqual({
      transport: 'tls',
      host: '::1',
      port: 6514,
    });
  });

  it('refuses other schemes, paths and bad ports', () => {
    for (const url of ['udp://h:514', 'tcp://h', 'tcp://h:0', 'tcp://h:65536', 'tcp://h:514/x']) {
      expect(() => parseSyslogUrl(url), url).toThrow(TypeError);
    }
  });
});
