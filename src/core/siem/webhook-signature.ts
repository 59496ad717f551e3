import { Buffer } from 'node:buffer';
import { createHmac, timingSafeEqual } from 'node:crypto';

/** The signature scheme version, the prefix of the signature header. */
export const WEBHOOK_SIGNATURE_VERSION = 'v1';

/**
 * HMAC-SHA256 over `${timestamp}.${body}` with the webhook's secret, as `v1=<hex>`.
 * `timestamp` is Unix seconds, sent in its own header; signing it stops a captured request
 * from being replayed later than the receiver's tolerance.
 *
 * @example
 * signWebhook('secret', 1700000000, '{"events":[]}') // 'v1=...' (64 hex digits)
 */
export function signWebhook(
  secret: string | Uint8Array,
  timestamp: number,
  body: string | Uint8Array,
): string {
  const mac = createHmac('sha256', secret);
  mac.update(`${timestamp}.`, 'utf8');
  mac.update(body);
  return `${WEBHOOK_SIGNATURE_VERSION}=${mac.digest('hex')}`;
}

export type WebhookVerification =
  { ok: true } | { ok: false; reason: 'malformed' | 'stale' | 'mismatch' };

/**
 * What a receiver does: recompute the signature over the raw body, compare in constant time, and
 * refuse timestamps further than `toleranceSeconds` from its own clock.
 */
export function verifyWebhook(input: {
  secret: string | Uint8Array;
  timestamp: string | undefined;
  signature: string | undefined;
  body: string | Uint8Array;
  nowSeconds: number;
  toleranceSeconds?: number;
}): WebhookVerification {
  const { timestamp, signature } = input;
  if (timestamp === undefined || !/^[0-9]{1,12}$/.test(timestamp) || signature === undefined) {
    return { ok: false, reason: 'malformed' };
  }
  const ts = Number(timestamp);
  if (Math.abs(input.nowSeconds - ts) > (input.toleranceSeconds ?? 300)) {
    return { ok: false, reason: 'stale' };
  }
  const expected = Buffer.from(signWebhook(input.secret, ts, input.body), 'utf8');
  const given = Buffer.from(signature, 'utf8');
  if (given.length !== expected.length || !timingSafeEqual(given, expected)) {
    return { ok: false, reason: 'mismatch' };
  }
  return { ok: true };
}
