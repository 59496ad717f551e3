import type { Actor } from './actor.ts';
import { decide, type Decision } from './policy.ts';

/** The longest a break-glass grant may last. */
export const BREAK_GLASS_MAX_MINUTES = 60;

/**
 * The `break_glass` capability: may `actor` open emergency access (and see and end the tenant's
 * grants)? The permission model decides (owners, admins, and any custom role given the
 * capability, such as clinical staff whose everyday role masks health data), and only for a
 * person signed in with a session: an API key or a job has nobody to account for the emergency.
 *
 * @example
 * ```ts
 * mayBreakGlass(admin); // { allowed: true, rule: 'admin: manage break_glass' }
 * mayBreakGlass(agent); // { allowed: false, rule: 'agent: no manage break_glass' }
 * ```
 */
export function mayBreakGlass(actor: Actor): Decision {
  if (actor.kind !== 'user') return { allowed: false, rule: 'break-glass-needs-a-person' };
  return decide(actor, 'manage', 'break_glass');
}
