import { AppError } from '../../errors.ts';

/**
 * Every refused passkey response looks the same from outside: a wrong signature, origin or RP
 * id, a spent or expired challenge, an unknown, disabled or cloned credential alike.
 */
export const passkeyInvalid = (kind: 'unauthenticated' | 'invalid') =>
  new AppError(kind, 'auth.passkey_invalid', 'passkey response refused', {
    detail: 'The passkey could not be verified. Start again from the options.',
  });
