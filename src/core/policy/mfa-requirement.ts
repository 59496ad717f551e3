import { AppError } from '../../errors.ts';
import { isRole, type Actor, type Role } from './actor.ts';

/** A tenant's rule for second factors: nobody, everyone, or the roles listed. */
export type MfaRequirement =
  { mode: 'off' } | { mode: 'all' } | { mode: 'roles'; roles: readonly Role[] };

/**
 * The requirement as stored (`tenant_settings.mfa_required`, `mfa_required_roles`); a missing
 * row (null) is `off`. Unknown role names are ignored rather than trusted.
 *
 * @example
 * mfaRequirementOf('roles', 'owner,admin'); // { mode: 'roles', roles: ['owner', 'admin'] }
 */
export function mfaRequirementOf(mode: string | null, roles: string | null): MfaRequirement {
  if (mode === 'all') return { mode: 'all' };
  if (mode === 'roles') {
    const list = (roles ?? '').split(',').filter(isRole);
    return list.length === 0 ? { mode: 'off' } : { mode: 'roles', roles: list };
  }
  return { mode: 'off' };
}

/**
 * Must a user with this role have a second factor before using the tenant?
 *
 * @example
 * mustHaveSecondFactor({ mode: 'roles', roles: ['admin'] }, 'agent'); // false
 */
export function mustHaveSecondFactor(requirement: MfaRequirement, role: Role): boolean {
  switch (requirement.mode) {
    case 'off':
      return false;
    case 'all':
      return true;
    case 'roles':
      return requirement.roles.includes(role);
  }
}

export const mfaEnrolmentRequired = () =>
  new AppError('forbidden', 'auth.mfa_enrolment_required', 'second factor enrolment required', {
    detail:
      'Your organisation requires two-factor authentication. Enrol a second factor first ' +
      '(POST /api/v1/auth/mfa/totp, then /confirm); until then only enrolment, your own ' +
      'session information and sign-out are available.',
  });

/**
 * The gate for a user who must enrol a second factor and has none: only the routes that lead to
 * enrolment (marked by the caller: enrolment, step-up, own session info, sign-out) stay open to
 * their session; API keys of such a user are refused outright (nobody can enrol through a key).
 *
 * @example
 * requireSecondFactorEnrolled(actor, route.config.mfaEnrolment === true);
 */
export function requireSecondFactorEnrolled(actor: Actor, routeLeadsToEnrolment: boolean): void {
  if (actor.kind === 'system' || actor.mfaEnrolmentRequired !== true) return;
  if (actor.kind === 'user' && routeLeadsToEnrolment) return;
  throw mfaEnrolmentRequired();
}
