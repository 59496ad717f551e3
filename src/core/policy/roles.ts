import type { Classification } from '../privacy/index.ts';
import type { Role } from './actor.ts';

/**
 * What a role grants, as data: the built-in roles below and the tenants' custom roles share this
 * shape, and ability.ts compiles it into the rules the decision function asks.
 *
 * @example
 * ```ts
 * builtinRoles.agent.records.contact?.read; // 'own'
 * resolveRole({ base: 'viewer', capabilities: { audit: 'read' } }).records.deal?.read; // 'all'
 * ```
 */
export type RecordResource = 'contact' | 'company' | 'deal' | 'activity';
export type RecordAction = 'create' | 'read' | 'update' | 'delete' | 'export' | 'import';
/** Which records an action reaches: the caller's own, their teams' members', or all. */
export type Scope = 'own' | 'team' | 'all';
export type Capability =
  | 'users'
  | 'roles'
  | 'api_keys'
  | 'encryption_keys'
  | 'audit'
  | 'compliance'
  | 'settings'
  | 'break_glass';
export type CapabilityLevel = 'read' | 'manage';
export type FieldReadAccess = 'full' | 'masked' | 'none';

export interface FieldGrant {
  read: FieldReadAccess;
  write: boolean;
}

export interface RoleDefinition {
  /** Per record resource, each allowed action with the scope it reaches; absent: refused. */
  records: Partial<Record<RecordResource, Partial<Record<RecordAction, Scope>>>>;
  /** Field access by the field's classification in the data map. */
  classes: Record<Classification, FieldGrant>;
  /** Exceptions for single fields, keyed `resource.field` (`contact.nationalId`). */
  fields: Record<string, FieldGrant>;
  /** May ask for the clear value of a field it sees masked (audited, with a reason). */
  reveal: boolean;
  /** May set or change a record's `ownerId` (give a record to someone else). */
  assignOwner: boolean;
  capabilities: Partial<Record<Capability, CapabilityLevel>>;
}

/** A custom role as stored: a built-in base with changes, or explicit grants from nothing. */
export interface CustomRoleSpec {
  base?: Role | undefined;
  records?: RoleDefinition['records'] | undefined;
  classes?: Partial<RoleDefinition['classes']> | undefined;
  fields?: RoleDefinition['fields'] | undefined;
  reveal?: boolean | undefined;
  assignOwner?: boolean | undefined;
  capabilities?: RoleDefinition['capabilities'] | undefined;
}

export const recordResources: readonly RecordResource[] = [
  'contact',
  'company',
  'deal',
  'activity',
];
export const recordActions: readonly RecordAction[] = [
  'create',
  'read',
  'update',
  'delete',
  'export',
  'import',
];
export const capabilities: readonly Capability[] = [
  'users',
  'roles',
  'api_keys',
  'encryption_keys',
  'audit',
  'compliance',
  'settings',
  'break_glass',
];
export const scopes: readonly Scope[] = ['own', 'team', 'all'];

const FULL: FieldGrant = { read: 'full', write: true };
const READ_ONLY: FieldGrant = { read: 'full', write: false };
const MASKED_READ: FieldGrant = { read: 'masked', write: false };

function everyResource(actions: Partial<Record<RecordAction, Scope>>) {
  return Object.fromEntries(recordResources.map((r) => [r, { ...actions }])) as Partial<
    Record<RecordResource, Partial<Record<RecordAction, Scope>>>
  >;
}
const allActions = (scope: Scope) =>
  Object.fromEntries(recordActions.map((a) => [a, scope])) as Record<RecordAction, Scope>;

const everyCapability = Object.fromEntries(capabilities.map((c) => [c, 'manage'])) as Record<
  Capability,
  CapabilityLevel
>;

/**
 * The built-in roles. Owner: everything. Admin: everything but the encryption keys (read only).
 * Manager: every record action over their teams' records, no administration. Agent: every record
 * action on their own records, sensitive fields masked. Viewer: reads every record, sensitive fields
 * masked. Auditor: reads the audit trail, compliance and the role model; records masked.
 */
