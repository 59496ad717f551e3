import type { Kysely } from 'kysely';
import type { Clock } from '../../clock.ts';
import type { Database, Role, UserRow, UserStatus } from '../../db/schema.ts';
import { authorize, mayGrantRole, requireFreshAuth, type Actor } from '../../core/policy/index.ts';
import { AppError } from '../../errors.ts';
import { newId } from '../../ids.ts';
import { hashPassword } from '../identity/passwords.ts';
import { isUniqueViolation } from '../records/repository.ts';
import { assertPasswordAcceptable } from '../identity/password-policy.ts';
import type { AuditSink } from '../auth/events.ts';
import type { LoginThrottle } from '../auth/throttle.ts';
import { auditActor } from '../audit/event.ts';
import type { AuditRecorder } from '../audit/service.ts';
import type { UserCrypto } from './crypto.ts';

export interface UserView {
  id: string;
  email: string;
  name: string;
  role: Role;
  status: UserStatus;
  createdAt: string;
  updatedAt: string;
  version: number;
}

const COLUMNS = [
  'id',
  'email',
  'name',
  'role',
  'status',
  'created_at',
  'updated_at',
  'version',
] as const;

function toView(row: Pick<UserRow, (typeof COLUMNS)[number]>): UserView {
  return {
    id: row.id,
    email: row.email,
    name: row.name,
    role: row.role,
    status: row.status,
    createdAt: row.created_at,
    updatedAt: row.updated_at,
    version: Number(row.version),
  };
}

const roleNotAllowed = (role: Role) =>
  new AppError('forbidden', 'user.role_not_allowed', `cannot grant ${role}`, {
    detail: `You cannot give or change the role "${role}": it is above your own.`,
  });

