import type { JsonWebKey, KeyObject } from 'node:crypto';
import { CompactEncrypt, calculateJwkThumbprint, compactDecrypt, errors, exportJWK } from 'jose';
import type { CompactJWEHeaderParameters } from 'jose';
import { toBytes } from './encoding.ts';
import { CryptoError } from './errors.ts';
import { MIN_RSA_BITS, importRsaPrivateKey, importRsaPublicKey } from './rsa-oaep.ts';

/**
 * Export packages for a recipient: JWE compact serialisation (RFC 7516) with key management
 * `RSA-OAEP-256` (RSAES-OAEP, SHA-256, MGF1-SHA-256) and content encryption `A256GCM`, built
 * by `jose`. The recipient opens it with any JOSE library and their private key.
 */

export const EXPORT_ALG = 'RSA-OAEP-256';
export const EXPORT_ENC = 'A256GCM';

/**
 * Encrypts an export payload to a recipient's RSA public key (PEM). Keys below 2048 bits are
 * refused with `KEY_TOO_WEAK` (3072 bits is what Custos recommends), non-RSA keys with
 * `KEY_INVALID`.
 *
 * @example
 * ```ts
 * const jwe = await encryptExport(recipientPem, JSON.stringify(subjectData), { kid: 'dpo-2026' });
 * ```
 */
export async function encryptExport(
  recipientPublicKey: string | JsonWebKey | KeyObject,
  payload: Uint8Array | string,
  options: { kid?: string; contentType?: string; minBits?: number } = {},
): Promise<string> {
  const key = importRsaPublicKey(recipientPublicKey, Math.max(MIN_RSA_BITS, options.minBits ?? 0));
  const header: CompactJWEHeaderParameters = { alg: EXPORT_ALG, enc: EXPORT_ENC };
  if (options.kid !== undefined) header.kid = options.kid;
  if (options.contentType !== undefined) header.cty = options.contentType;
  return new CompactEncrypt(toBytes(payload, 'payload')).setProtectedHeader(header).encrypt(key);
}

/**
 * The RFC 7638 JWK SHA-256 thumbprint (base64url) of a recipient's RSA public key: a stable
 * name for the key whatever its encoding (PEM or JWK), used as the JWE `kid` and in the audit
 * log so that an export can be traced to the key it was sealed for. Validates like
 * `encryptExport` (`KEY_INVALID`, `KEY_TOO_WEAK`).
 *
 * @example
 * ```ts
 * const kid = await recipientThumbprint(recipientPem); // e.g. "NzbLsXh8uDCcd-6MNwXF4W_7noWXFZAfHkxZsRGC9Xs"
 * ```
 */
export async function recipientThumbprint(
  recipientPublicKey: string | JsonWebKey | KeyObject,
  options: { minBits?: number } = {},
): Promise<string> {
  const key = importRsaPublicKey(recipientPublicKey, Math.max(MIN_RSA_BITS, options.minBits ?? 0));
  return calculateJwkThumbprint(await exportJWK(key), 'sha256');
}

/**
 * Opens an export package with the recipient's private key (PEM), accepting only
 * `RSA-OAEP-256` / `A256GCM`. Throws `JWE_INVALID` for anything that is not such a JWE and
 * `DECRYPT_FAILED` when it does not decrypt or authenticate under this key.
 *
 * @example
 * ```ts
 * const { payload } = await decryptExport(privatePem, jwe);
 * ```
 */
export async function decryptExport(
  privateKey: string | KeyObject,
  jwe: string,
): Promise<{ payload: Uint8Array; protectedHeader: CompactJWEHeaderParameters }> {
  const key = importRsaPrivateKey(privateKey);
  try {
    const { plaintext, protectedHeader } = await compactDecrypt(jwe, key, {
      keyManagementAlgorithms: [EXPORT_ALG],
      contentEncryptionAlgorithms: [EXPORT_ENC],
    });
    return { payload: plaintext, protectedHeader };
  } catch (cause) {
    if (cause instanceof errors.JWEDecryptionFailed) {
      throw new CryptoError('DECRYPT_FAILED', 'export package did not decrypt', { cause });
    }
    if (cause instanceof errors.JOSEError) {
      throw new CryptoError('JWE_INVALID', 'not an RSA-OAEP-256/A256GCM JWE', { cause });
    }
    throw cause;
  }
}
