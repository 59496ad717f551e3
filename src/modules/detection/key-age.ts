import type { Kysely } from 'kysely';
import type { Clock } from '../../clock.ts';
import type { Database } from '../../db/schema.ts';
import type { KeyService } from '../keys/service.ts';
import type { AlertService } from './service.ts';
import { readSettings } from './settings.ts';

const DAY_MS = 24 * 3_600_000;

/**
 * The `key_rotation_overdue` rule: raises an alert for each tenant whose active data key version
 * was created more than its `maxAgeDays` ago (key ages read through the key service's status, the
 * same as `custos keys status`). One alert per key version (dedup key `v<version>`): rotating
 * makes a new version, which starts a new period. Returns how many alerts it raised.
 */
export function createKeyRotationCheck(deps: {
  db: Kysely<Database>;
  clock: Clock;
  keys: Pick<KeyService, 'status'>;
  raise: AlertService['raise'];
}) {
  return async function check(): Promise<number> {
    const tenants = new Set(
      (await deps.db.selectFrom('tenants').select(['id']).execute()).map((t) => t.id),
    );
    const now = deps.clock.now().getTime();
    let raised = 0;
    let failure: Error | undefined;
    for (const status of await deps.keys.status()) {
      if (!tenants.has(status.tenantId) || status.activeVersion === undefined) continue;
      const active = status.versions.find((v) => v.version === status.activeVersion);
      if (active === undefined) continue;
      try {
        const rule = (await readSettings(deps.db, status.tenantId)).rules.key_rotation_overdue;
        const ageDays = Math.floor((now - Date.parse(active.createdAt)) / DAY_MS);
        if (!rule.enabled || ageDays < rule.maxAgeDays) continue;
        const alert = await deps.raise({
          tenantId: status.tenantId,
          rule: 'key_rotation_overdue',
          dedupKey: `v${active.version}`,
          details: { keyVersion: active.version, ageDays, maxAgeDays: rule.maxAgeDays },
        });
        if (alert !== null) raised++;
      } catch (error) {
        // One tenant's failure (broken settings) never spares the others the check.
        failure ??= error instanceof Error ? error : new Error(String(error));
      }
    }
    if (failure !== undefined) throw failure;
    return raised;
  };
}