export const builtinRoles: Readonly<Record<Role, RoleDefinition>> = {
  owner: {
    records: everyResource(allActions('all')),
    classes: { public: FULL, internal: FULL, personal: FULL, sensitive: FULL },
    fields: {},
    reveal: true,
    assignOwner: true,
    capabilities: everyCapability,
  },
  admin: {
    records: everyResource(allActions('all')),
    classes: { public: FULL, internal: FULL, personal: FULL, sensitive: FULL },
    fields: {},
    reveal: true,
    assignOwner: true,
    capabilities: { ...everyCapability, encryption_keys: 'read' },
  },
  manager: {
    records: everyResource(allActions('team')),
    classes: { public: FULL, internal: FULL, personal: FULL, sensitive: FULL },
    fields: {},
    reveal: true,
    assignOwner: true,
    capabilities: {},
  },
  agent: {
    records: everyResource(allActions('own')),
    classes: {
      public: FULL,
      internal: FULL,
      personal: FULL,
      sensitive: { read: 'masked', write: true },
    },
    fields: {},
    reveal: true,
    assignOwner: false,
    capabilities: {},
  },
  viewer: {
    records: everyResource({ read: 'all' }),
    classes: {
      public: READ_ONLY,
      internal: READ_ONLY,
      personal: READ_ONLY,
      sensitive: MASKED_READ,
    },
    fields: {},
    reveal: false,
    assignOwner: false,
    capabilities: {},
  },
  auditor: {
    records: everyResource({ read: 'all' }),
    classes: {
      public: READ_ONLY,
      internal: READ_ONLY,
      personal: MASKED_READ,
      sensitive: MASKED_READ,
    },
    fields: {},
    reveal: false,
    assignOwner: false,
    capabilities: { audit: 'read', compliance: 'read', roles: 'read', users: 'read' },
  },
};

const NOTHING: RoleDefinition = {
  records: {},
  classes: {
    public: { read: 'none', write: false },
    internal: { read: 'none', write: false },
    personal: { read: 'none', write: false },
    sensitive: { read: 'none', write: false },
  },
  fields: {},
  reveal: false,
  assignOwner: false,
  capabilities: {},
};

/**
 * The full definition of a custom role: its base (or nothing) with the spec's parts laid over.
 * A resource listed in `records` replaces the base's actions for that resource.
 */
export function resolveRole(spec: CustomRoleSpec): RoleDefinition {
  const base = spec.base === undefined ? NOTHING : builtinRoles[spec.base];
  return {
    records: { ...base.records, ...spec.records },
    classes: { ...base.classes, ...spec.classes },
    fields: { ...base.fields, ...spec.fields },
    reveal: spec.reveal ?? base.reveal,
    assignOwner: spec.assignOwner ?? base.assignOwner,
    capabilities: { ...base.capabilities, ...spec.capabilities },
  };
}

const scopeRank: Record<Scope, number> = { own: 0, team: 1, all: 2 };
const readRank: Record<FieldReadAccess, number> = { none: 0, masked: 1, full: 2 };
const levelRank: Record<CapabilityLevel, number> = { read: 0, manage: 1 };

/** The narrower of two scopes (null: refused). */
export function narrowerScope(a: Scope | null, b: Scope | null): Scope | null {
  if (a === null || b === null) return null;
  return scopeRank[a] <= scopeRank[b] ? a : b;
}

/** The weaker of two field read levels. */
export function weakerRead(a: FieldReadAccess, b: FieldReadAccess): FieldReadAccess {
  return readRank[a] <= readRank[b] ? a : b;
}

/**
 * The first grant of `role` that `holder` does not have itself, as `part` names (for the error
 * that refuses it), or null when `holder` covers all of `role`: nobody can create or hand out a
 * role more powerful than their own.
 */
export function exceeds(
  role: RoleDefinition,
  holder: RoleDefinition,
  fieldGrant: (def: RoleDefinition, key: string, classification: Classification) => FieldGrant,
  fieldKeys: ReadonlyArray<{ key: string; classification: Classification }>,
): string | null {
  for (const resource of recordResources) {
    for (const action of recordActions) {
      const wanted = role.records[resource]?.[action];
      if (wanted === undefined) continue;
      const held = holder.records[resource]?.[action];
      if (held === undefined || scopeRank[held] < scopeRank[wanted]) {
        return `records.${resource}.${action}`;
      }
    }
  }
  for (const { key, classification } of fieldKeys) {
    const wanted = fieldGrant(role, key, classification);
    const held = fieldGrant(holder, key, classification);
    if (readRank[wanted.read] > readRank[held.read] || (wanted.write && !held.write)) {
      return `fields.${key}`;
    }
  }
  if (role.reveal && !holder.reveal) return 'reveal';
  if (role.assignOwner && !holder.assignOwner) return 'assignOwner';
  for (const capability of capabilities) {
    const wanted = role.capabilities[capability];
    if (wanted === undefined) continue;
    const held = holder.capabilities[capability];
    if (held === undefined || levelRank[held] < levelRank[wanted]) {
      return `capabilities.${capability}`;
    }
  }
  return null;
}
