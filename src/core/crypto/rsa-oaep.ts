import {
  constants,
  createPrivateKey,
  createPublicKey,
  privateDecrypt,
  publicEncrypt,
} from 'node:crypto';
import { KeyObject, type JsonWebKey } from 'node:crypto';
import { toBytes } from './encoding.ts';
import { CryptoError } from './errors.ts';

/** Smallest RSA modulus accepted for export recipients. Custos generates 3072-bit keys. */
export const MIN_RSA_BITS = 2048;

function rsaBits(key: KeyObject): number {
  if (key.asymmetricKeyType !== 'rsa') {
    throw new CryptoError('KEY_INVALID', 'expected an RSA key (rsaEncryption, not RSA-PSS)');
  }
  return key.asymmetricKeyDetails?.modulusLength ?? 0;
}

/** Members of a JWK that only a private key has (RFC 7518 section 6.3.2). */
const PRIVATE_JWK_MEMBERS = ['d', 'p', 'q', 'dp', 'dq', 'qi', 'oth'] as const;

function publicKeyFromJwk(jwk: JsonWebKey): KeyObject {
  if (jwk.kty !== 'RSA') throw new CryptoError('KEY_INVALID', 'expected a JWK with kty "RSA"');
  // As with PEM: a private JWK in a recipient field is a leak to report, not to derive from.
  if (PRIVATE_JWK_MEMBERS.some((m) => m in jwk)) {
    throw new CryptoError('KEY_INVALID', 'expected a public JWK, got private members');
  }
  try {
    return createPublicKey({ key: { kty: 'RSA', n: jwk.n, e: jwk.e }, format: 'jwk' });
  } catch (cause) {
    throw new CryptoError('KEY_INVALID', 'not an RSA public JWK', { cause });
  }
}

/**
 * Parses a recipient's RSA public key (PEM SPKI, PKCS#1 `RSA PUBLIC KEY`, or a public RSA JWK
 * object, RFC 7517) and refuses moduli below `minBits` with `KEY_TOO_WEAK`; anything that is
 * not an RSA public key (including a private key PEM or JWK) is `KEY_INVALID`.
 *
 * @example
 * ```ts
 * const recipient = importRsaPublicKey(pemFromUser);
 * const fromJwk = importRsaPublicKey({ kty: 'RSA', n: '...', e: 'AQAB' });
 * ```
 */
export function importRsaPublicKey(
  key: string | JsonWebKey | KeyObject,
  minBits = MIN_RSA_BITS,
): KeyObject {
  let parsed: KeyObject;
  if (key instanceof KeyObject) {
    parsed = key;
  } else if (typeof key !== 'string') {
    parsed = publicKeyFromJwk(key);
  } else {
    // createPublicKey would quietly derive a public key from a private one; a private key in
    // a recipient field is a mistake (and a leak) to surface, not to paper over.
    if (/-----BEGIN [A-Z ]*PRIVATE KEY-----/.test(key)) {
      throw new CryptoError('KEY_INVALID', 'expected a public key, got a private key');
    }
    try {
      parsed = createPublicKey({ key, format: 'pem' });
    } catch (cause) {
      throw new CryptoError('KEY_INVALID', 'not a PEM public key', { cause });
    }
  }
  if (parsed.type !== 'public') throw new CryptoError('KEY_INVALID', 'expected a public key');
  const bits = rsaBits(parsed);
  if (bits < minBits) {
    throw new CryptoError('KEY_TOO_WEAK', `RSA key of ${bits} bits; at least ${minBits} required`);
  }
  return parsed;
}

/**
 * Parses an RSA private key (PEM PKCS#8 or PKCS#1); `KEY_INVALID` otherwise.
 *
 * @example
 * ```ts
 * const privateKey = importRsaPrivateKey(pemFromFile);
 * ```
 */
export function importRsaPrivateKey(key: string | KeyObject): KeyObject {
  let parsed: KeyObject;
  if (key instanceof KeyObject) {
    parsed = key;
  } else {
    try {
      parsed = createPrivateKey({ key, format: 'pem' });
    } catch (cause) {
      throw new CryptoError('KEY_INVALID', 'not a PEM private key', { cause });
    }
  }
  if (parsed.type !== 'private') throw new CryptoError('KEY_INVALID', 'expected a private key');
  rsaBits(parsed);
  return parsed;
}

/**
 * RSAES-OAEP with SHA-256 and MGF1-SHA-256 (RFC 8017), optional label.
 *
 * @example
 * ```ts
 * const ct = rsaOaepSha256Encrypt(importRsaPublicKey(pem), contentKey);
 * ```
 */
export function rsaOaepSha256Encrypt(
  publicKey: KeyObject,
  plaintext: Uint8Array | string,
  label?: Uint8Array,
): Buffer {
  return publicEncrypt(
    {
      key: importRsaPublicKey(publicKey),
      padding: constants.RSA_PKCS1_OAEP_PADDING,
      oaepHash: 'sha256',
      ...(label === undefined ? {} : { oaepLabel: label }),
    },
    toBytes(plaintext, 'plaintext'),
  );
}

/**
 * Inverse of `rsaOaepSha256Encrypt`. Every padding or size failure is `DECRYPT_FAILED`, with
 * one message, so callers cannot become a padding oracle by reporting which check failed.
 *
 * @example
 * ```ts
 * const contentKey = rsaOaepSha256Decrypt(importRsaPrivateKey(pem), ct);
 * ```
 */
export function rsaOaepSha256Decrypt(
  privateKey: KeyObject,
  ciphertext: Uint8Array,
  label?: Uint8Array,
): Buffer {
  const key = importRsaPrivateKey(privateKey);
  try {
    return privateDecrypt(
      {
        key,
        padding: constants.RSA_PKCS1_OAEP_PADDING,
        oaepHash: 'sha256',
        ...(label === undefined || label.length === 0 ? {} : { oaepLabel: label }),
      },
      ciphertext,
    );
  } catch (cause) {
    throw new CryptoError('DECRYPT_FAILED', 'RSA-OAEP decryption failed', { cause });
  }
}
