import type { Kysely } from 'kysely';
import type { Clock } from '../../clock.ts';
import type { Database } from '../../db/schema.ts';
import { authorize, type Actor } from '../../core/policy/index.ts';
import { AppError } from '../../errors.ts';
import { newId } from '../../ids.ts';
import { auditActor } from '../audit/event.ts';
import type { AuditRecorder } from '../audit/service.ts';
import { isUniqueViolation } from '../records/repository.ts';

/**
 * Teams of users: the `team` record scope reaches records owned by anyone who shares a team
 * with the caller. Reading teams needs the `users` capability (read), changing them `manage`.
 * Membership is read by the record queries on every request, so a change counts at once.
 */
export interface TeamView {
  id: string;
  name: string;
  memberIds: string[];
  createdAt: string;
  updatedAt: string;
}

const notFound = (what: 'team' | 'user') =>
  new AppError('not_found', 'resource.not_found', `${what} not found`, {
    detail: `No ${what} with this id.`,
  });

export function createTeamService(deps: {
  db: Kysely<Database>;
  clock: Clock;
  audit?: AuditRecorder;
}) {
  const { db, clock } = deps;

  async function members(conn: Kysely<Database>, tenantId: string, teamIds: string[]) {
    if (teamIds.length === 0) return new Map<string, string[]>();
    const rows = await conn
      .selectFrom('team_members')
      .select(['team_id', 'user_id'])
      .where('tenant_id', '=', tenantId)
      .where('team_id', 'in', teamIds)
      .orderBy('user_id')
      .execute();
    const out = new Map<string, string[]>();
    for (const r of rows) out.set(r.team_id, [...(out.get(r.team_id) ?? []), r.user_id]);
    return out;
  }

  type Row = { id: string; name: string; created_at: string; updated_at: string };
  const view = (row: Row, ids: string[] = []): TeamView => ({
    id: row.id,
    name: row.name,
    memberIds: ids,
    createdAt: row.created_at,
    updatedAt: row.updated_at,
  });

  async function find(conn: Kysely<Database>, actor: Actor, id: string): Promise<Row> {
    const row = await conn
      .selectFrom('teams')
      .select(['id', 'name', 'created_at', 'updated_at'])
      .where('tenant_id', '=', actor.tenantId)
      .where('id', '=', id)
      .executeTakeFirst();
    if (!row) throw notFound('team');
    return row;
  }

  const nameTaken = (cause: unknown) =>
    new AppError('conflict', 'team.name_taken', 'team name taken', {
      detail: 'A team with this name already exists.',
      cause,
    });

  async function record(
    trx: Parameters<AuditRecorder['append']>[0],
    actor: Actor,
    type: string,
    teamId: string,
    reason: string | null = null,
  ) {
    await deps.audit?.append(trx, {
      tenantId: actor.tenantId,
      type,
      ...auditActor(actor),
      target: { type: 'team', id: teamId },
      reason,
    });
  }

  async function list(actor: Actor): Promise<TeamView[]> {
    authorize(actor, 'read', 'users');
    const rows = await db
      .selectFrom('teams')
      .select(['id', 'name', 'created_at', 'updated_at'])
      .where('tenant_id', '=', actor.tenantId)
      .orderBy('name')
      .execute();
    const ids = await members(
      db,
      actor.tenantId,
      rows.map((r) => r.id),
    );
    return rows.map((r) => view(r, ids.get(r.id)));
  }

  async function get(actor: Actor, id: string): Promise<TeamView> {
    authorize(actor, 'read', 'users');
    const row = await find(db, actor, id);
    return view(row, (await members(db, actor.tenantId, [id])).get(id));
  }

  async function create(actor: Actor, input: { name: string }): Promise<TeamView> {
    authorize(actor, 'manage', 'users');
    const now = clock.now().toISOString();
    const row = {
      id: newId(),
      tenant_id: actor.tenantId,
      name: input.name.trim(),
      created_at: now,
      updated_at: now,
    };
    try {
      await db.transaction().execute(async (trx) => {
        await trx.insertInto('teams').values(row).execute();
        await record(trx, actor, 'team.created', row.id);
      });
    } catch (error) {
      if (isUniqueViolation(error)) throw nameTaken(error);
      throw error;
    }
    return view(row);
  }

  async function rename(actor: Actor, id: string, name: string): Promise<TeamView> {
    authorize(actor, 'manage', 'users');
    try {
      return await db.transaction().execute(async (trx) => {
        const row = await find(trx, actor, id);
        const changes = { name: name.trim(), updated_at: clock.now().toISOString() };
        await trx
          .updateTable('teams')
          .set(changes)
          .where('tenant_id', '=', actor.tenantId)
          .where('id', '=', id)
          .execute();
        await record(trx, actor, 'team.updated', id);
        return view({ ...row, ...changes }, (await members(trx, actor.tenantId, [id])).get(id));
      });
    } catch (error) {
      if (isUniqueViolation(error)) throw nameTaken(error);
      throw error;
    }
  }

  async function remove(actor: Actor, id: string): Promise<void> {
    authorize(actor, 'manage', 'users');
    await db.transaction().execute(async (trx) => {
      await find(trx, actor, id);
      await trx
        .deleteFrom('team_members')
        .where('tenant_id', '=', actor.tenantId)
        .where('team_id', '=', id)
        .execute();
      await trx
        .deleteFrom('teams')
        .where('tenant_id', '=', actor.tenantId)
        .where('id', '=', id)
        .execute();
      await record(trx, actor, 'team.deleted', id);
    });
  }

  async function addMember(actor: Actor, id: string, userId: string): Promise<TeamView> {
    authorize(actor, 'manage', 'users');
    return db.transaction().execute(async (trx) => {
      const row = await find(trx, actor, id);
      const user = await trx
        .selectFrom('users')
        .select('id')
        .where('tenant_id', '=', actor.tenantId)
        .where('id', '=', userId)
        .executeTakeFirst();
      if (!user) throw notFound('user');
      const existing = await trx
        .selectFrom('team_members')
        .select('user_id')
        .where('team_id', '=', id)
        .where('user_id', '=', userId)
        .executeTakeFirst();
      if (!existing) {
        await trx
          .insertInto('team_members')
          .values({
            team_id: id,
            user_id: userId,
            tenant_id: actor.tenantId,
            created_at: clock.now().toISOString(),
          })
          .execute();
        await record(trx, actor, 'team.member_added', id, null);
      }
      return view(row, (await members(trx, actor.tenantId, [id])).get(id));
    });
  }

  async function removeMember(actor: Actor, id: string, userId: string): Promise<TeamView> {
    authorize(actor, 'manage', 'users');
    return db.transaction().execute(async (trx) => {
      const row = await find(trx, actor, id);
      const result = await trx
        .deleteFrom('team_members')
        .where('tenant_id', '=', actor.tenantId)
        .where('team_id', '=', id)
        .where('user_id', '=', userId)
        .executeTakeFirst();
      if (Number(result.numDeletedRows) === 0) throw notFound('user');
      await record(trx, actor, 'team.member_removed', id, null);
      return view(row, (await members(trx, actor.tenantId, [id])).get(id));
    });
  }

  return { list, get, create, rename, remove, addMember, removeMember };
}

export type TeamService = ReturnType<typeof createTeamService>;
