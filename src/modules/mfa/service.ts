import { createFailureRecorder, type MfaDeps } from './common.ts';
import { createTotpEnrolment } from './enrol.ts';
import { createRecoveryCodeRegeneration } from './recovery-codes.ts';
import { createTotpRemoval } from './remove.ts';
import { createTotpSecretStore } from './secret-store.ts';
import { createSecondFactorVerifier } from './verify.ts';

export { invalidCode, type MfaDeps } from './common.ts';
export type { SecondFactor, SecondFactorOutcome } from './verify.ts';
export type { ConfirmResult } from './enrol.ts';

/**
 * Second factors: TOTP enrolment and confirmation (`enrol.ts`), removal (`remove.ts`), checking a
 * code or recovery code (`verify.ts`), recovery codes (`recovery-codes.ts`); the encrypted
 * secret lives in `secret-store.ts`, and whether a user has any second factor in `factors.ts`.
 */
export function createMfaService(deps: MfaDeps) {
  const store = createTotpSecretStore(deps);
  const recordFailure = createFailureRecorder(deps);
  const verifier = createSecondFactorVerifier({ db: deps.db, clock: deps.clock, store });
  const { enrolTotp, confirmTotp } = createTotpEnrolment(deps, store, recordFailure);
  return {
    enrolTotp,
    confirmTotp,
    removeTotp: createTotpRemoval(deps, store, verifier, recordFailure),
    regenerateRecoveryCodes: createRecoveryCodeRegeneration(deps),
    verifySecondFactor: verifier.verifySecondFactor,
    recordFailure,
  };
}

export type MfaService = ReturnType<typeof createMfaService>;
