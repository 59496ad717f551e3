import { createMongoAbility, subject, type MongoAbility, type RawRuleOf } from '@casl/ability';
import { dataMap, type Classification, type DataObject } from '../privacy/index.ts';
import {
  capabilities,
  recordActions,
  recordResources,
  type Capability,
  type FieldGrant,
  type FieldReadAccess,
  type RecordResource,
  type RoleDefinition,
  type Scope,
} from './roles.ts';

/**
 * A role definition compiled into a CASL ability, with the per-role answers memoised: the
 * ability depends on the role only (never on the user), so it is built once per role and
 * version. Record scope is a condition on how the record relates to the caller (`reach`: the
 * caller's own, a team member's, anyone's), which the record queries then say in SQL.
 *
 * Field actions: `field_read` (at least masked), `field_read_clear` (full), `field_write`,
 * `field_reveal`, each limited to the listed fields.
 */
type Subject = RecordResource | Capability | 'all';
type AbilityAction =
  | 'create'
  | 'read'
  | 'update'
  | 'delete'
  | 'export'
  | 'import'
  | 'manage'
  | 'field_read'
  | 'field_read_clear'
  | 'field_write'
  | 'field_reveal';
type Ability = MongoAbility<[AbilityAction, Subject | ReturnType<typeof probe>]>;

export interface Compiled {
  readonly name: string;
  readonly definition: RoleDefinition;
  readonly ability: Ability;
  /** Memoised `scopeIn` answers (`action|resource`). */
  readonly scopes: Map<string, Scope | null>;
  /** Memoised `fieldIn` answers by resource, then field: asked for every field of every record. */
  readonly fields: Map<RecordResource, Map<string, FieldAnswer>>;
}

export interface FieldAnswer {
  read: FieldReadAccess;
  write: boolean;
  reveal: boolean;
  rule: string;
}

const reaches = { own: ['own'], team: ['own', 'team'] } as const;

function probe(resource: RecordResource, reach: 'own' | 'team' | 'other') {
  return subject(resource, { reach });
}
const probes = Object.fromEntries(
  recordResources.map((r) => [
    r,
    { own: probe(r, 'own'), team: probe(r, 'team'), other: probe(r, 'other') },
  ]),
) as Record<RecordResource, Record<'own' | 'team' | 'other', ReturnType<typeof probe>>>;

/** Fields of a record resource with their classification, from the data map. */
export function fieldsOf(
  resource: RecordResource,
): Array<{ field: string; classification: Classification }> {
  return Object.entries(dataMap[resource as DataObject]).map(([field, classification]) => ({
    field,
    classification: classification,
  }));
}

/** The grant for `resource.field`: its single-field exception, else its classification's. */
export function fieldGrant(
  definition: RoleDefinition,
  key: string,
  classification: Classification,
): FieldGrant {
  return definition.fields[key] ?? definition.classes[classification];
}

export function compile(name: string, definition: RoleDefinition): Compiled {
  const rules: RawRuleOf<Ability>[] = [];
  for (const resource of recordResources) {
    const actions = definition.records[resource] ?? {};
    for (const action of recordActions) {
      const scope = actions[action];
      if (scope === undefined) continue;
      rules.push({
        action,
        subject: resource,
        ...(scope === 'all' ? {} : { conditions: { reach: { $in: [...reaches[scope]] } } }),
        reason: `${name}: ${action} ${resource} (${scope})`,
      });
    }
    const byAction: Record<
      'field_read' | 'field_read_clear' | 'field_write' | 'field_reveal',
      string[]
    > = {
      field_read: [],
      field_read_clear: [],
      field_write: [],
      field_reveal: [],
    };
    for (const { field, classification } of fieldsOf(resource)) {
      const grant = fieldGrant(definition, `${resource}.${field}`, classification);
      if (grant.read !== 'none') byAction.field_read.push(field);
      if (grant.read === 'full') byAction.field_read_clear.push(field);
      if (grant.write) byAction.field_write.push(field);
      if (grant.read === 'masked' && definition.reveal) byAction.field_reveal.push(field);
    }
    if (definition.assignOwner) byAction.field_write.push('ownerId');
    else byAction.field_write = byAction.field_write.filter((f) => f !== 'ownerId');
    for (const [action, fields] of Object.entries(byAction)) {
      if (fields.length === 0) continue;
      rules.push({
        action: action as AbilityAction,
        subject: resource,
        fields,
        reason: `${name}: ${action.replace('field_', '')} fields of ${resource}`,
      });
    }
  }
  for (const capability of capabilities) {
    const level = definition.capabilities[capability];
    if (level === undefined) continue;
    // CASL's `manage` stands for every action.
    rules.push({ action: level, subject: capability, reason: `${name}: ${level} ${capability}` });
  }
  return {
    name,
    definition,
    ability: createMongoAbility(rules),
    scopes: new Map(),
    fields: new Map(),
  };
}

/** May the role do `action` on `subject` at all (some scope, or the capability)? */
export function can(
  compiled: Compiled,
  action: AbilityAction,
  on: Subject,
): { allowed: boolean; rule: string } {
  const rule = compiled.ability.relevantRuleFor(action, on);
  const allowed = rule !== null && !rule.inverted;
  return { allowed, rule: rule?.reason ?? `${compiled.name}: no ${action} ${on}` };
}

/** The widest scope the role reaches for `action` on `resource`, or null when refused. */
export function scopeIn(
  compiled: Compiled,
  action: string,
  resource: RecordResource,
): Scope | null {
  const key = `${action}|${resource}`;
  const known = compiled.scopes.get(key);
  if (known !== undefined) return known;
  const p = probes[resource];
  const a = action as AbilityAction;
  const scope = compiled.ability.can(a, p.other)
    ? 'all'
    : compiled.ability.can(a, p.team)
      ? 'team'
      : compiled.ability.can(a, p.own)
        ? 'own'
        : null;
  compiled.scopes.set(key, scope);
  return scope;
}

/** How the role reads and writes `resource.field`, with the rule that decided. */
export function fieldIn(compiled: Compiled, resource: RecordResource, field: string): FieldAnswer {
  let known = compiled.fields.get(resource);
  if (known === undefined) compiled.fields.set(resource, (known = new Map<string, FieldAnswer>()));
  let answer = known.get(field);
  if (answer === undefined) {
    answer = askField(compiled, resource, field);
    // Field names come from code and the data map; a flood of unknown ones must not grow memory.
    if (known.size < 1_000) known.set(field, answer);
  }
  return answer;
}

function askField(compiled: Compiled, resource: RecordResource, field: string): FieldAnswer {
  return Object.freeze(askFieldOnce(compiled, resource, field));
}

function askFieldOnce(compiled: Compiled, resource: RecordResource, field: string): FieldAnswer {
  const ability = compiled.ability;
  const read: FieldReadAccess = ability.can('field_read_clear', resource, field)
    ? 'full'
    : ability.can('field_read', resource, field)
      ? 'masked'
      : 'none';
  const rule =
    ability.relevantRuleFor(read === 'full' ? 'field_read_clear' : 'field_read', resource, field)
      ?.reason ?? `${compiled.name}: no read of ${resource}.${field}`;
  return {
    read,
    write: ability.can('field_write', resource, field),
    reveal: read === 'masked' && ability.can('field_reveal', resource, field),
    rule,
  };
}
