import type { Kysely } from 'kysely';
import type { Clock } from '../../clock.ts';
import type { Database, TenantRow } from '../../db/schema.ts';
import { AppError } from '../../errors.ts';
import { newId } from '../../ids.ts';
import { hashPassword, MAX_PASSWORD_LENGTH, MIN_PASSWORD_LENGTH } from '../identity/passwords.ts';
import { normalizeEmail } from '../identity/normalize.ts';

export interface SetupInput {
  slug: string;
  name: string;
  ownerEmail: string;
  ownerName: string;
  password: string;
}

const SLUG = /^[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?$/;
const EMAIL = /^[^\s@]+@[^\s@]+\.[^\s@]+$/;

export function validatePassword(password: string): string | undefined {
  if (password.length < MIN_PASSWORD_LENGTH) {
    return `must be at least ${MIN_PASSWORD_LENGTH} characters`;
  }
  if (password.length > MAX_PASSWORD_LENGTH)
    return `must be at most ${MAX_PASSWORD_LENGTH} characters`;
  return undefined;
}

/** Creates a tenant and its owner in one transaction (used by `custos setup`). */
export async function setupTenant(
  deps: { db: Kysely<Database>; clock: Clock },
  input: SetupInput,
): Promise<{ tenant: TenantRow; ownerId: string }> {
  const problems: { field: string; reason: string }[] = [];
  if (!SLUG.test(input.slug)) {
    problems.push({ field: 'tenant', reason: 'lower-case letters, digits and dashes, 1-63 long' });
  }
  if (input.name.trim() === '') problems.push({ field: 'name', reason: 'must not be empty' });
  if (!EMAIL.test(input.ownerEmail))
    problems.push({ field: 'email', reason: 'not an e-mail address' });
  const weak = validatePassword(input.password);
  if (weak) problems.push({ field: 'password', reason: weak });
  if (problems.length > 0) {
    throw new AppError('invalid', 'request.invalid', 'invalid setup input', {
      detail: problems.map((p) => `${p.field}: ${p.reason}`).join('; '),
      errors: problems,
    });
  }
  const passwordHash = await hashPassword(input.password);
  const now = deps.clock.now().toISOString();
  return deps.db.transaction().execute(async (trx) => {
    const existing = await trx
      .selectFrom('tenants')
      .select('id')
      .where('slug', '=', input.slug)
      .executeTakeFirst();
    if (existing) {
      throw new AppError('conflict', 'tenant.slug_taken', 'tenant slug taken', {
        detail: `A tenant named "${input.slug}" already exists.`,
      });
    }
    const tenant: TenantRow = {
      id: newId(),
      slug: input.slug,
      name: input.name.trim(),
      created_at: now,
    };
    await trx.insertInto('tenants').values(tenant).execute();
    const ownerId = newId();
    await trx
      .insertInto('users')
      .values({
        id: ownerId,
        tenant_id: tenant.id,
        email: input.ownerEmail.trim(),
        email_normalized: normalizeEmail(input.ownerEmail),
        name: input.ownerName.trim() || input.ownerEmail.trim(),
        role: 'owner',
        status: 'active',
        password_hash: passwordHash,
        created_at: now,
        updated_at: now,
        version: 1,
      })
      .execute();
    return { tenant, ownerId };
  });
}

export async function countTenants(db: Kysely<Database>): Promise<number> {
  const row = await db
    .selectFrom('tenants')
    .select((eb) => eb.fn.countAll<number | string>().as('n'))
    .executeTakeFirstOrThrow();
  return Number(row.n);
}
