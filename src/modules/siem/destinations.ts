import fs from 'node:fs';
import os from 'node:os';
import {
  frameOctetCounting,
  parseSyslogUrl,
  sendSyslogBatch,
  signWebhook,
} from '../../core/siem/index.ts';
import type { Clock } from '../../clock.ts';
import { asciiJson, toSyslog, type SiemEvent, type SiemFormat } from './format.ts';
import { toOcsf } from './ocsf.ts';
import type { SiemDestination } from './worker.ts';

export interface SyslogDestinationOptions {
  /** `tcp://host:port` or `tls://host:port`. */
  url: string;
  format: SiemFormat;
  /** PEM text of the CA (TLS). */
  ca?: string | undefined;
  cert?: string | undefined;
  key?: string | undefined;
  hostname?: string;
  timeoutMs?: number;
  /** TLS: see `SyslogTarget.settleMs` (default 100 ms). */
  settleMs?: number;
}

/** RFC 5424 over TCP or TLS with octet counting: one connection per batch (see sendSyslogBatch). */
export function createSyslogDestination(options: SyslogDestinationOptions): SiemDestination {
  const target = parseSyslogUrl(options.url);
  if (target.transport === 'tcp' && (options.ca || options.cert)) {
    throw new TypeError('a CA or client certificate needs a tls:// syslog URL');
  }
  const hostname = options.hostname ?? os.hostname();
  return {
    id: 'syslog',
    async deliver(events) {
      const frames = events.map((e) =>
        frameOctetCounting(toSyslog(e, { format: options.format, hostname })),
      );
      await sendSyslogBatch(
        {
          ...target,
          ca: options.ca,
          cert: options.cert,
          key: options.key,
          timeoutMs: options.timeoutMs,
          settleMs: options.settleMs,
        },
        frames,
      );
    },
  };
}

export interface WebhookDestinationOptions {
  url: string;
  secret: string;
  clock: Clock;
  timeoutMs?: number;
}

/** Headers of a webhook delivery (documented in README, "SIEM streaming"). */
export const WEBHOOK_HEADERS = {
  timestamp: 'x-custos-timestamp',
  signature: 'x-custos-signature',
} as const;

export class WebhookDeliveryError extends Error {
  override readonly name = 'WebhookDeliveryError';
}

/**
 * A batch of OCSF events POSTed as `{"events":[...]}`, signed with HMAC-SHA256 over
 * `timestamp.body`. Any answer but 2xx (or no answer) is a failure and the batch is resent.
 */
export function createWebhookDestination(options: WebhookDestinationOptions): SiemDestination {
  const url = new URL(options.url);
  // Only http(s): no file:, data: or other schemes a fetch implementation might follow.
  if (url.protocol !== 'https:' && url.protocol !== 'http:') {
    throw new TypeError('webhook URL must be http:// or https://');
  }
  return {
    id: 'webhook',
    async deliver(events: readonly SiemEvent[]) {
      const body = asciiJson({ events: events.map((e) => toOcsf(e.body, e.leafHash)) });
      const timestamp = Math.floor(options.clock.now().getTime() / 1000);
      let response: Response;
      try {
        response = await fetch(url, {
          method: 'POST',
          headers: {
            'content-type': 'application/json',
            'user-agent': 'Custos-SIEM/1',
            [WEBHOOK_HEADERS.timestamp]: String(timestamp),
            [WEBHOOK_HEADERS.signature]: signWebhook(options.secret, timestamp, body),
          },
          body,
          redirect: 'error',
          signal: AbortSignal.timeout(options.timeoutMs ?? 10_000),
        });
      } catch (error) {
        throw new WebhookDeliveryError('webhook request failed', { cause: error });
      }
      // Drain the body so the connection is reused or closed.
      await response.arrayBuffer().catch(() => undefined);
      if (response.status < 200 || response.status > 299) {
        throw new WebhookDeliveryError(`webhook answered ${response.status}`);
      }
    },
  };
}

/** The operator's destinations from configuration (CA and client files read once, here). */
export function siemDestinationsFromConfig(
  config: {
    siemSyslogUrl: string | undefined;
    siemFormat: SiemFormat;
    siemCaFile: string | undefined;
    siemCertFile: string | undefined;
    siemKeyFile: string | undefined;
    siemWebhookUrl: string | undefined;
    siemWebhookSecret: string | undefined;
  },
  clock: Clock,
): SiemDestination[] {
  const read = (file: string | undefined) => (file ? fs.readFileSync(file, 'utf8') : undefined);
  const out: SiemDestination[] = [];
  if (config.siemSyslogUrl) {
    out.push(
      createSyslogDestination({
        url: config.siemSyslogUrl,
        format: config.siemFormat,
        ca: read(config.siemCaFile),
        cert: read(config.siemCertFile),
        key: read(config.siemKeyFile),
      }),
    );
  }
  if (config.siemWebhookUrl && config.siemWebhookSecret) {
    out.push(
      createWebhookDestination({
        url: config.siemWebhookUrl,
        secret: config.siemWebhookSecret,
        clock,
      }),
    );
  }
  return out;
}
