import type { Command } from 'commander';
import { InvalidArgumentError } from 'commander';
import { systemClock } from '../clock.ts';
import { loadConfig } from '../config.ts';
import type { DatabaseHandle } from '../db/database.ts';
import { assertKeysUsable, openKeys } from '../modules/keys/open.ts';
import { createProtectedValueCounter } from '../modules/records/protected-values.ts';
import { activitySpec } from '../modules/activities/spec.ts';
import { contactSpec } from '../modules/contacts/spec.ts';
import type { OpenedKeys } from '../modules/keys/open.ts';
import { initHsmRootKey } from '../modules/keys/providers.ts';
import type { TenantKeyStatus } from '../modules/keys/status.ts';
import { CliExit } from './main.ts';

/** `custos keys ...`: status, rotation with the re-wrap job, retirement, HSM key creation. */

interface CliDeps {
  out: (line: string) => void;
  withDatabase: <T>(fn: (database: DatabaseHandle) => Promise<T>) => Promise<T>;
}

const positiveInt = (what: string) => (value: string) => {
  if (!/^[1-9][0-9]*$/.test(value)) throw new InvalidArgumentError(`${what} must be >= 1`);
  return Number(value);
};

interface Tenants {
  idOf(slug: string): string;
  label(id: string): string;
}

async function tenantsOf(database: DatabaseHandle): Promise<Tenants> {
  const rows = await database.db.selectFrom('tenants').select(['id', 'slug']).execute();
  const bySlug = new Map(rows.map((r) => [r.slug, r.id]));
  const byId = new Map(rows.map((r) => [r.id, r.slug]));
  return {
    idOf(slug) {
      const id = bySlug.get(slug);
      if (id === undefined) throw new CliExit(`no tenant "${slug}"`, 1);
      return id;
    },
    label: (id) => byId.get(id) ?? `(deleted tenant ${id})`,
  };
}

/** Opens the data database (tenant names) and the keys, checks the root key, runs `fn`. */
function withKeys<T>(
  deps: CliDeps,
  fn: (keys: OpenedKeys, tenants: Tenants) => Promise<T>,
): Promise<T> {
  return deps.withDatabase(async (database) => {
    const tenants = await tenantsOf(database);
    const keys = await openKeys(loadConfig(), {
      clock: systemClock,
      // `keys retire` refuses a version that still seals stored values.
      protectedValues: createProtectedValueCounter(database.db, [contactSpec, activitySpec]),
    });
    try {
      await assertKeysUsable(keys);
      return await fn(keys, tenants);
    } finally {
      await keys.service.close();
    }
  });
}

function printStatus(status: TenantKeyStatus, tenants: Tenants, out: (l: string) => void) {
  const active = status.activeVersion === undefined ? 'none' : `v${status.activeVersion}`;
  const index = status.indexVersion === undefined ? 'none' : `v${status.indexVersion}`;
  out(
    `${tenants.label(status.tenantId)}: data key ${active} active, decrypts from v${status.minDecryptVersion}, index key ${index}, ${status.destroyedSubjectKeys} subject keys destroyed`,
  );
  for (const v of status.versions) {
    out(
      `  v${v.version}  ${v.state.padEnd(12)}  ${v.subjectKeys} subject keys  since ${v.createdAt}`,
    );
  }
}

