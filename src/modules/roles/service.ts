import type { Kysely } from 'kysely';
import type { Clock } from '../../clock.ts';
import type { Database } from '../../db/schema.ts';
import {
  authorize,
  builtinRoles,
  exceeds,
  fieldGrant,
  fieldsOf,
  isRole,
  mayGrantRole,
  recordResources,
  requireFreshAuth,
  resolveRole,
  type Actor,
  type CustomRoleSpec,
  type Role,
  type RoleDefinition,
} from '../../core/policy/index.ts';
import { AppError } from '../../errors.ts';
import { newId } from '../../ids.ts';
import { auditActor } from '../audit/event.ts';
import type { AuditRecorder } from '../audit/service.ts';
import { isUniqueViolation } from '../records/repository.ts';

/**
 * Roles: the built-in ones (read only) and the tenant's custom roles (`roles` table), which hold
 * a CustomRoleSpec: a base role with changes, or explicit grants. Nobody creates, changes or
 * hands out a role that grants more than their own. A change counts on the next request: the
 * actor carries the role's current version (see auth/service.ts).
 */
export interface RoleView {
  id: string;
  name: string;
  builtin: boolean;
  description: string | null;
  /** As stored (custom roles); null for built-in ones. */
  spec: CustomRoleSpec | null;
  /** What the role grants, resolved. */
  definition: RoleDefinition;
  version: number;
}

const FIELD_KEYS = recordResources.flatMap((r) =>
  fieldsOf(r).map((f) => ({ key: `${r}.${f.field}`, classification: f.classification })),
);

const notFound = () =>
  new AppError('not_found', 'resource.not_found', 'role not found', {
    detail: 'No role with this id.',
  });

/** What the actor holds itself: their custom role, else their built-in one. */
function heldBy(actor: Actor): RoleDefinition {
  const custom =
    actor.kind === 'user'
      ? actor.customRole
      : actor.kind === 'api_key'
        ? actor.creatorCustomRole
        : undefined;
  return custom ? resolveRole(custom.definition) : builtinRoles[actor.role];
}

/** Refuses a definition granting more than `actor` holds, naming the first excess. */
function requireWithin(actor: Actor, definition: RoleDefinition) {
  const excess = exceeds(definition, heldBy(actor), fieldGrant, FIELD_KEYS);
  if (excess === null) return;
  throw new AppError('forbidden', 'role.exceeds_own', `role grants ${excess}`, {
    detail: `The role grants more than your own role (${excess}).`,
    errors: [
      { field: `body/definition/${excess.replaceAll('.', '/')}`, reason: 'exceeds your own role' },
    ],
  });
}

