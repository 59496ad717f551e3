import pkcs11js from 'pkcs11js';
import { AES_GCM_NONCE_BYTES, AES_GCM_TAG_BYTES } from './aes-gcm.ts';
import { lengthPrefixed, requireNonEmpty } from './encoding.ts';
import { CryptoError } from './errors.ts';
import type { KeyProvider } from './key-wrap.ts';
import { pooledRandomBytes } from './random.ts';
import type { RandomSource } from './random.ts';

/**
 * PKCS#11 root key provider (tested with SoftHSM2). The root key is an AES-256 secret key object
 * in the token, generated there with CKA_EXTRACTABLE=false and CKA_SENSITIVE=true, so its value
 * never leaves the HSM. Data keys are "wrapped" with `C_Encrypt` under CKM_AES_GCM (not
 * `C_WrapKey`: the data keys are made by Custos, not by the token, so they are plain bytes and
 * the GCM associated data binds each wrapped key to what it is).
 *
 * Wrapped form: version byte 0x01, 12-byte nonce (drawn by Custos: SoftHSM does not generate GCM
 * IVs), ciphertext, 16-byte tag. The associated data is the key label, length-prefixed, followed
 * by the caller's `ad` (see `wrapAd`), as for `wrapKey`.
 *
 * Calls are synchronous on one session: a session runs one operation at a time, and a 32-byte
 * encryption on a local token takes tens of microseconds, so serialising them is simpler than a
 * session pool. A network HSM would want the async variants and a pool.
 */

const { PKCS11 } = pkcs11js;
const WRAP_VERSION = 1;

/** Where the root key lives. Every value is an argument: this module reads no environment. */
export interface Pkcs11Options {
  /** Path of the PKCS#11 module, e.g. `/usr/lib/softhsm/libsofthsm2.so`. */
  library: string;
  /** Label of the token holding the root key (the slot is found by it). */
  tokenLabel: string;
  /** User PIN of the token. */
  pin: string;
  /** `CKA_LABEL` of the AES-256 root key. */
  keyLabel: string;
  random?: RandomSource;
}

/** A `KeyProvider` backed by a token, with what the start-up check needs. */
export interface Pkcs11KeyProvider extends KeyProvider {
  /** The root key's protection attributes, read from the token. */
  keyAttributes(): { extractable: boolean; sensitive: boolean; valueReadable: boolean };
  /** Logs out and releases the session (and the library when no provider uses it). */
  close(): void;
}

type Handle = Buffer;

/**
 * `C_Initialize` is per process and per library: two providers on the same module must share
 * it, and only the last one to close may call `C_Finalize`.
 */
const loaded = new Map<string, { module: pkcs11js.PKCS11; users: number }>();

function acquire(library: string): pkcs11js.PKCS11 {
  const entry = loaded.get(library);
  if (entry !== undefined) {
    entry.users += 1;
    return entry.module;
  }
  const module = new PKCS11();
  module.load(library);
  try {
    module.C_Initialize();
  } catch (err) {
    if (!isPkcs11Error(err, pkcs11js.CKR_CRYPTOKI_ALREADY_INITIALIZED)) throw err;
  }
  loaded.set(library, { module, users: 1 });
  return module;
}

function release(library: string): void {
  const entry = loaded.get(library);
  if (entry === undefined) return;
  entry.users -= 1;
  if (entry.users > 0) return;
  loaded.delete(library);
  entry.module.C_Finalize();
  entry.module.close();
}

function isPkcs11Error(err: unknown, code?: number): err is pkcs11js.Pkcs11Error {
  return err instanceof pkcs11js.Pkcs11Error && (code === undefined || err.code === code);
}

function findSlot(module: pkcs11js.PKCS11, tokenLabel: string): Handle {
  for (const slot of module.C_GetSlotList(true)) {
    // Token labels are blank-padded to 32 bytes.
    if (module.C_GetTokenInfo(slot).label.trim() === tokenLabel) return slot;
  }
  throw new CryptoError('KEY_NOT_FOUND', `no PKCS#11 token labelled ${tokenLabel}`);
}

