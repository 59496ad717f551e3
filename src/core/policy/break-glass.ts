import { roleRank, type Actor } from './actor.ts';
import type { Decision } from './policy.ts';

/** The longest a break-glass grant may last. */
export const BREAK_GLASS_MAX_MINUTES = 60;

/**
 * The `break_glass` capability: may `actor` open emergency access (and see and end the tenant's
 * grants)? Only a person signed in with a session: an API key or a job has nobody to account for
 * the emergency. For now owners and admins; the permission model maps it to its capability.
 *
 * @example
 * ```ts
 * mayBreakGlass(admin); // { allowed: true, rule: 'break-glass-needs-admin' }
 * ```
 */
export function mayBreakGlass(actor: Actor): Decision {
  if (actor.kind !== 'user') return { allowed: false, rule: 'break-glass-needs-a-person' };
  const allowed = roleRank(actor.role) >= roleRank('admin');
  return { allowed, rule: 'break-glass-needs-admin' };
}
