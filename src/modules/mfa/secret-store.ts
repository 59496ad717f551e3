import type { Kysely } from 'kysely';
import { Secret } from 'otpauth';
import {
  decryptFieldText,
  encryptField,
  parseEnvelope,
  type FieldAd,
} from '../../core/crypto/index.ts';
import type { Database } from '../../db/schema.ts';
import type { KeyService } from '../keys/service.ts';

const secretAd = (tenantId: string, userId: string): FieldAd => ({
  tenantId,
  object: 'user',
  field: 'totpSecret',
  recordId: userId,
});

/**
 * The `user_totp` row of a user and its secret, sealed under the tenant data key with the user
 * bound into the associated data (a secret copied to another user fails to decrypt).
 */
export function createTotpSecretStore(deps: {
  db: Kysely<Database>;
  keys: Pick<KeyService, 'tenantDataKey' | 'keyFor'>;
}) {
  const { db, keys } = deps;

  async function seal(tenantId: string, userId: string, secret: string): Promise<string> {
    const key = await keys.tenantDataKey(tenantId);
    return encryptField(key.key, key, secretAd(tenantId, userId), secret);
  }

  async function unseal(tenantId: string, userId: string, stored: string): Promise<Secret> {
    const { keyId, keyVersion } = parseEnvelope(stored);
    const key = await keys.keyFor(tenantId, { keyId, keyVersion });
    const base32 = decryptFieldText({ key, keyId, keyVersion }, secretAd(tenantId, userId), stored);
    return Secret.fromBase32(base32);
  }

  const enrolment = (tenantId: string, userId: string) =>
    db
      .selectFrom('user_totp')
      .select(['secret', 'status', 'last_step'])
      .where('user_id', '=', userId)
      .where('tenant_id', '=', tenantId)
      .executeTakeFirst();

  return { seal, unseal, enrolment };
}

export type TotpSecretStore = ReturnType<typeof createTotpSecretStore>;
