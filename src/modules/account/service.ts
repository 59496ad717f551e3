import { createEmailChange, type EmailChangeDeps } from './email-change.ts';
import { createPasswordChange, type PasswordChangeDeps } from './password-change.ts';
import { createPasswordReset, type PasswordResetDeps } from './password-reset.ts';

/** Password reset by mail, password change, e-mail change: the account's own credentials. */
export function createAccountService(
  deps: PasswordResetDeps & PasswordChangeDeps & EmailChangeDeps,
) {
  const reset = createPasswordReset(deps);
  const email = createEmailChange(deps);
  return {
    requestPasswordReset: reset.request,
    confirmPasswordReset: reset.confirm,
    passwordResetPasskeyOptions: reset.passkeyOptions,
    changePassword: createPasswordChange(deps),
    requestEmailChange: email.request,
    confirmEmailChange: email.confirm,
  };
}

export type AccountService = ReturnType<typeof createAccountService>;
