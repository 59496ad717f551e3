import { describe, expect, it } from 'vitest';
import { signWebhook, verifyWebhook } from './webhook-signature.ts';

const secret = 'whsec-test-secret-of-32-characters!!';
const body = '{"events":[]}';

describe('webhook signatures', () => {
  it('is HMAC-SHA256 over "timestamp.body" (checked against openssl dgst -hmac)', () => {
    // printf '%s' '1700000000.{"events":[]}' | openssl dgst -sha256 -hmac "$secret"
    expect(signWebhook(secret, 1_700_000_000, body)).toBe(
      'v1=fafaa895bb63d40dd02a42877f065d4651f189f7d2bf6c56b25e0047f8d61c83',
    );
  });

  it('verifies a good signature within the tolerance', () => {
    const signature = signWebhook(secret, 1_700_000_000, body);
    expect(
      verifyWebhook({
        secret,
        timestamp: '1700000000',
        signature,
        body,
        nowSeconds: 1_700_000_100,
      }),
    ).toEqual({ ok: true });
  });

  it('refuses a changed body, timestamp, secret or signature', () => {
    const signature = signWebhook(secret, 1_700_000_000, body);
    const now = 1_700_000_000;
    const check = (over: Partial<Parameters<typeof verifyWebhook>[0]>) =>
      verifyWebhook({ secret, timestamp: '1700000000', signature, body, nowSeconds: now, ...over });
    expect(check({ body: '{"events":[1]}' })).toEqual({ ok: false, reason: 'mismatch' });
    expect(check({ timestamp: '1700000001' })).toEqual({ ok: false, reason: 'mismatch' });
    expect(check({ secret: `${secret}x` })).toEqual({ ok: false, reason: 'mismatch' });
    expect(check({ signature: signature.slice(0, -1) })).toEqual({ ok: false, reason: 'mismatch' });
    expect(check({ signature: undefined })).toEqual({ ok: false, reason: 'malformed' });
    expect(check({ timestamp: '17e8' })).toEqual({ ok: false, reason: 'malformed' });
  });

  it('refuses a replay outside the tolerance', () => {
    const signature = signWebhook(secret, 1_700_000_000, body);
    expect(
      verifyWebhook({
        secret,
        timestamp: '1700000000',
        signature,
        body,
        nowSeconds: 1_700_000_301,
      }),
    ).toEqual({ ok: false, reason: 'stale' });
  });
});
