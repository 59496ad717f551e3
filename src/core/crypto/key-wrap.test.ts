import { createSecretKey } from 'node:crypto';
import { describe, expect, it } from 'vitest';
import { importAesKey } from './aes-gcm.ts';
import { CryptoError } from './errors.ts';
import type { CryptoErrorCode } from './errors.ts';
import { createLocalKeyProvider, generateDataKey, unwrapKey, wrapAd, wrapKey } from './key-wrap.ts';

async function codeOf(promise: Promise<unknown>): Promise<CryptoErrorCode | 'ok' | 'other'> {
  try {
    await promise;
    return 'ok';
  } catch (err) {
    return err instanceof CryptoError ? err.code : 'other';
  }
}

const rootKey = Buffer.alloc(32, 0x11);
const provider = createLocalKeyProvider({ rootKey, keyId: 'root-1' });
const tenantKey = generateDataKey();
const ad = wrapAd.tenantKey('t1', 1);

describe('LocalKeyProvider', () => {
  it('wraps and unwraps a tenant data key', async () => {
    const wrapped = await provider.wrap('root-1', tenantKey, ad);
    expect(wrapped).toHaveLength(1 + 12 + 32 + 16);
    expect(Buffer.from(await provider.unwrap('root-1', wrapped, ad)).equals(tenantKey)).toBe(true);
    expect(provider.id).toBe('local');
  });

  it('refuses to unwrap a tenant key under another tenant or version label', async () => {
    const wrapped = await provider.wrap('root-1', tenantKey, ad);
    for (const other of [
      wrapAd.tenantKey('t2', 1),
      wrapAd.tenantKey('t1', 2),
      wrapAd.subjectKey('t1', 'v1'),
    ]) {
      expect(await codeOf(provider.unwrap('root-1', wrapped, other))).toBe('UNWRAP_FAILED');
    }
  });

  it('refuses another root key, a tampered byte and a truncated value', async () => {
    const wrapped = await provider.wrap('root-1', tenantKey, ad);
    const other = createLocalKeyProvider({ rootKey: Buffer.alloc(32, 0x22), keyId: 'root-1' });
    expect(await codeOf(other.unwrap('root-1', wrapped, ad))).toBe('UNWRAP_FAILED');
    for (let i = 1; i < wrapped.length; i++) {
      const copy = Buffer.from(wrapped);
      copy[i] = (copy[i] ?? 0) ^ 0x80;
      expect(await codeOf(provider.unwrap('root-1', copy, ad))).toBe('UNWRAP_FAILED');
    }
    const versioned = Buffer.from(wrapped);
    versioned[0] = 2;
    expect(await codeOf(provider.unwrap('root-1', versioned, ad))).toBe('ENVELOPE_VERSION');
    expect(await codeOf(provider.unwrap('root-1', wrapped.subarray(0, 29), ad))).toBe(
      'ENVELOPE_MALFORMED',
    );
  });

  it('reports an unknown root key id as a rejected promise with KEY_NOT_FOUND', async () => {
    expect(await codeOf(provider.wrap('root-2', tenantKey, ad))).toBe('KEY_NOT_FOUND');
    expect(await codeOf(provider.unwrap('root-2', new Uint8Array(61), ad))).toBe('KEY_NOT_FOUND');
  });

  it('needs a 32-byte root key', () => {
    expect(() => createLocalKeyProvider({ rootKey: Buffer.alloc(16) })).toThrow(
      expect.objectContaining({ code: 'KEY_INVALID' }),
    );
  });
});

describe('wrapKey / unwrapKey (subject keys under a tenant key)', () => {
  const tenant = importAesKey(tenantKey);

  it('round-trips and binds the subject id and wrapping key id', () => {
    const subjectKey = generateDataKey();
    const label = wrapAd.subjectKey('t1', 'contact-1');
    const wrapped = wrapKey(tenant, 'tenant:t1@1', subjectKey, label);
    expect(unwrapKey(tenant, 'tenant:t1@1', wrapped, label).equals(subjectKey)).toBe(true);
    const fails = (fn: () => unknown): string | undefined => {
      try {
        fn();
      } catch (err) {
        return (err as CryptoError).code;
      }
      return undefined;
    };
    expect(fails(() => unwrapKey(tenant, 'tenant:t1@2', wrapped, label))).toBe('UNWRAP_FAILED');
    expect(
      fails(() => unwrapKey(tenant, 'tenant:t1@1', wrapped, wrapAd.subjectKey('t1', 'contact-2'))),
    ).toBe('UNWRAP_FAILED');
    const otherTenant = createSecretKey(Buffer.alloc(32, 3));
    expect(fails(() => unwrapKey(otherTenant, 'tenant:t1@1', wrapped, label))).toBe(
      'UNWRAP_FAILED',
    );
  });

  it('encodes labels unambiguously', () => {
    expect(wrapAd.subjectKey('t1|x', 'y').equals(wrapAd.subjectKey('t1', 'x|y'))).toBe(false);
    expect(() => wrapKey(tenant, 'k', generateDataKey(), new Uint8Array(0))).toThrow(TypeError);
  });
});
