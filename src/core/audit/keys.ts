import { Buffer } from 'node:buffer';
import {
  createHash,
  createPrivateKey,
  createPublicKey,
  generateKeyPairSync,
  type KeyObject,
} from 'node:crypto';
import { AuditIntegrityError } from './errors.ts';

/** Throws `KEY_INVALID` unless `key` is an Ed25519 `KeyObject` of the given type. */
export function assertKey(key: unknown, type: 'public' | 'private'): asserts key is KeyObject {
  const k = key as KeyObject | null;
  if (typeof k !== 'object' || k === null || k.type !== type || k.asymmetricKeyType !== 'ed25519') {
    throw new AuditIntegrityError('KEY_INVALID', `expected an Ed25519 ${type} key`);
  }
}

/**
 * Key id of an Ed25519 public key: lower-case hex of SHA-256 over its SPKI DER encoding, full
 * 32 bytes (64 hex characters). It only selects the key; the signature is always verified.
 *
 * @example
 * ```ts
 * const { publicKey } = generateCheckpointKeyPair();
 * keyIdFor(publicKey); // '3f1c...' (64 hex characters)
 * ```
 */
export function keyIdFor(publicKey: KeyObject): string {
  assertKey(publicKey, 'public');
  return createHash('sha256').update(exportPublicKeySpki(publicKey)).digest('hex');
}

/**
 * A fresh Ed25519 key pair for signing checkpoints.
 *
 * @example
 * ```ts
 * const { privateKey, publicKey } = generateCheckpointKeyPair();
 * ```
 */
export function generateCheckpointKeyPair(): { privateKey: KeyObject; publicKey: KeyObject } {
  return generateKeyPairSync('ed25519');
}

/**
 * SPKI DER bytes of an Ed25519 public key.
 *
 * @example
 * ```ts
 * const der = exportPublicKeySpki(publicKey); // 44 bytes
 * ```
 */
export function exportPublicKeySpki(publicKey: KeyObject): Uint8Array {
  assertKey(publicKey, 'public');
  return publicKey.export({ type: 'spki', format: 'der' });
}

/**
 * PEM (`-----BEGIN PUBLIC KEY-----`) of an Ed25519 public key, for publishing to verifiers.
 *
 * @example
 * ```ts
 * writeFileSync('audit-key.pem', exportPublicKeyPem(publicKey));
 * ```
 */
export function exportPublicKeyPem(publicKey: KeyObject): string {
  assertKey(publicKey, 'public');
  return publicKey.export({ type: 'spki', format: 'pem' }).toString();
}

/**
 * PKCS#8 PEM of an Ed25519 private key, for a key provider to store (it is a secret).
 *
 * @example
 * ```ts
 * const pem = exportPrivateKeyPem(privateKey);
 * ```
 */
export function exportPrivateKeyPem(privateKey: KeyObject): string {
  assertKey(privateKey, 'private');
  return privateKey.export({ type: 'pkcs8', format: 'pem' }).toString();
}

/**
 * Imports an Ed25519 public key from PEM or SPKI DER; throws `KEY_INVALID` for anything else.
 *
 * @example
 * ```ts
 * const publicKey = importPublicKey(readFileSync('audit-key.pem', 'utf8'));
 * ```
 */
export function importPublicKey(key: string | Uint8Array): KeyObject {
  let imported: KeyObject;
  try {
    imported =
      typeof key === 'string'
        ? createPublicKey(key)
        : createPublicKey({ key: Buffer.from(key), format: 'der', type: 'spki' });
  } catch (error) {
    throw new AuditIntegrityError('KEY_INVALID', 'public key cannot be parsed', { cause: error });
  }
  assertKey(imported, 'public');
  return imported;
}

/**
 * Imports an Ed25519 private key from PKCS#8 PEM or DER; throws `KEY_INVALID` otherwise.
 *
 * @example
 * ```ts
 * const privateKey = importPrivateKey(pemFromKeyProvider);
 * ```
 */
export function importPrivateKey(key: string | Uint8Array): KeyObject {
  let imported: KeyObject;
  try {
    imported =
      typeof key === 'string'
        ? createPrivateKey(key)
        : createPrivateKey({ key: Buffer.from(key), format: 'der', type: 'pkcs8' });
  } catch (error) {
    throw new AuditIntegrityError('KEY_INVALID', 'private key cannot be parsed', { cause: error });
  }
  assertKey(imported, 'private');
  return imported;
}

/**
 * Indexes trusted public keys by key id, so a verifier looking at many checkpoints hashes each
 * key once.
 *
 * @example
 * ```ts
 * const keyring = checkpointKeyring([currentKey, retiredKey]);
 * verifyCheckpoint(cp, keyring);
 * ```
 */
export function checkpointKeyring(
  publicKeys: readonly KeyObject[],
): ReadonlyMap<string, KeyObject> {
  return new Map(publicKeys.map((k) => [keyIdFor(k), k]));
}
