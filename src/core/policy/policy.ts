import { AppError } from '../../errors.ts';
import { roleRank, type Actor, type CustomRole, type Role } from './actor.ts';
import { can, compile, scopeIn, type Compiled } from './ability.ts';
import {
  builtinRoles,
  narrowerScope,
  recordResources,
  resolveRole,
  type Capability,
  type RecordResource,
  type Scope,
} from './roles.ts';

export type { RecordResource, Scope, Capability } from './roles.ts';

/**
 * The one decision function. Every service asks `decide` (or `authorize`, which throws) before it
 * reads or changes anything, and `scopeOf` for which records it may reach; nothing else in the
 * code compares roles. Roles are data (roles.ts) compiled into CASL abilities (ability.ts).
 *
 * @example
 * ```ts
 * authorize(actor, 'update', 'contact'); // throws AppError(forbidden) for a viewer
 * scopeOf(agent, 'read', 'contact');     // 'own': list queries filter on owner_id
 * decide(auditor, 'read', 'audit');      // { allowed: true, rule: 'auditor: read audit' }
 * ```
 */
/** Older names of the administrative capabilities, still accepted. */
export type LegacyAdminResource =
  'user' | 'api_key' | 'tenant_settings' | 'audit_settings' | 'alert';
export type AdminResource = Capability | LegacyAdminResource;
export type Resource = RecordResource | AdminResource;
export type Action = 'read' | 'create' | 'update' | 'delete' | 'import' | 'export' | 'manage';

export interface Decision {
  allowed: boolean;
  /** Which rule decided: for logs and the explain endpoint. */
  rule: string;
}

const legacy: Record<LegacyAdminResource, Capability> = {
  user: 'users',
  api_key: 'api_keys',
  tenant_settings: 'settings',
  audit_settings: 'audit',
  alert: 'audit',
};

export function isRecordResource(resource: string): resource is RecordResource {
  return (recordResources as readonly string[]).includes(resource);
}

/** The capability an administrative resource name stands for. */
export function capabilityOf(resource: AdminResource): Capability {
  return (legacy as Record<string, Capability>)[resource] ?? (resource as Capability);
}

const builtins = new Map<Role, Compiled>(
  (Object.keys(builtinRoles) as Role[]).map((r) => [r, compile(r, builtinRoles[r])]),
);
// Custom roles by id and version: a changed role (new version) compiles anew on its next use.
const customs = new Map<string, Compiled>();
const MAX_CUSTOM = 1_000;

function compiledCustom(role: CustomRole): Compiled {
  const key = `${role.id}:${role.version}`;
  let compiled = customs.get(key);
  if (!compiled) {
    if (customs.size >= MAX_CUSTOM) customs.clear();
    compiled = compile(role.name, resolveRole(role.definition));
    customs.set(key, compiled);
  }
  return compiled;
}

/** The compiled role of `role` or `custom` (which wins when present). */
export function compiledRole(role: Role, custom?: CustomRole): Compiled {
  if (custom) return compiledCustom(custom);
  const compiled = builtins.get(role);
  if (!compiled) throw new TypeError(`unknown role ${String(role)}`);
  return compiled;
}

/** Every ability that must agree: an API key's, and its creator's as they stand now. */
export function abilitiesOf(actor: Actor): Compiled[] {
  if (actor.kind === 'api_key') {
    const key = compiledRole(actor.role);
    if (actor.creatorRole === undefined && actor.creatorCustomRole === undefined) return [key];
    return [key, compiledRole(actor.creatorRole ?? actor.role, actor.creatorCustomRole)];
  }
  return [compiledRole(actor.role, actor.kind === 'user' ? actor.customRole : undefined)];
}

/** Is emergency access (break-glass) open for this actor at `now`? */
export function breakGlassOpen(actor: Actor, now: Date = new Date()): boolean {
  return (
    actor.kind === 'user' &&
    actor.breakGlass !== undefined &&
    Date.parse(actor.breakGlass.expiresAt) > now.getTime()
  );
}

export function decide(actor: Actor, action: Action, resource: Resource): Decision {
  if (isRecordResource(resource)) {
    if (action === 'read' && breakGlassOpen(actor)) return { allowed: true, rule: 'break-glass' };
    return all(abilitiesOf(actor), (c) => can(c, action, resource));
  }
  const capability = capabilityOf(resource);
  if (capability === 'api_keys' && actor.kind === 'api_key' && action !== 'read') {
    // A key that could mint keys could outlive its own revocation.
    return { allowed: false, rule: 'api-keys-cannot-manage-api-keys' };
  }
  // Reading is `read`; every other action on a capability needs `manage`.
  const needed = action === 'read' ? 'read' : 'manage';
  return all(abilitiesOf(actor), (c) => can(c, needed, capability));
}

function all(abilities: Compiled[], ask: (c: Compiled) => Decision): Decision {
  let last: Decision = { allowed: false, rule: 'no-role' };
  for (const compiled of abilities) {
    last = ask(compiled);
    if (!last.allowed) return last;
  }
  return last;
}

/**
 * Which records of `resource` the actor reaches with `action`: `own` (records they own), `team`
 * (owned by them or by a member of one of their teams), `all`, or null (refused). System jobs
 * reach what their role does. Break-glass opens `read` to all records.
 */
export function scopeOf(actor: Actor, action: Action, resource: RecordResource): Scope | null {
  if (action === 'read' && breakGlassOpen(actor)) return 'all';
  let scope: Scope | null = 'all';
  for (const compiled of abilitiesOf(actor)) {
    scope = narrowerScope(scope, scopeIn(compiled, action, resource));
  }
  return scope;
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

/**
 * Like `authorize`, and returns the scope the action reaches (never null).
 *
 * @example
 * const scope = authorizeScope(actor, 'read', 'contact'); // 'own' for an agent
 */
export function authorizeScope(actor: Actor, action: Action, resource: RecordResource): Scope {
  authorize(actor, action, resource);
  const scope = scopeOf(actor, action, resource);
  if (scope === null) throw new TypeError('allowed without a scope');
  return scope;
}

/** May `actor` give `target` role to a user or key? Never above their own. */
export function mayGrantRole(actor: Actor, target: Role): boolean {
  return roleRank(target) <= roleRank(actor.role);
}