export function createRoleService(deps: {
  db: Kysely<Database>;
  clock: Clock;
  audit?: AuditRecorder;
}) {
  const { db, clock } = deps;

  const builtinViews: RoleView[] = (Object.keys(builtinRoles) as Role[]).map((name) => ({
    id: name,
    name,
    builtin: true,
    description: null,
    spec: null,
    definition: builtinRoles[name],
    version: 1,
  }));

  function toView(row: {
    id: string;
    name: string;
    description: string | null;
    definition: string;
    version: number | string;
  }): RoleView {
    const spec = JSON.parse(row.definition) as CustomRoleSpec;
    return {
      id: row.id,
      name: row.name,
      builtin: false,
      description: row.description,
      spec,
      definition: resolveRole(spec),
      version: Number(row.version),
    };
  }

  const COLUMNS = ['id', 'name', 'description', 'definition', 'version'] as const;

  async function find(conn: Kysely<Database>, actor: Actor, id: string) {
    const row = await conn
      .selectFrom('roles')
      .select(COLUMNS)
      .where('tenant_id', '=', actor.tenantId)
      .where('id', '=', id)
      .executeTakeFirst();
    if (!row) throw notFound();
    return row;
  }

  async function list(actor: Actor): Promise<RoleView[]> {
    authorize(actor, 'read', 'roles');
    const rows = await db
      .selectFrom('roles')
      .select(COLUMNS)
      .where('tenant_id', '=', actor.tenantId)
      .orderBy('name')
      .execute();
    return [...builtinViews, ...rows.map(toView)];
  }

  async function get(actor: Actor, id: string): Promise<RoleView> {
    authorize(actor, 'read', 'roles');
    const builtin = builtinViews.find((v) => v.id === id);
    if (builtin) return builtin;
    return toView(await find(db, actor, id));
  }

  function nameTaken(cause?: unknown) {
    return new AppError('conflict', 'role.name_taken', 'role name taken', {
      detail: 'A role with this name already exists (built-in names are taken too).',
      cause,
    });
  }

  async function create(
    actor: Actor,
    input: { name: string; description?: string | null; spec: CustomRoleSpec },
  ): Promise<RoleView> {
    authorize(actor, 'manage', 'roles');
    requireFreshAuth(actor, clock);
    const name = input.name.trim();
    if (isRole(name)) throw nameTaken();
    requireWithin(actor, resolveRole(input.spec));
    const now = clock.now().toISOString();
    const row = {
      id: newId(),
      tenant_id: actor.tenantId,
      name,
      description: input.description ?? null,
      definition: JSON.stringify(input.spec),
      created_at: now,
      updated_at: now,
      version: 1,
    };
    try {
      await db.transaction().execute(async (trx) => {
        await trx.insertInto('roles').values(row).execute();
        await deps.audit?.append(trx, {
          tenantId: actor.tenantId,
          type: 'role.created',
          ...auditActor(actor),
          target: { type: 'role', id: row.id },
        });
      });
    } catch (error) {
      if (isUniqueViolation(error)) throw nameTaken(error);
      throw error;
    }
    return toView(row);
  }

  async function update(
    actor: Actor,
    id: string,
    patch: { name?: string; description?: string | null; spec?: CustomRoleSpec },
  ): Promise<RoleView> {
    authorize(actor, 'manage', 'roles');
    requireFreshAuth(actor, clock);
    if (patch.name !== undefined && isRole(patch.name.trim())) throw nameTaken();
    try {
      return await db.transaction().execute(async (trx) => {
        const current = await find(trx, actor, id);
        // Neither the role as it was nor as it becomes may exceed the one changing it.
        requireWithin(actor, resolveRole(JSON.parse(current.definition) as CustomRoleSpec));
        if (patch.spec) requireWithin(actor, resolveRole(patch.spec));
        const changes = {
          ...(patch.name === undefined ? {} : { name: patch.name.trim() }),
          ...(patch.description === undefined ? {} : { description: patch.description }),
          ...(patch.spec === undefined ? {} : { definition: JSON.stringify(patch.spec) }),
          updated_at: clock.now().toISOString(),
          version: Number(current.version) + 1,
        };
        await trx
          .updateTable('roles')
          .set(changes)
          .where('tenant_id', '=', actor.tenantId)
          .where('id', '=', id)
          .execute();
        await deps.audit?.append(trx, {
          tenantId: actor.tenantId,
          type: 'role.updated',
          ...auditActor(actor),
          target: { type: 'role', id },
          fields: Object.keys(patch).filter((k) => patch[k as keyof typeof patch] !== undefined),
        });
        return toView({ ...current, ...changes });
      });
    } catch (error) {
      if (isUniqueViolation(error)) throw nameTaken(error);
      throw error;
    }
  }

  async function remove(actor: Actor, id: string): Promise<void> {
    authorize(actor, 'manage', 'roles');
    requireFreshAuth(actor, clock);
    await db.transaction().execute(async (trx) => {
      const current = await find(trx, actor, id);
      requireWithin(actor, resolveRole(JSON.parse(current.definition) as CustomRoleSpec));
      const holder = await trx
        .selectFrom('users')
        .select('id')
        .where('tenant_id', '=', actor.tenantId)
        .where('custom_role_id', '=', id)
        .executeTakeFirst();
      if (holder) {
        throw new AppError('conflict', 'role.in_use', 'role in use', {
          detail: 'Users still hold this role: give them another one first.',
        });
      }
      await trx
        .deleteFrom('roles')
        .where('tenant_id', '=', actor.tenantId)
        .where('id', '=', id)
        .execute();
      await deps.audit?.append(trx, {
        tenantId: actor.tenantId,
        type: 'role.deleted',
        ...auditActor(actor),
        target: { type: 'role', id },
      });
    });
  }

  /**
   * Gives `userId` the custom role `roleId` (null: back to their built-in role). Needs the
   * `users` capability, a user not above the caller, and a role within the caller's own.
   */
  async function assign(actor: Actor, userId: string, roleId: string | null) {
    authorize(actor, 'manage', 'users');
    requireFreshAuth(actor, clock);
    return db.transaction().execute(async (trx) => {
      const user = await trx
        .selectFrom('users')
        .select(['id', 'role'])
        .where('tenant_id', '=', actor.tenantId)
        .where('id', '=', userId)
        .executeTakeFirst();
      if (!user) {
        throw new AppError('not_found', 'resource.not_found', 'user not found', {
          detail: 'No user with this id.',
        });
      }
      if (actor.kind !== 'system' && actor.userId === userId) {
        throw new AppError('forbidden', 'user.cannot_change_self', 'self role change', {
          detail: 'You cannot change your own role; ask another administrator.',
        });
      }
      if (!mayGrantRole(actor, user.role)) {
        throw new AppError('forbidden', 'user.role_not_allowed', `cannot manage ${user.role}`, {
          detail: `You cannot change a user whose role ("${user.role}") is above your own.`,
        });
      }
      if (roleId !== null) {
        const role = await find(trx, actor, roleId);
        requireWithin(actor, resolveRole(JSON.parse(role.definition) as CustomRoleSpec));
      }
      await trx
        .updateTable('users')
        .set({ custom_role_id: roleId, updated_at: clock.now().toISOString() })
        .where('tenant_id', '=', actor.tenantId)
        .where('id', '=', userId)
        .execute();
      await deps.audit?.append(trx, {
        tenantId: actor.tenantId,
        type: 'user.updated',
        ...auditActor(actor),
        target: { type: 'user', id: userId },
        fields: ['customRoleId'],
        reason: roleId === null ? `role_${user.role}` : 'role_custom',
      });
      return { userId, role: user.role, customRoleId: roleId };
    });
  }

  return { list, get, create, update, remove, assign };
}

export type RoleService = ReturnType<typeof createRoleService>;
