import { AppError } from '../../errors.ts';
import { roleRank, type Actor, type Role } from './actor.ts';

/**
 * The one decision function. Every service asks `decide` (or `authorize`, which throws) before it
 * reads or changes anything; nothing else in the code compares roles. The full permission model
 * (field and record level) grows here.
 *
 * @example
 * ```ts
 * authorize(actor, 'update', 'contact'); // throws AppError(forbidden) for a viewer
 * ```
 */
export type RecordResource = 'contact' | 'company' | 'deal' | 'activity';
export type AdminResource = 'user' | 'api_key' | 'tenant_settings' | 'audit_settings' | 'alert';
export type Resource = RecordResource | AdminResource;
export type Action = 'read' | 'create' | 'update' | 'delete' | 'import' | 'export' | 'manage';

export interface Decision {
  allowed: boolean;
  /** Which rule decided: for logs and the explain endpoint. */
  rule: string;
}

const minimumRole: Record<Action, Role> = {
  read: 'viewer',
  export: 'member',
  create: 'member',
  update: 'member',
  delete: 'member',
  import: 'member',
  manage: 'admin',
};

export function decide(actor: Actor, action: Action, resource: Resource): Decision {
  const isAdminResource =
    resource === 'user' ||
    resource === 'api_key' ||
    resource === 'tenant_settings' ||
    resource === 'audit_settings' ||
    resource === 'alert';
  if (isAdminResource) {
    // Managing users, keys, tenant settings and security alerts needs an administrator; everyone may read their
    // own account through the dedicated `me` routes, not through these.
    if (resource === 'api_key' && actor.kind === 'api_key') {
      return { allowed: false, rule: 'api-keys-cannot-manage-api-keys' };
    }
    const allowed = roleRank(actor.role) >= roleRank('admin');
    return { allowed, rule: allowed ? 'admin-manages-identity' : 'identity-needs-admin' };
  }
  const needed = minimumRole[action];
  const allowed = roleRank(actor.role) >= roleRank(needed);
  return { allowed, rule: `${action}-needs-${needed}` };
}

export function authorize(actor: Actor, action: Action, resource: Resource): void {
  const decision = decide(actor, action, resource);
  if (!decision.allowed) {
    throw new AppError(
      'forbidden',
      'policy.forbidden',
      `${actor.role} may not ${action} ${resource} (${decision.rule})`,
      { detail: `Your role does not allow this action (${action} ${resource}).` },
    );
  }
}

/** May `actor` give `target` role to a user or key? Never above their own. */
export function mayGrantRole(actor: Actor, target: Role): boolean {
  return roleRank(target) <= roleRank(actor.role);
}
