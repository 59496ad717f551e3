import { describe, expect, it } from 'vitest';
import { parseCefExtension, parseOctetCounted, frameOctetCounting } from '../../core/siem/index.ts';
import type { AuditEventBody } from '../audit/event.ts';
import { asciiJson, toCef, toSyslog } from './format.ts';

const event: AuditEventBody = {
  v: 1,
  tenantId: 'tenant-"]1',
  leafIndex: 3,
  id: 'event-3',
  type: 'auth.login.failed',
  occurredAt: '2026-01-15T09:00:00.000Z',
  actor: { kind: 'anonymous', id: null },
  ip: '192.0.2.7',
  userAgent: 'Mozilla|5.0 x=y\r\nCEF:0|forged|é\u0085\u2028',
  requestId: 'req-1',
  target: { type: 'user', id: 'user-1' },
  outcome: 'failure',
  reason: 'bad_password',
  fields: [],
};
const leafHash = 'ab'.repeat(32);

describe('SIEM message formats', () => {
  it('writes JSON as pure printable ASCII that parses back to the same value', () => {
    const json = asciiJson({ s: event.userAgent });
    expect(json).toMatch(/^[\x20-\x7e]+$/);
    expect(JSON.parse(json)).toEqual({ s: event.userAgent });
  });

  it('puts the ids in structured data and OCSF JSON in MSG', () => {
    const line = toSyslog({ body: event, leafHash }, { format: 'json', hostname: 'crm-1' });
    expect(line).toMatch(
      /^<109>1 2026-01-15T09:00:00.000Z crm-1 custos - auth.login.failed \[custos@32473 tenant="tenant-\\"\\]1" eventId="event-3" leafIndex="3" leafHash="(ab){32}"\] \{/,
    );
    expect(line).not.toMatch(/[\r\n]/);
    const msg = JSON.parse(line.slice(line.indexOf('] {') + 2));
    expect(msg).toMatchObject({ class_uid: 3002, status_id: 2, metadata: { uid: 'event-3' } });
    expect(msg.http_request.user_agent).toBe(event.userAgent);
    // Framed, it survives a byte-exact round trip.
    expect(parseOctetCounted(frameOctetCounting(line))[0]!.toString()).toBe(line);
  });

  it('writes CEF with the hostile user agent escaped, never a second header', () => {
    const cef = toCef({ body: event, leafHash });
    expect(
      cef.startsWith('CEF:0|Custos|Custos CRM|1|auth.login.failed|Authentication: Logon|3|'),
    ).toBe(true);
    expect(cef).not.toMatch(/[\r\n]/);
    const ext = parseCefExtension(cef.slice(cef.indexOf('|3|') + 3));
    expect(ext.get('requestClientApplication')).toBe('Mozilla|5.0 x=y\nCEF:0|forged|é\u0085\u2028');
    expect(ext.get('externalId')).toBe('event-3');
    expect(ext.get('cs1')).toBe('tenant-"]1');
    expect(ext.get('cn1')).toBe('3');
    expect(ext.get('outcome')).toBe('failure');
    expect(ext.has('suid')).toBe(false);
  });
});
