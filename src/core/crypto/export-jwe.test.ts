import { createPrivateKey, createPublicKey, generateKeyPairSync } from 'node:crypto';
import { calculateJwkThumbprint, compactDecrypt, decodeProtectedHeader } from 'jose';
import { describe, expect, it } from 'vitest';
import { CryptoError } from './errors.ts';
import type { CryptoErrorCode } from './errors.ts';
import { decryptExport, encryptExport, recipientThumbprint } from './export-jwe.ts';

function rsaPair(bits: number): { publicPem: string; privatePem: string } {
  const { publicKey, privateKey } = generateKeyPairSync('rsa', { modulusLength: bits });
  return {
    publicPem: publicKey.export({ type: 'spki', format: 'pem' }).toString(),
    privatePem: privateKey.export({ type: 'pkcs8', format: 'pem' }).toString(),
  };
}

async function codeOf(promise: Promise<unknown>): Promise<CryptoErrorCode | 'ok' | 'other'> {
  try {
    await promise;
    return 'ok';
  } catch (err) {
    return err instanceof CryptoError ? err.code : 'other';
  }
}

describe('encryptExport', () => {
  const recipient = rsaPair(3072);

  it('produces a JWE that jose decrypts with the private key, RSA-OAEP-256 / A256GCM', async () => {
    const payload = JSON.stringify({ contact: { email: 'alice@example.com', name: 'Zoë' } });
    const jwe = await encryptExport(recipient.publicPem, payload, { kid: 'dpo-2026' });
    expect(jwe.split('.')).toHaveLength(5);
    expect(decodeProtectedHeader(jwe)).toEqual({
      alg: 'RSA-OAEP-256',
      enc: 'A256GCM',
      kid: 'dpo-2026',
    });
    const { plaintext, protectedHeader } = await compactDecrypt(
      jwe,
      (await import('node:crypto')).createPrivateKey(recipient.privatePem),
    );
    expect(new TextDecoder().decode(plaintext)).toBe(payload);
    expect(protectedHeader.alg).toBe('RSA-OAEP-256');
    expect(protectedHeader.enc).toBe('A256GCM');
  });

  it('round-trips bytes through decryptExport', async () => {
    const bytes = Uint8Array.from({ length: 1000 }, (_, i) => i % 256);
    const { payload } = await decryptExport(
      recipient.privatePem,
      await encryptExport(recipient.publicPem, bytes),
    );
    expect([...payload]).toEqual([...bytes]);
  });

  it('accepts a 2048-bit key and refuses a 1024-bit key with KEY_TOO_WEAK', async () => {
    const ok = rsaPair(2048);
    const jwe = await encryptExport(ok.publicPem, 'x');
    expect(new TextDecoder().decode((await decryptExport(ok.privatePem, jwe)).payload)).toBe('x');
    expect(await codeOf(encryptExport(rsaPair(1024).publicPem, 'x'))).toBe('KEY_TOO_WEAK');
  });

  it('refuses keys that are not RSA public keys with KEY_INVALID', async () => {
    const ec = generateKeyPairSync('ec', { namedCurve: 'P-256' })
      .publicKey.export({ type: 'spki', format: 'pem' })
      .toString();
    expect(await codeOf(encryptExport(ec, 'x'))).toBe('KEY_INVALID');
    expect(await codeOf(encryptExport('not a pem', 'x'))).toBe('KEY_INVALID');
    expect(await codeOf(encryptExport(recipient.privatePem, 'x'))).toBe('KEY_INVALID');
  });
});

describe('JWK recipients and thumbprints', () => {
  const recipient = rsaPair(2048);

  it('accepts a public RSA JWK and names it by its RFC 7638 thumbprint, as for its PEM', async () => {
    const jwk = createPublicKey(recipient.publicPem).export({ format: 'jwk' });
    const jwe = await encryptExport({ ...jwk, kid: 'ignored', use: 'enc' }, 'via jwk');
    const { payload } = await decryptExport(recipient.privatePem, jwe);
    expect(new TextDecoder().decode(payload)).toBe('via jwk');
    const thumbprint = await recipientThumbprint(jwk);
    expect(thumbprint).toBe(await recipientThumbprint(recipient.publicPem));
    expect(thumbprint).toBe(
      await calculateJwkThumbprint({ kty: 'RSA', e: jwk.e!, n: jwk.n! }, 'sha256'),
    );
    expect(thumbprint).not.toBe(await recipientThumbprint(rsaPair(2048).publicPem));
  });

  it('refuses private, non-RSA, malformed and weak JWKs', async () => {
    const privateJwk = createPrivateKey(recipient.privatePem).export({ format: 'jwk' });
    expect(await codeOf(encryptExport(privateJwk, 'x'))).toBe('KEY_INVALID');
    const onlyD = { kty: 'RSA', n: privateJwk.n, e: privateJwk.e, d: privateJwk.d };
    expect(await codeOf(encryptExport(onlyD, 'x'))).toBe('KEY_INVALID');
    const ec = generateKeyPairSync('ec', { namedCurve: 'P-256' }).publicKey.export({
      format: 'jwk',
    });
    expect(await codeOf(encryptExport(ec, 'x'))).toBe('KEY_INVALID');
    expect(await codeOf(encryptExport({ kty: 'RSA', e: 'AQAB' }, 'x'))).toBe('KEY_INVALID');
    const weak = generateKeyPairSync('rsa', { modulusLength: 1024 }).publicKey.export({
      format: 'jwk',
    });
    expect(await codeOf(encryptExport(weak, 'x'))).toBe('KEY_TOO_WEAK');
    expect(await codeOf(recipientThumbprint(weak))).toBe('KEY_TOO_WEAK');
  });
});

describe('decryptExport', () => {
  const recipient = rsaPair(2048);

  it('fails with DECRYPT_FAILED under another private key or after tampering', async () => {
    const jwe = await encryptExport(recipient.publicPem, 'secret');
    expect(await codeOf(decryptExport(rsaPair(2048).privatePem, jwe))).toBe('DECRYPT_FAILED');
    const parts = jwe.split('.');
    const ct = Buffer.from(parts[3]!, 'base64url');
    ct[0] = ct[0]! ^ 1;
    parts[3] = ct.toString('base64url');
    expect(await codeOf(decryptExport(recipient.privatePem, parts.join('.')))).toBe(
      'DECRYPT_FAILED',
    );
  });

  it('refuses malformed packages and other algorithms with JWE_INVALID', async () => {
    expect(await codeOf(decryptExport(recipient.privatePem, 'a.b.c'))).toBe('JWE_INVALID');
    const jwe = await encryptExport(recipient.publicPem, 'x');
    const header = Buffer.from(JSON.stringify({ alg: 'RSA-OAEP', enc: 'A256GCM' })).toString(
      'base64url',
    );
    const swapped = [header, ...jwe.split('.').slice(1)].join('.');
    expect(await codeOf(decryptExport(recipient.privatePem, swapped))).toBe('JWE_INVALID');
  });
});
