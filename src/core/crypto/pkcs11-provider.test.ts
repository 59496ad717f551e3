import { randomBytes } from 'node:crypto';
import path from 'node:path';
import pkcs11js from 'pkcs11js';
import { afterAll, beforeAll, expect, it } from 'vitest';
import { CryptoError } from './errors.ts';
import { wrapAd } from './key-wrap.ts';
import { createPkcs11KeyProvider, ensurePkcs11RootKey } from './pkcs11-provider.ts';
import type { Pkcs11KeyProvider } from './pkcs11-provider.ts';
import {
  SOFTHSM_LIBRARY,
  createSoftHsmToken,
  describeWithSoftHsm,
  runModuleInChild,
} from '../../../test/helpers/softhsm.ts';

const LIBRARY = SOFTHSM_LIBRARY;
describeWithSoftHsm('PKCS#11 key provider on a SoftHSM2 token', () => {
  const pin = '87654321';
  const options = { library: LIBRARY, tokenLabel: 'custos-test', pin, keyLabel: 'custos-root' };
  let token: { remove(): void } | undefined;
  let provider: Pkcs11KeyProvider;
  const tenantAd = wrapAd.tenantKey('tenant-1', 1);

  beforeAll(() => {
    token = createSoftHsmToken({ label: options.tokenLabel, pin });
    expect(ensurePkcs11RootKey(options)).toEqual({ created: true });
    provider = createPkcs11KeyProvider(options);
  });
  afterAll(() => {
    provider?.close();
    token?.remove();
  });

  it('creates the root key once and finds it afterwards', () => {
    expect(ensurePkcs11RootKey(options)).toEqual({ created: false });
    expect(provider.id).toBe('pkcs11:custos-test');
  });

  it('keeps the root key non-extractable and sensitive: its value cannot be read', () => {
    expect(provider.keyAttributes()).toEqual({
      extractable: false,
      sensitive: true,
      valueReadable: false,
    });
  });

  it('refuses CKA_VALUE to a separate session of the same user', () => {
    const module = new pkcs11js.PKCS11();
    module.load(LIBRARY);
    // The provider already initialised the library in this process.
    try {
      module.C_Initialize();
    } catch (err) {
      expect((err as pkcs11js.Pkcs11Error).code).toBe(pkcs11js.CKR_CRYPTOKI_ALREADY_INITIALIZED);
    }
    const slot = module
      .C_GetSlotList(true)
      .find((s) => module.C_GetTokenInfo(s).label.trim() === options.tokenLabel)!;
    const session = module.C_OpenSession(slot, pkcs11js.CKF_SERIAL_SESSION);
    module.C_FindObjectsInit(session, [{ type: pkcs11js.CKA_LABEL, value: options.keyLabel }]);
    const [key] = module.C_FindObjects(session, 1);
    module.C_FindObjectsFinal(session);
    expect(key).toBeDefined();
    let code: number | undefined;
    try {
      module.C_GetAttributeValue(session, key!, [{ type: pkcs11js.CKA_VALUE }]);
    } catch (err) {
      code = (err as pkcs11js.Pkcs11Error).code;
    }
    expect(code).toBe(pkcs11js.CKR_ATTRIBUTE_SENSITIVE);
    module.C_CloseSession(session);
  });

  it('wraps and unwraps a data key, with a fresh nonce each time', async () => {
    const dataKey = randomBytes(32);
    const a = await provider.wrap('custos-root', dataKey, tenantAd);
    const b = await provider.wrap('custos-root', dataKey, tenantAd);
    expect(a.length).toBe(1 + 12 + 32 + 16);
    expect(Buffer.from(a).equals(Buffer.from(b))).toBe(false);
    expect(Buffer.from(await provider.unwrap('custos-root', a, tenantAd))).toEqual(dataKey);
    expect(Buffer.from(await provider.unwrap('custos-root', b, tenantAd))).toEqual(dataKey);
  });

  it('refuses tampered wrapped bytes with UNWRAP_FAILED', async () => {
    const wrapped = Buffer.from(await provider.wrap('custos-root', randomBytes(32), tenantAd));
    for (const at of [1, 13, 20, wrapped.length - 1]) {
      const tampered = Buffer.from(wrapped);
      tampered[at]! ^= 0x01;
      await expect(provider.unwrap('custos-root', tampered, tenantAd)).rejects.toMatchObject({
        code: 'UNWRAP_FAILED',
      });
    }
  });

  it('refuses a wrapped key presented with another tenant or version AD', async () => {
    const wrapped = await provider.wrap('custos-root', randomBytes(32), tenantAd);
    for (const ad of [wrapAd.tenantKey('tenant-2', 1), wrapAd.tenantKey('tenant-1', 2)]) {
      await expect(provider.unwrap('custos-root', wrapped, ad)).rejects.toMatchObject({
        code: 'UNWRAP_FAILED',
      });
    }
  });

  it('refuses truncated bytes, an unknown format version and an unknown key label', async () => {
    const wrapped = Buffer.from(await provider.wrap('custos-root', randomBytes(32), tenantAd));
    await expect(
      provider.unwrap('custos-root', wrapped.subarray(0, 20), tenantAd),
    ).rejects.toMatchObject({ code: 'ENVELOPE_MALFORMED' });
    const other = Buffer.from(wrapped);
    other[0] = 2;
    await expect(provider.unwrap('custos-root', other, tenantAd)).rejects.toMatchObject({
      code: 'ENVELOPE_VERSION',
    });
    await expect(provider.unwrap('another-key', wrapped, tenantAd)).rejects.toBeInstanceOf(
      CryptoError,
    );
    await expect(provider.wrap('another-key', randomBytes(32), tenantAd)).rejects.toMatchObject({
      code: 'KEY_NOT_FOUND',
    });
  });

  it('reports an absent key label or token as KEY_NOT_FOUND', () => {
    expect(() => createPkcs11KeyProvider({ ...options, keyLabel: 'nope' })).toThrow(
      expect.objectContaining({ code: 'KEY_NOT_FOUND' }),
    );
    expect(() => createPkcs11KeyProvider({ ...options, tokenLabel: 'nope' })).toThrow(
      expect.objectContaining({ code: 'KEY_NOT_FOUND' }),
    );
  });

  it('refuses a wrong PIN with the token error CKR_PIN_INCORRECT', () => {
    // The provider's session is logged in; a second application-wide login would be accepted,
    // so this runs in a child process with its own library instance.
    const script = `
      import { createPkcs11KeyProvider } from ${JSON.stringify(path.resolve('src/core/crypto/pkcs11-provider.ts'))};
      try { createPkcs11KeyProvider(${JSON.stringify({ ...options, pin: '00000000' })}); console.log('opened'); }
      catch (e) { console.log(String(e.code)); }`;
    const out = runModuleInChild(script);
    expect(out.trim()).toBe(String(pkcs11js.CKR_PIN_INCORRECT));
  });
});
