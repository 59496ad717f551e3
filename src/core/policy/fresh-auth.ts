import type { Clock } from '../../clock.ts';
import { AppError } from '../../errors.ts';
import type { Actor } from './actor.ts';

/** How long a sign-in or a step-up counts as fresh for sensitive actions. */
export const FRESH_AUTH_MS = 5 * 60_000;

/** The hint sent in `WWW-Authenticate` and in the problem's `detail` (after RFC 9470). */
export const STEP_UP_CHALLENGE = `Bearer realm="custos", error="insufficient_user_authentication", max_age=${FRESH_AUTH_MS / 1000}`;

/**
 * Throws `auth.step_up_required` (401) unless a cookie session proved its user within the last
 * five minutes: at sign-in (after the second factor, if any) or with `POST /api/v1/auth/step-up`.
 * API keys and system jobs pass: they have no person to ask, and are bounded instead by their
 * role, expiry and revocation. Keys can never create keys (see `decide`), so a stale session
 * cannot mint one to escape the step-up.
 *
 * @example
 * requireFreshAuth(actor, clock); // before creating an API key
 */
export function requireFreshAuth(actor: Actor, clock: Clock): void {
  if (actor.kind !== 'user') return;
  const at = actor.authenticatedAt === null ? NaN : Date.parse(actor.authenticatedAt);
  const age = clock.now().getTime() - at;
  // A clock moved backwards (age < 0) is not trusted either.
  if (Number.isFinite(age) && age >= 0 && age < FRESH_AUTH_MS) return;
  throw new AppError('unauthenticated', 'auth.step_up_required', 'authentication not fresh', {
    detail:
      'This action needs a recent authentication. Confirm it with POST /api/v1/auth/step-up ' +
      '({"password"}, or {"code"} with two-factor authentication on), then retry. ' +
      `WWW-Authenticate: ${STEP_UP_CHALLENGE}`,
  });
}