function findKey(module: pkcs11js.PKCS11, session: Handle, keyLabel: string): Handle | null {
  module.C_FindObjectsInit(session, [
    { type: pkcs11js.CKA_CLASS, value: pkcs11js.CKO_SECRET_KEY },
    { type: pkcs11js.CKA_KEY_TYPE, value: pkcs11js.CKK_AES },
    { type: pkcs11js.CKA_LABEL, value: keyLabel },
  ]);
  try {
    const found = module.C_FindObjects(session, 2);
    if (found.length > 1) {
      throw new CryptoError('KEY_INVALID', `more than one AES key labelled ${keyLabel}`);
    }
    return found[0] ?? null;
  } finally {
    module.C_FindObjectsFinal(session);
  }
}

function openSession(options: Pkcs11Options, readWrite: boolean) {
  requireNonEmpty(options.library, 'library');
  requireNonEmpty(options.tokenLabel, 'tokenLabel');
  requireNonEmpty(options.keyLabel, 'keyLabel');
  const module = acquire(options.library);
  let session: Handle | undefined;
  try {
    const slot = findSlot(module, options.tokenLabel);
    const flags = pkcs11js.CKF_SERIAL_SESSION | (readWrite ? pkcs11js.CKF_RW_SESSION : 0);
    session = module.C_OpenSession(slot, flags);
    try {
      module.C_Login(session, pkcs11js.CKU_USER, options.pin);
    } catch (err) {
      // Login state is per application: a second provider finds the token already logged in.
      if (!isPkcs11Error(err, pkcs11js.CKR_USER_ALREADY_LOGGED_IN)) throw err;
    }
  } catch (err) {
    if (session !== undefined) module.C_CloseSession(session);
    release(options.library);
    throw err;
  }
  const opened = session;
  return {
    module,
    session: opened,
    close: () => {
      module.C_CloseSession(opened);
      release(options.library);
    },
  };
}

/**
 * Generates the non-extractable AES-256 root key in the token unless a key with that label
 * exists. Returns whether it created one (`custos keys init-hsm`).
 *
 * @example
 * ```ts
 * ensurePkcs11RootKey({ library: '/usr/lib/softhsm/libsofthsm2.so', tokenLabel: 'custos', pin, keyLabel: 'custos-root' });
 * ```
 */
export function ensurePkcs11RootKey(options: Pkcs11Options): { created: boolean } {
  const { module, session, close } = openSession(options, true);
  try {
    if (findKey(module, session, options.keyLabel) !== null) return { created: false };
    module.C_GenerateKey(session, { mechanism: pkcs11js.CKM_AES_KEY_GEN }, [
      { type: pkcs11js.CKA_CLASS, value: pkcs11js.CKO_SECRET_KEY },
      { type: pkcs11js.CKA_KEY_TYPE, value: pkcs11js.CKK_AES },
      { type: pkcs11js.CKA_VALUE_LEN, value: 32 },
      { type: pkcs11js.CKA_LABEL, value: options.keyLabel },
      { type: pkcs11js.CKA_TOKEN, value: true },
      { type: pkcs11js.CKA_PRIVATE, value: true },
      { type: pkcs11js.CKA_SENSITIVE, value: true },
      { type: pkcs11js.CKA_EXTRACTABLE, value: false },
      { type: pkcs11js.CKA_ENCRYPT, value: true },
      { type: pkcs11js.CKA_DECRYPT, value: true },
      { type: pkcs11js.CKA_WRAP, value: false },
      { type: pkcs11js.CKA_UNWRAP, value: false },
      { type: pkcs11js.CKA_MODIFIABLE, value: false },
    ]);
    return { created: true };
  } finally {
    close();
  }
}

function gcm(nonce: Buffer, aad: Buffer): pkcs11js.Mechanism {
  const parameter: pkcs11js.GcmParams = {
    type: pkcs11js.CK_PARAMS_AES_GCM,
    iv: nonce,
    ivBits: AES_GCM_NONCE_BYTES * 8,
    aad,
    tagBits: AES_GCM_TAG_BYTES * 8,
  };
  return { mechanism: pkcs11js.CKM_AES_GCM, parameter };
}

/**
 * Opens a session on the token, logs in and finds the root key. Throws `KEY_NOT_FOUND` if the
 * token or key is absent; PKCS#11 errors (wrong PIN, missing library) pass through as thrown.
 *
 * @example
 * ```ts
 * const provider = createPkcs11KeyProvider({ library, tokenLabel: 'custos', pin, keyLabel: 'custos-root' });
 * const wrapped = await provider.wrap('custos-root', dataKey, wrapAd.tenantKey(tenantId, 1));
 * provider.close();
 * ```
 */