export function registerKeyCommands(program: Command, deps: CliDeps): void {
  const { out } = deps;
  const keys = program.command('keys').description('field-encryption keys: status, rotation');

  keys
    .command('status')
    .description('key versions per tenant, and how many subject keys each still wraps')
    .option('--tenant <slug>', 'only this tenant')
    .action(async (opts: { tenant?: string }) => {
      await withKeys(deps, async ({ service }, tenants) => {
        const id = opts.tenant === undefined ? undefined : tenants.idOf(opts.tenant);
        const all = await service.status(id);
        if (all.length === 0) out('No tenant keys yet: they are created on first use.');
        for (const status of all) printStatus(status, tenants, out);
      });
    });

  keys
    .command('rotate')
    .description('new data key version for new writes, then re-wrap subject keys under it')
    .option('--tenant <slug>', 'only this tenant (default: every tenant with keys)')
    .option('--no-wait', 'only rotate; run the re-wrap later with "custos keys rotate" again')
    .option('--batch-size <n>', 'subject keys per batch', positiveInt('--batch-size'), 500)
    .option('--pause-ms <n>', 'pause between batches', positiveInt('--pause-ms'), 50)
    .action(
      async (opts: { tenant?: string; wait: boolean; batchSize: number; pauseMs: number }) => {
        await withKeys(deps, async ({ service }, tenants) => {
          const ids =
            opts.tenant === undefined
              ? (await service.status()).map((s) => s.tenantId)
              : [tenants.idOf(opts.tenant)];
          // Ctrl-C stops after the current batch; running the command again resumes.
          const stop = new AbortController();
          const onSignal = () => stop.abort();
          process.once('SIGINT', onSignal);
          try {
            for (const id of ids) {
              const name = tenants.label(id);
              const { version, previous } = await service.rotateTenantKey(id);
              const was = previous === undefined ? '' : ` (v${previous} now decrypt-only)`;
              out(`${name}: data key v${version} active${was}`);
              if (!opts.wait) continue;
              const result = await service.rewrapSubjectKeys(id, {
                batchSize: opts.batchSize,
                pauseMs: opts.pauseMs,
                signal: stop.signal,
                onProgress: (p) => out(`${name}: re-wrapped ${p.rewrapped}, ${p.remaining} left`),
              });
              out(
                result.done
                  ? `${name}: every subject key is wrapped by v${result.targetVersion}`
                  : `${name}: stopped with ${result.remaining} subject keys left; run the command again to continue`,
              );
              if (stop.signal.aborted) break;
            }
          } finally {
            process.removeListener('SIGINT', onSignal);
          }
        });
      },
    );

  keys
    .command('rewrap')
    .description('continue re-wrapping subject keys under the active version (after --no-wait)')
    .option('--tenant <slug>', 'only this tenant')
    .option('--batch-size <n>', 'subject keys per batch', positiveInt('--batch-size'), 500)
    .option('--pause-ms <n>', 'pause between batches', positiveInt('--pause-ms'), 50)
    .action(async (opts: { tenant?: string; batchSize: number; pauseMs: number }) => {
      await withKeys(deps, async ({ service }, tenants) => {
        const ids =
          opts.tenant === undefined
            ? (await service.status()).map((s) => s.tenantId)
            : [tenants.idOf(opts.tenant)];
        for (const id of ids) {
          const result = await service.rewrapSubjectKeys(id, {
            batchSize: opts.batchSize,
            pauseMs: opts.pauseMs,
          });
          out(`${tenants.label(id)}: re-wrapped ${result.rewrapped}, ${result.remaining} left`);
        }
      });
    });

  keys
    .command('retire')
    .description('destroy an old data key version that nothing depends on any more')
    .requiredOption('--tenant <slug>', 'the tenant')
    .requiredOption('--version <n>', 'the version to retire', positiveInt('--version'))
    .action(async (opts: { tenant: string; version: number }) => {
      await withKeys(deps, async ({ service }, tenants) => {
        const { minDecryptVersion } = await service.retireVersion(
          tenants.idOf(opts.tenant),
          opts.version,
        );
        out(`${opts.tenant}: v${opts.version} retired; values decrypt from v${minDecryptVersion}`);
      });
    });

  keys
    .command('init-hsm')
    .description('create the non-extractable root key in the PKCS#11 token if absent')
    .action(async () => {
      const { created, describe } = await initHsmRootKey(loadConfig());
      out(created ? `Created ${describe}.` : `${describe} already exists.`);
    });
}
