import type { KeyStore, TenantKeyTable } from './store.ts';

/** One tenant's keys, as `custos keys status` shows them. */
export interface TenantKeyStatus {
  tenantId: string;
  /** The version new values are encrypted with (undefined before the first use). */
  activeVersion: number | undefined;
  minDecryptVersion: number;
  /** Data key versions, oldest first, with how many live subject keys each still wraps. */
  versions: {
    version: number;
    state: TenantKeyTable['state'];
    createdAt: string;
    subjectKeys: number;
  }[];
  /** The blind-index key version (never rotated), if created. */
  indexVersion: number | undefined;
  /** Subject keys destroyed by crypto-shredding (tombstones). */
  destroyedSubjectKeys: number;
}

export async function readKeyStatus(
  store: KeyStore,
  tenantId?: string,
): Promise<TenantKeyStatus[]> {
  let keys = store.db
    .selectFrom('tenant_keys')
    .select(['tenant_id', 'purpose', 'version', 'state', 'created_at'])
    .orderBy('tenant_id')
    .orderBy('version');
  let subjects = store.db
    .selectFrom('subject_keys')
    .select((eb) => [
      'tenant_id',
      'tenant_key_version',
      eb.fn.countAll().as('n'),
      eb.fn.count('destroyed_at').as('destroyed'),
    ])
    .groupBy(['tenant_id', 'tenant_key_version']);
  let settings = store.db.selectFrom('key_settings').select(['tenant_id', 'min_decrypt_version']);
  if (tenantId !== undefined) {
    keys = keys.where('tenant_id', '=', tenantId);
    subjects = subjects.where('tenant_id', '=', tenantId);
    settings = settings.where('tenant_id', '=', tenantId);
  }
  const [keyRows, subjectRows, settingRows] = await Promise.all([
    keys.execute(),
    subjects.execute(),
    settings.execute(),
  ]);
  const byTenant = new Map<string, TenantKeyStatus>();
  const entry = (id: string): TenantKeyStatus => {
    let status = byTenant.get(id);
    if (status === undefined) {
      status = {
        tenantId: id,
        activeVersion: undefined,
        minDecryptVersion: 1,
        versions: [],
        indexVersion: undefined,
        destroyedSubjectKeys: 0,
      };
      byTenant.set(id, status);
    }
    return status;
  };
  for (const row of keyRows) {
    const status = entry(row.tenant_id);
    if (row.purpose === 'index') {
      status.indexVersion = Math.max(status.indexVersion ?? 0, row.version);
      continue;
    }
    if (row.state === 'active') status.activeVersion = row.version;
    status.versions.push({
      version: row.version,
      state: row.state,
      createdAt: row.created_at,
      subjectKeys: 0,
    });
  }
  for (const row of subjectRows) {
    const status = entry(row.tenant_id);
    const destroyed = Number(row.destroyed);
    status.destroyedSubjectKeys += destroyed;
    const version = status.versions.find((v) => v.version === row.tenant_key_version);
    if (version !== undefined) version.subjectKeys += Number(row.n) - destroyed;
  }
  for (const row of settingRows) entry(row.tenant_id).minDecryptVersion = row.min_decrypt_version;
  return [...byTenant.values()];
}

/** A tenant whose data key was rotated and whose older version is not retired yet. */
export interface OpenRotation {
  tenantId: string;
  /** The active version, and since when it is (values are moved to it). */
  activeVersion: number;
  activeSince: string;
}

/**
 * Tenants with an active data key version and an older one still live (decrypt-only): where the
 * re-encryption job may have work. Reads only the tenant key rows (a few per tenant).
 */
export async function readOpenRotations(store: KeyStore): Promise<OpenRotation[]> {
  const rows = await store.db
    .selectFrom('tenant_keys')
    .select(['tenant_id', 'version', 'state', 'created_at'])
    .where('purpose', '=', 'data')
    .where('state', '!=', 'retired')
    .orderBy('tenant_id')
    .orderBy('version')
    .execute();
  const open = new Map<string, { active?: OpenRotation; older: boolean }>();
  for (const row of rows) {
    const entry = open.get(row.tenant_id) ?? { older: false };
    if (row.state === 'active') {
      entry.active = {
        tenantId: row.tenant_id,
        activeVersion: row.version,
        activeSince: row.created_at,
      };
    } else entry.older = true;
    open.set(row.tenant_id, entry);
  }
  return [...open.values()].flatMap((e) => (e.older && e.active ? [e.active] : []));
}
