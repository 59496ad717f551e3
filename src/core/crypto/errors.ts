/**
 * Every failure a caller may want to act on, as a closed set of stable codes.
 *
 * - `ENVELOPE_MALFORMED`: a stored value that is not a Custos envelope, or is truncated.
 * - `ENVELOPE_VERSION`: a well-formed prefix naming a format version this code cannot read.
 * - `KEY_NOT_FOUND`: the key id / key version named by a value is not available.
 * - `KEY_INVALID`: key material of the wrong type or size (e.g. a 16-byte "AES-256" key).
 * - `KEY_TOO_WEAK`: a recipient public key below the accepted strength (RSA < 2048 bits).
 * - `DECRYPT_FAILED`: authentication failed: wrong key, tampered bytes, or a value moved to
 *   another tenant, object, field or record (AES-GCM cannot tell these apart, see `aead.ts`).
 * - `UNWRAP_FAILED`: a wrapped data key did not authenticate under the root key and label.
 * - `JWE_INVALID`: an export package that is not a JWE this library produces.
 */
export type CryptoErrorCode =
  | 'ENVELOPE_MALFORMED'
  | 'ENVELOPE_VERSION'
  | 'KEY_NOT_FOUND'
  | 'KEY_INVALID'
  | 'KEY_TOO_WEAK'
  | 'DECRYPT_FAILED'
  | 'UNWRAP_FAILED'
  | 'JWE_INVALID';

/**
 * The one error class of `core/crypto`. Switch on `code`; `message` is for logs and never
 * contains key material or plaintext.
 *
 * @example
 * ```ts
 * try {
 *   decryptField(keys, ad, stored);
 * } catch (err) {
 *   if (err instanceof CryptoError && err.code === 'KEY_NOT_FOUND') scheduleKeyReload();
 *   else throw err;
 * }
 * ```
 */
export class CryptoError extends Error {
  override readonly name = 'CryptoError';
  readonly code: CryptoErrorCode;

  constructor(code: CryptoErrorCode, message: string, options?: { cause?: unknown }) {
    super(message, options);
    this.code = code;
  }
}

/**
 * Narrowing helper, optionally for one code.
 *
 * @example
 * ```ts
 * if (isCryptoError(err, 'DECRYPT_FAILED')) audit('field.integrity_failure');
 * ```
 */
export function isCryptoError(err: unknown, code?: CryptoErrorCode): err is CryptoError {
  return err instanceof CryptoError && (code === undefined || err.code === code);
}
