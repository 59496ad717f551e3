import fs from 'node:fs';
import path from 'node:path';
import { randomBytes, type KeyObject } from 'node:crypto';
import {
  exportPrivateKeyPem,
  exportPublicKeyPem,
  generateCheckpointKeyPair,
  importPrivateKey,
  keyIdFor,
} from '../../core/audit/index.ts';
import { createPublicKey } from 'node:crypto';
import { AppError } from '../../errors.ts';

export const SIGNING_KEY_FILE = 'audit-signing.key';

export interface SigningKey {
  readonly privateKey: KeyObject;
  readonly publicKey: KeyObject;
  readonly publicKeyPem: string;
  readonly keyId: string;
}

/**
 * The Ed25519 checkpoint key: PKCS#8 PEM in `<dataDir>/audit-signing.key` (mode 0600), created on
 * first use, kept apart from the database so that whoever can write the database cannot sign.
 * Created under a temporary name and linked into place, so two processes starting together end
 * up with the same key and never read a half-written file.
 */
export function loadOrCreateSigningKey(dataDir: string): SigningKey {
  const file = path.join(dataDir, SIGNING_KEY_FILE);
  if (!fs.existsSync(file)) {
    fs.mkdirSync(dataDir, { recursive: true, mode: 0o700 });
    const tmp = `${file}.${process.pid}.${randomBytes(6).toString('hex')}`;
    fs.writeFileSync(tmp, exportPrivateKeyPem(generateCheckpointKeyPair().privateKey), {
      mode: 0o600,
      flag: 'wx',
    });
    try {
      fs.linkSync(tmp, file);
    } catch (error) {
      if ((error as NodeJS.ErrnoException).code !== 'EEXIST') throw error;
    } finally {
      fs.rmSync(tmp, { force: true });
    }
  }
  const mode = fs.statSync(file).mode & 0o777;
  if ((mode & 0o077) !== 0) {
    throw new AppError(
      'unavailable',
      'audit.signing_key_insecure',
      'audit key readable by others',
      {
        detail: `${SIGNING_KEY_FILE} must be readable by its owner only (chmod 600).`,
      },
    );
  }
  let privateKey: KeyObject;
  try {
    privateKey = importPrivateKey(fs.readFileSync(file, 'utf8'));
  } catch (error) {
    throw new AppError('unavailable', 'audit.signing_key_invalid', 'audit key unreadable', {
      detail: `${SIGNING_KEY_FILE} is not an Ed25519 PKCS#8 private key.`,
      cause: error,
    });
  }
  const publicKey = createPublicKey(privateKey);
  return {
    privateKey,
    publicKey,
    publicKeyPem: exportPublicKeyPem(publicKey),
    keyId: keyIdFor(publicKey),
  };
}
