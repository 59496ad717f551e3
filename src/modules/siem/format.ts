import { formatCef, formatSyslog, type SyslogSeverity } from '../../core/siem/index.ts';
import type { AuditEventBody } from '../audit/event.ts';
import { classify, toOcsf, type OcsfSeverity } from './ocsf.ts';

export type SiemFormat = 'json' | 'cef';

/** An audit event as the outbox reads it: the leaf body and its hash. */
export interface SiemEvent {
  body: AuditEventBody;
  leafHash: string;
}

/**
 * SD-ID of Custos' structured data. 32473 is the private enterprise number reserved for examples
 * (RFC 5612); receivers match on the name before the `@`.
 */
export const SD_ID = 'custos@32473';
/** 13: "log audit" (RFC 5424 table 1). */
export const SYSLOG_FACILITY = 13;

const SYSLOG_SEVERITY: Record<OcsfSeverity, SyslogSeverity> = { 1: 6, 2: 5, 3: 4, 4: 3, 5: 2 };
const CEF_SEVERITY: Record<OcsfSeverity, number> = { 1: 1, 2: 3, 3: 5, 4: 7, 5: 9 };

/**
 * JSON with every non-ASCII character written as `\uXXXX`: still the same JSON value, but a
 * syslog relay can no longer mangle it (no raw control, C1 or multi-byte characters in transit).
 */
export function asciiJson(value: unknown): string {
  return JSON.stringify(value).replace(
    /[\u007f-\uffff]/g,
    (c) => `\\u${c.charCodeAt(0).toString(16).padStart(4, '0')}`,
  );
}

/** The CEF line of an event (the MSG of its syslog message in `cef` format). */
export function toCef(e: SiemEvent): string {
  const b = e.body;
  const c = classify(b);
  return formatCef({
    vendor: 'Custos',
    product: 'Custos CRM',
    version: '1',
    signatureId: b.type,
    name: `${c.class.className}: ${c.activityName}`,
    severity: CEF_SEVERITY[c.severityId],
    extension: [
      ['rt', Date.parse(b.occurredAt)],
      ['externalId', b.id],
      ['act', b.type],
      ['cat', c.class.className],
      ['outcome', b.outcome],
      ['reason', b.reason],
      ['src', b.ip],
      ['requestClientApplication', b.userAgent],
      ['suid', b.actor.id],
      ['cs1Label', 'tenantId'],
      ['cs1', b.tenantId],
      ['cn1Label', 'leafIndex'],
      ['cn1', b.leafIndex],
      ['cs2Label', 'leafHash'],
      ['cs2', e.leafHash],
      ['cs3Label', 'actorKind'],
      ['cs3', b.actor.kind],
      ['cs4Label', 'targetType'],
      ['cs4', b.target?.type],
      ['cs5Label', 'targetId'],
      ['cs5', b.target?.id],
      ['cs6Label', 'requestId'],
      ['cs6', b.requestId],
      ['flexString1Label', 'fields'],
      ['flexString1', b.fields.length > 0 ? b.fields.join(',') : null],
    ],
  });
}

/** One RFC 5424 message (unframed) for an event: structured data with the ids, MSG as JSON or CEF. */
export function toSyslog(
  e: SiemEvent,
  options: { format: SiemFormat; hostname: string; appName?: string },
): string {
  const b = e.body;
  const c = classify(b);
  return formatSyslog({
    facility: SYSLOG_FACILITY,
    severity: SYSLOG_SEVERITY[c.severityId],
    timestamp: new Date(b.occurredAt),
    hostname: options.hostname,
    appName: options.appName ?? 'custos',
    procId: null,
    msgId: b.type,
    structuredData: [
      {
        id: SD_ID,
        params: [
          ['tenant', b.tenantId],
          ['eventId', b.id],
          ['leafIndex', String(b.leafIndex)],
          ['leafHash', e.leafHash],
        ],
      },
    ],
    msg: options.format === 'json' ? asciiJson(toOcsf(b, e.leafHash)) : toCef(e),
  });
}
