import type { Kysely } from 'kysely';
import type { Database } from '../../db/schema.ts';
import {
  authorize,
  decide,
  fieldAccess,
  isRecordResource,
  scopeOf,
  type Action,
  type Actor,
  type CustomRoleSpec,
  type FieldAccess,
  type Resource,
  type Role,
  type Scope,
} from '../../core/policy/index.ts';
import { AppError } from '../../errors.ts';
import { auditActor } from '../audit/event.ts';
import type { AuditRecorder } from '../audit/service.ts';

export interface Explanation {
  allowed: boolean;
  role: Role;
  customRole: { id: string; name: string } | null;
  rule: string;
  /** For record resources: which records the action reaches (null: none). */
  scope: Scope | null;
  field: (FieldAccess & { name: string }) | null;
}

/**
 * Why a user may or may not do something: the same decision function the services ask, run for
 * another user's current role. For the `roles` capability (admins, auditors); each answer is an
 * audit event (`permissions.explained`, the user as target), like other administrative reads.
 */
export function createPermissionService(deps: { db: Kysely<Database>; audit?: AuditRecorder }) {
  const { db } = deps;

  async function explain(
    actor: Actor,
    q: { userId: string; resource: Resource; action: Action; field?: string | undefined },
  ): Promise<Explanation> {
    authorize(actor, 'read', 'roles');
    const user = await db
      .selectFrom('users')
      .leftJoin('roles', (join) =>
        join
          .onRef('roles.id', '=', 'users.custom_role_id')
          .onRef('roles.tenant_id', '=', 'users.tenant_id'),
      )
      .select([
        'users.id',
        'users.role',
        'roles.id as role_id',
        'roles.name as role_name',
        'roles.version as role_version',
        'roles.definition as role_definition',
      ])
      .where('users.tenant_id', '=', actor.tenantId)
      .where('users.id', '=', q.userId)
      .executeTakeFirst();
    if (!user) {
      throw new AppError('not_found', 'resource.not_found', 'user not found', {
        detail: 'No user with this id.',
      });
    }
    const custom =
      user.role_id !== null && user.role_definition !== null
        ? {
            id: user.role_id,
            name: user.role_name ?? user.role_id,
            version: Number(user.role_version),
            definition: JSON.parse(user.role_definition) as CustomRoleSpec,
          }
        : undefined;
    const subject: Actor = {
      kind: 'user',
      tenantId: actor.tenantId,
      userId: user.id,
      role: user.role,
      ...(custom ? { customRole: custom } : {}),
      sessionId: 'explain',
      authenticatedAt: null,
      request: actor.request,
    };
    const decision = decide(subject, q.action, q.resource);
    const record = isRecordResource(q.resource) ? q.resource : undefined;
    if (q.field !== undefined && record === undefined) {
      throw new AppError('invalid', 'request.invalid', 'field of a capability', {
        detail: 'querystring/field applies to record resources only.',
        errors: [{ field: 'querystring/field', reason: 'applies to record resources only' }],
      });
    }
    const field =
      record && q.field !== undefined
        ? { name: q.field, ...fieldAccess(subject, record, q.field) }
        : null;
    let { allowed, rule } = decision;
    if (allowed && field) {
      // Reading a field needs it visible; writing it needs write.
      const writes = q.action === 'create' || q.action === 'update' || q.action === 'import';
      const fieldAllows = writes ? field.write : field.read !== 'none';
      if (!fieldAllows) ({ allowed, rule } = { allowed: false, rule: field.rule });
    }
    await db.transaction().execute(async (trx) => {
      await deps.audit?.append(trx, {
        tenantId: actor.tenantId,
        type: 'permissions.explained',
        ...auditActor(actor),
        target: { type: 'user', id: user.id },
        reason: `${q.action}_${q.resource}`,
        fields: q.field === undefined ? [] : [q.field],
      });
    });
    return {
      allowed,
      role: user.role,
      customRole: custom ? { id: custom.id, name: custom.name } : null,
      rule,
      scope: record ? scopeOf(subject, q.action, record) : null,
      field,
    };
  }

  return { explain };
}

export type PermissionService = ReturnType<typeof createPermissionService>;