export function createPkcs11KeyProvider(options: Pkcs11Options): Pkcs11KeyProvider {
  const { module, session, close } = openSession(options, false);
  let key: Handle | null;
  try {
    key = findKey(module, session, options.keyLabel);
  } catch (err) {
    close();
    throw err;
  }
  if (key === null) {
    close();
    throw new CryptoError('KEY_NOT_FOUND', `no AES key labelled ${options.keyLabel} in the token`);
  }
  const rootKey = key;
  const random = options.random ?? pooledRandomBytes;
  let closed = false;
  const check = (keyId: string): void => {
    if (closed) throw new CryptoError('KEY_NOT_FOUND', 'the PKCS#11 provider is closed');
    if (keyId !== options.keyLabel) throw new CryptoError('KEY_NOT_FOUND', `no root key ${keyId}`);
  };
  const aadFor = (keyId: string, ad: Uint8Array): Buffer => {
    if (!(ad instanceof Uint8Array) || ad.length === 0) {
      throw new TypeError('ad must name what is wrapped (see wrapAd)');
    }
    return Buffer.concat([lengthPrefixed('custos/key-wrap/v1', [keyId]), ad]);
  };

  return {
    id: `pkcs11:${options.tokenLabel}`,
    wrap: (keyId, plaintextKey, ad) =>
      new Promise((resolve) => {
        check(keyId);
        if (!(plaintextKey instanceof Uint8Array) || plaintextKey.length === 0) {
          throw new CryptoError('KEY_INVALID', 'nothing to wrap');
        }
        const nonce = Buffer.from(random(AES_GCM_NONCE_BYTES));
        module.C_EncryptInit(session, gcm(nonce, aadFor(keyId, ad)), rootKey);
        const input = Buffer.from(plaintextKey);
        const out = module.C_Encrypt(
          session,
          input,
          Buffer.alloc(input.length + AES_GCM_TAG_BYTES),
        );
        input.fill(0);
        resolve(Buffer.concat([Buffer.of(WRAP_VERSION), nonce, out]));
      }),
    unwrap: (keyId, wrapped, ad) =>
      new Promise((resolve) => {
        check(keyId);
        if (wrapped.length < 1 + AES_GCM_NONCE_BYTES + 1 + AES_GCM_TAG_BYTES) {
          throw new CryptoError('ENVELOPE_MALFORMED', 'wrapped key is truncated');
        }
        if (wrapped[0] !== WRAP_VERSION) {
          throw new CryptoError(
            'ENVELOPE_VERSION',
            `unsupported wrapped key version ${wrapped[0]}`,
          );
        }
        const bytes = Buffer.from(wrapped);
        const nonce = bytes.subarray(1, 1 + AES_GCM_NONCE_BYTES);
        const body = bytes.subarray(1 + AES_GCM_NONCE_BYTES);
        try {
          module.C_DecryptInit(session, gcm(nonce, aadFor(keyId, ad)), rootKey);
          resolve(module.C_Decrypt(session, body, Buffer.alloc(body.length)));
        } catch (err) {
          // SoftHSM reports a failed tag as CKR_GENERAL_ERROR, others as
          // CKR_ENCRYPTED_DATA_INVALID: any token refusal here means "did not authenticate".
          if (!isPkcs11Error(err)) throw err;
          throw new CryptoError('UNWRAP_FAILED', 'wrapped key did not authenticate', {
            cause: err,
          });
        }
      }),
    keyAttributes() {
      const [extractable, sensitive] = module.C_GetAttributeValue(session, rootKey, [
        { type: pkcs11js.CKA_EXTRACTABLE },
        { type: pkcs11js.CKA_SENSITIVE },
      ]);
      let valueReadable = true;
      try {
        module.C_GetAttributeValue(session, rootKey, [{ type: pkcs11js.CKA_VALUE }]);
      } catch (err) {
        if (!isPkcs11Error(err, pkcs11js.CKR_ATTRIBUTE_SENSITIVE)) throw err;
        valueReadable = false;
      }
      return {
        extractable: extractable?.value[0] === 1,
        sensitive: sensitive?.value[0] === 1,
        valueReadable,
      };
    },
    close() {
      if (closed) return;
      closed = true;
      close();
    },
  };
}
