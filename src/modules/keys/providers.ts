import { createLocalKeyProvider } from '../../core/crypto/index.ts';
import type { Pkcs11Options } from '../../core/crypto/pkcs11-provider.ts';
import type { KeyConfig } from '../../config.ts';
import { AppError } from '../../errors.ts';
import { readOrCreateRootKeyFile } from './file-key.ts';
import type { KeyStore } from './store.ts';
import type { RootKey } from './tenant-keys.ts';

/**
 * Root key providers, chosen by CUSTOS_KEY_PROVIDER:
 * - `file` (default): CUSTOS_KEY_FILE (default CUSTOS_DATA_DIR/root.key), 0600, created once;
 * - `env`: CUSTOS_ROOT_KEY, base64 of 32 bytes;
 * - `pkcs11`: a non-extractable AES-256 key in a token (`custos keys init-hsm` creates it).
 * `file` and `env` are the same local AES-GCM provider (id `local`), so a key can move from a
 * file to the environment (or back) without re-wrapping anything.
 */

export type KeyProviderConfig = Omit<KeyConfig, 'keysDatabaseUrl' | 'keyCacheSize'>;

/** An opened root key, with what start-up messages may say about it (never the key). */
export interface OpenedRootKey extends RootKey {
  /** For messages: `file /path/root.key`, `CUSTOS_ROOT_KEY`, `PKCS#11 token "x" key "y"`. */
  describe: string;
  /** Whether this start created a new root key file. */
  created: boolean;
  close(): void;
}

export const LOCAL_ROOT_KEY_ID = 'root';

/** Does the key store hold any wrapped tenant key (so a root key must already exist)? */
export async function storeHasTenantKeys(store: KeyStore): Promise<boolean> {
  const row = await store.db.selectFrom('tenant_keys').select('tenant_id').limit(1).execute();
  return row.length > 0;
}

function pkcs11Options(config: KeyProviderConfig): Pkcs11Options {
  if (config.pkcs11TokenLabel === undefined || config.pkcs11Pin === undefined) {
    throw new AppError(
      'unavailable',
      'keys.provider_unavailable',
      'CUSTOS_PKCS11_TOKEN_LABEL and CUSTOS_PKCS11_PIN must be set for the pkcs11 provider',
    );
  }
  return {
    library: config.pkcs11Library,
    tokenLabel: config.pkcs11TokenLabel,
    pin: config.pkcs11Pin,
    keyLabel: config.pkcs11KeyLabel,
  };
}

/** Loaded on demand: the native PKCS#11 binding is only needed by the pkcs11 provider. */
const pkcs11 = () => import('../../core/crypto/pkcs11-provider.ts');

const providerError = (what: string, err: unknown): AppError => {
  // pkcs11js messages name the failing function and CKR code, never the PIN.
  const why = err instanceof Error ? err.message : String(err);
  return new AppError('unavailable', 'keys.provider_unavailable', `${what}: ${why}`, {
    cause: err,
  });
};

/**
 * Opens the configured root key. Refuses (AppError, kind `unavailable`) a key file that is
 * missing while the store holds wrapped keys, readable by others, or of the wrong size; a token
 * that cannot be opened; and a token key that is extractable or not sensitive.
 *
 * @example
 * ```ts
 * const root = await openRootKey(config, store);
 * ```
 */
export async function openRootKey(
  config: KeyProviderConfig,
  store: KeyStore,
): Promise<OpenedRootKey> {
  switch (config.keyProvider) {
    case 'file': {
      const mayCreate = !(await storeHasTenantKeys(store));
      const { key, created } = readOrCreateRootKeyFile(config.keyFile, { mayCreate });
      try {
        const provider = createLocalKeyProvider({ rootKey: key, keyId: LOCAL_ROOT_KEY_ID });
        const describe = `root key file ${config.keyFile}`;
        return { provider, keyId: LOCAL_ROOT_KEY_ID, describe, created, close: () => undefined };
      } finally {
        key.fill(0);
      }
    }
    case 'env': {
      const key = Buffer.from(config.rootKey ?? '', 'base64');
      if (key.length !== 32) {
        throw new AppError(
          'unavailable',
          'keys.root_key_invalid',
          'CUSTOS_ROOT_KEY must be the base64 encoding of 32 bytes',
        );
      }
      try {
        const provider = createLocalKeyProvider({ rootKey: key, keyId: LOCAL_ROOT_KEY_ID });
        const describe = 'the root key in CUSTOS_ROOT_KEY';
        return { provider, keyId: LOCAL_ROOT_KEY_ID, describe, created: false, close: () => {} };
      } finally {
        key.fill(0);
      }
    }
    case 'pkcs11': {
      const options = pkcs11Options(config);
      const describe = `PKCS#11 token "${options.tokenLabel}" key "${options.keyLabel}"`;
      let provider;
      try {
        provider = (await pkcs11()).createPkcs11KeyProvider(options);
      } catch (err) {
        throw providerError(`cannot open ${describe} (run "custos keys init-hsm" once)`, err);
      }
      const attributes = provider.keyAttributes();
      if (attributes.extractable || !attributes.sensitive || attributes.valueReadable) {
        provider.close();
        throw new AppError(
          'unavailable',
          'keys.root_key_insecure',
          `${describe} can leave the token (CKA_EXTRACTABLE must be false, CKA_SENSITIVE true); create a new key with "custos keys init-hsm" under another label`,
        );
      }
      return {
        provider,
        keyId: options.keyLabel,
        describe,
        created: false,
        close: () => provider.close(),
      };
    }
  }
}

/**
 * Generates the PKCS#11 root key in the token if absent (`custos keys init-hsm`).
 *
 * @example
 * ```ts
 * const { created } = await initHsmRootKey(config);
 * ```
 */
export async function initHsmRootKey(
  config: KeyProviderConfig,
): Promise<{ created: boolean; describe: string }> {
  const options = pkcs11Options(config);
  const describe = `PKCS#11 token "${options.tokenLabel}" key "${options.keyLabel}"`;
  try {
    return { ...(await pkcs11()).ensurePkcs11RootKey(options), describe };
  } catch (err) {
    throw providerError(`cannot create ${describe}`, err);
  }
}