export function createUserService(deps: {
  db: Kysely<Database>;
  clock: Clock;
  throttle: LoginThrottle;
  audit: AuditSink;
  /** E-mail and name at rest. */
  users: UserCrypto;
  /** Records user.created / user.updated in the change's transaction. */
  log?: AuditRecorder;
}) {
  const { db, clock, users } = deps;

  async function list(actor: Actor): Promise<UserView[]> {
    authorize(actor, 'read', 'user');
    const rows = await db
      .selectFrom('users')
      .select(COLUMNS)
      .where('tenant_id', '=', actor.tenantId)
      .orderBy('created_at')
      .orderBy('id')
      .execute();
    return (await users.open(actor.tenantId, rows)).map(toView);
  }

  async function find(conn: Kysely<Database>, actor: Actor, id: string) {
    const row = await conn
      .selectFrom('users')
      .select(COLUMNS)
      .where('tenant_id', '=', actor.tenantId)
      .where('id', '=', id)
      .executeTakeFirst();
    if (!row) {
      throw new AppError('not_found', 'resource.not_found', 'user not found', {
        detail: 'No user with this id.',
      });
    }
    return users.openOne(actor.tenantId, row);
  }

  async function get(actor: Actor, id: string): Promise<UserView> {
    authorize(actor, 'read', 'user');
    return toView(await find(db, actor, id));
  }

  async function create(
    actor: Actor,
    input: { email: string; name: string; role: Role; password: string },
  ): Promise<UserView> {
    authorize(actor, 'manage', 'user');
    if (!mayGrantRole(actor, input.role)) throw roleNotAllowed(input.role);
    const tenant = await db
      .selectFrom('tenants')
      .select(['slug', 'name'])
      .where('id', '=', actor.tenantId)
      .executeTakeFirstOrThrow();
    await assertPasswordAcceptable(input.password, {
      email: input.email,
      name: input.name,
      tenantSlug: tenant.slug,
      tenantName: tenant.name,
    });
    const now = clock.now().toISOString();
    const id = newId();
    const clear = { email: input.email.trim(), name: input.name.trim() };
    const row = {
      id,
      tenant_id: actor.tenantId,
      ...(await users.seal(actor.tenantId, id, clear)),
      role: input.role,
      status: 'active' as const,
      password_hash: await hashPassword(input.password),
      created_at: now,
      updated_at: now,
      version: 1,
    };
    try {
      await db.transaction().execute(async (trx) => {
        await trx.insertInto('users').values(row).execute();
        await deps.log?.append(trx, {
          tenantId: actor.tenantId,
          type: 'user.created',
          ...auditActor(actor),
          target: { type: 'user', id: row.id },
          reason: `role_${row.role}`,
        });
      });
    } catch (error) {
      if (isUniqueViolation(error)) {
        throw new AppError('conflict', 'user.email_taken', 'email taken', {
          detail: 'A user with this e-mail already exists in the tenant.',
          cause: error,
        });
      }
      throw error;
    }
    return toView({ ...row, ...clear });
  }

  async function update(
    actor: Actor,
    id: string,
    patch: { name?: string; role?: Role; status?: UserStatus },
  ): Promise<UserView> {
    authorize(actor, 'manage', 'user');
    // A role change hands out (or takes away) power: only from a freshly proven session.
    if (patch.role !== undefined) requireFreshAuth(actor, clock);
    let revoked: { ids: string[]; reason: 'user_disabled' | 'role_changed' } | undefined;
    const view = await db.transaction().execute(async (trx) => {
      const current = await find(trx, actor, id);
      if (
        actor.kind !== 'system' &&
        actor.userId === id &&
        (patch.role !== undefined || patch.status !== undefined)
      ) {
        throw new AppError('forbidden', 'user.cannot_change_self', 'self role change', {
          detail: 'You cannot change your own role or status; ask another administrator.',
        });
      }
      // Nobody changes an account above their own rank, nor raises one above it.
      if (!mayGrantRole(actor, current.role)) throw roleNotAllowed(current.role);
      if (patch.role !== undefined && !mayGrantRole(actor, patch.role))
        throw roleNotAllowed(patch.role);
      const now = clock.now().toISOString();
      const changes = {
        ...patch,
        ...(patch.name === undefined ? {} : { name: patch.name.trim() }),
        updated_at: now,
        version: Number(current.version) + 1,
      };
      // E-mail and name are one sealed group: a new name seals both again.
      const sealed =
        changes.name === undefined
          ? {}
          : await users.seal(actor.tenantId, id, { email: current.email, name: changes.name });
      await trx
        .updateTable('users')
        .set({ ...changes, ...sealed })
        .where('tenant_id', '=', actor.tenantId)
        .where('id', '=', id)
        .execute();
      // A role change says which role it grants: privilege changes are what investigators seek.
      await deps.log?.append(trx, {
        tenantId: actor.tenantId,
        type: 'user.updated',
        ...auditActor(actor),
        target: { type: 'user', id },
        fields: Object.keys(patch).filter((k) => patch[k as keyof typeof patch] !== undefined),
        reason: patch.role === undefined ? null : `role_${patch.role}`,
      });
      if (patch.status === 'disabled') {
        // Disabling is final for credentials: keys stay revoked if the account is enabled again.
        await trx
          .updateTable('api_keys')
          .set({ revoked_at: now })
          .where('tenant_id', '=', actor.tenantId)
          .where('user_id', '=', id)
          .where('revoked_at', 'is', null)
          .execute();
      }
      if (
        patch.status === 'disabled' ||
        (patch.role !== undefined && patch.role !== current.role)
      ) {
        // A disabled account loses its sessions; a role change starts from a fresh sign-in.
        const sessions = await trx
          .updateTable('sessions')
          .set({ revoked_at: now })
          .where('user_id', '=', id)
          .where('revoked_at', 'is', null)
          .returning('id')
          .execute();
        revoked = {
          ids: sessions.map((s) => s.id),
          reason: patch.status === 'disabled' ? 'user_disabled' : 'role_changed',
        };
      }
      return toView({ ...current, ...changes });
    });
    // Recorded once the change is committed.
    for (const sessionId of revoked?.ids ?? []) {
      await deps.audit.record({
        type: 'auth.session.revoked',
        at: view.updatedAt,
        requestId: actor.request.requestId,
        ip: actor.request.ip,
        tenantId: actor.tenantId,
        userId: id,
        sessionId,
        reason: revoked!.reason,
        ...(actor.kind === 'system' ? {} : { by: actor.userId }),
      });
    }
    return view;
  }

  /** Lifts a sign-in lockout, temporary or permanent (owners and admins). */
  async function unlock(actor: Actor, id: string): Promise<UserView> {
    authorize(actor, 'manage', 'user');
    const row = await find(db, actor, id);
    if (!mayGrantRole(actor, row.role)) throw roleNotAllowed(row.role);
    await deps.throttle.unlock(row.id);
    await deps.audit.record({
      type: 'auth.account.unlocked',
      at: clock.now().toISOString(),
      requestId: actor.request.requestId,
      ip: actor.request.ip,
      tenantId: actor.tenantId,
      userId: row.id,
      by: actor.kind === 'system' ? `system:${actor.job}` : actor.userId,
    });
    return toView(row);
  }

  return { list, get, create, update, unlock };
}

export type UserService = ReturnType<typeof createUserService>;
