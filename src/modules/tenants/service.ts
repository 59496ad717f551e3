import type { Kysely } from 'kysely';
import type { Clock } from '../../clock.ts';
import type { Database, TenantRow } from '../../db/schema.ts';
import { AppError } from '../../errors.ts';
import { newId } from '../../ids.ts';
import { hashPassword } from '../identity/passwords.ts';
import { checkPassword } from '../identity/password-policy.ts';
import { isPhoneRegion } from '../../core/crypto/normalize.ts';
import type { UserCrypto } from '../users/crypto.ts';

export interface SetupInput {
  slug: string;
  name: string;
  ownerEmail: string;
  ownerName: string;
  password: string;
  /** Region national phone numbers are read in (ISO 3166-1 alpha-2); absent: none. */
  phoneRegion?: string | undefined;
}

const SLUG = /^[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?$/;
const EMAIL = /^[^\s@]+@[^\s@]+\.[^\s@]+$/;

/**
 * Creates a tenant and its owner in one transaction (used by `custos setup`). The owner's e-mail
 * and name are sealed first, under the new tenant's data key (created in the key store then).
 */
export async function setupTenant(
  deps: { db: Kysely<Database>; clock: Clock; users: UserCrypto },
  input: SetupInput,
): Promise<{ tenant: TenantRow; ownerId: string }> {
  const problems: { field: string; reason: string }[] = [];
  if (!SLUG.test(input.slug)) {
    problems.push({ field: 'tenant', reason: 'lower-case letters, digits and dashes, 1-63 long' });
  }
  if (input.name.trim() === '') problems.push({ field: 'name', reason: 'must not be empty' });
  if (!EMAIL.test(input.ownerEmail))
    problems.push({ field: 'email', reason: 'not an e-mail address' });
  if (input.phoneRegion !== undefined && !isPhoneRegion(input.phoneRegion)) {
    problems.push({
      field: 'phone-region',
      reason: 'not an upper-case ISO 3166-1 alpha-2 region with phone numbering rules',
    });
  }
  const weak = await checkPassword(input.password, {
    email: input.ownerEmail,
    name: input.ownerName,
    tenantSlug: input.slug,
    tenantName: input.name,
  });
  const all = [...problems, ...weak.map((w) => ({ field: 'password', reason: w.reason }))];
  if (all.length > 0) {
    // Only the password wrong: the policy's own code, so clients can say what to change.
    const code = problems.length === 0 ? 'auth.password_rejected' : 'request.invalid';
    throw new AppError('invalid', code, 'invalid setup input', {
      detail: all.map((p) => `${p.field}: ${p.reason}`).join('; '),
      errors: all,
    });
  }
  const passwordHash = await hashPassword(input.password);
  const now = deps.clock.now().toISOString();
  // Checked again in the transaction; here so that a taken slug creates no keys.
  await assertSlugFree(deps.db, input.slug);
  const tenantId = newId();
  const ownerId = newId();
  const owner = await deps.users.seal(tenantId, ownerId, {
    email: input.ownerEmail.trim(),
    name: input.ownerName.trim() || input.ownerEmail.trim(),
  });
  return deps.db.transaction().execute(async (trx) => {
    await assertSlugFree(trx, input.slug);
    const tenant: TenantRow = {
      id: tenantId,
      slug: input.slug,
      name: input.name.trim(),
      created_at: now,
    };
    await trx.insertInto('tenants').values(tenant).execute();
    await trx
      .insertInto('users')
      .values({
        id: ownerId,
        tenant_id: tenant.id,
        ...owner,
        role: 'owner',
        status: 'active',
        password_hash: passwordHash,
        created_at: now,
        updated_at: now,
        version: 1,
      })
      .execute();
    if (input.phoneRegion !== undefined) {
      await trx
        .insertInto('tenant_settings')
        .values({ tenant_id: tenant.id, phone_region: input.phoneRegion, updated_at: now })
        .execute();
    }
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

async function assertSlugFree(db: Kysely<Database>, slug: string): Promise<void> {
  const existing = await db
    .selectFrom('tenants')
    .select('id')
    .where('slug', '=', slug)
    .executeTakeFirst();
  if (existing) {
    throw new AppError('conflict', 'tenant.slug_taken', 'tenant slug taken', {
      detail: `A tenant named "${slug}" already exists.`,
    });
  }
}
