import type { Kysely } from 'kysely';
import type { Clock } from '../../clock.ts';
import type { ApiKeyRow, Database, Role } from '../../db/schema.ts';
import { authorize, mayGrantRole, requireFreshAuth, type Actor } from '../../core/policy/index.ts';
import { AppError } from '../../errors.ts';
import { newId } from '../../ids.ts';
import { hashToken } from '../identity/tokens.ts';
import { newApiKey } from './format.ts';
import { auditActor } from '../audit/event.ts';
import type { AuditRecorder } from '../audit/service.ts';

export interface ApiKeyView {
  id: string;
  name: string;
  prefix: string;
  role: Role;
  userId: string;
  createdAt: string;
  expiresAt: string | null;
  lastUsedAt: string | null;
  revokedAt: string | null;
}

const COLUMNS = [
  'id',
  'name',
  'prefix',
  'role',
  'user_id',
  'created_at',
  'expires_at',
  'last_used_at',
  'revoked_at',
] as const;

function toView(row: Pick<ApiKeyRow, (typeof COLUMNS)[number]>): ApiKeyView {
  return {
    id: row.id,
    name: row.name,
    prefix: `custos_${row.prefix}`,
    role: row.role,
    userId: row.user_id,
    createdAt: row.created_at,
    expiresAt: row.expires_at,
    lastUsedAt: row.last_used_at,
    revokedAt: row.revoked_at,
  };
}

export function createApiKeyService(deps: {
  db: Kysely<Database>;
  clock: Clock;
  /** Records api_key.created / api_key.revoked in the change's transaction. */
  audit?: AuditRecorder;
}) {
  const { db, clock } = deps;

  /** Creates a key; the secret is in the answer once and never stored. */
  async function create(
    actor: Actor,
    input: { name: string; role?: Role; expiresAt?: string },
  ): Promise<ApiKeyView & { key: string }> {
    authorize(actor, 'manage', 'api_key');
    if (actor.kind === 'system') throw new TypeError('system actors do not own API keys');
    requireFreshAuth(actor, clock);
    const role = input.role ?? actor.role;
    if (!mayGrantRole(actor, role)) {
      throw new AppError('forbidden', 'api_key.role_not_allowed', 'key above creator', {
        detail: 'An API key cannot have a role above its creator.',
      });
    }
    const now = clock.now();
    if (input.expiresAt !== undefined && Date.parse(input.expiresAt) <= now.getTime()) {
      throw new AppError('invalid', 'request.invalid', 'expiry in the past', {
        detail: 'body/expiresAt must be in the future',
        errors: [{ field: 'body/expiresAt', reason: 'must be in the future' }],
      });
    }
    const { key, prefix, secret } = newApiKey();
    const row = {
      id: newId(),
      tenant_id: actor.tenantId,
      user_id: actor.userId,
      name: input.name.trim(),
      prefix,
      secret_hash: hashToken(secret),
      role,
      created_at: now.toISOString(),
      expires_at: input.expiresAt === undefined ? null : new Date(input.expiresAt).toISOString(),
      last_used_at: null,
      revoked_at: null,
    };
    await db.transaction().execute(async (trx) => {
      await trx.insertInto('api_keys').values(row).execute();
      await deps.audit?.append(trx, {
        tenantId: actor.tenantId,
        type: 'api_key.created',
        ...auditActor(actor),
        target: { type: 'api_key', id: row.id },
        reason: `role_${role}`,
      });
    });
    return { ...toView(row), key };
  }

  async function list(actor: Actor): Promise<ApiKeyView[]> {
    authorize(actor, 'manage', 'api_key');
    const rows = await db
      .selectFrom('api_keys')
      .select(COLUMNS)
      .where('tenant_id', '=', actor.tenantId)
      .orderBy('created_at')
      .orderBy('id')
      .execute();
    return rows.map(toView);
  }

  async function revoke(actor: Actor, id: string): Promise<void> {
    authorize(actor, 'manage', 'api_key');
    const result = await db.transaction().execute(async (trx) => {
      const updated = await trx
        .updateTable('api_keys')
        .set({ revoked_at: clock.now().toISOString() })
        .where('tenant_id', '=', actor.tenantId)
        .where('id', '=', id)
        .where('revoked_at', 'is', null)
        .executeTakeFirst();
      if (Number(updated.numUpdatedRows) > 0) {
        await deps.audit?.append(trx, {
          tenantId: actor.tenantId,
          type: 'api_key.revoked',
          ...auditActor(actor),
          target: { type: 'api_key', id },
        });
      }
      return updated;
    });
    if (Number(result.numUpdatedRows) === 0) {
      const exists = await db
        .selectFrom('api_keys')
        .select('id')
        .where('tenant_id', '=', actor.tenantId)
        .where('id', '=', id)
        .executeTakeFirst();
      if (!exists) {
        throw new AppError('not_found', 'resource.not_found', 'api key not found', {
          detail: 'No API key with this id.',
        });
      }
    }
  }

  return { create, list, revoke };
}

export type ApiKeyService = ReturnType<typeof createApiKeyService>;
