import type { Command } from 'commander';
import { InvalidArgumentError } from 'commander';
import { systemClock } from '../clock.ts';
import { loadConfig } from '../config.ts';
import type { DatabaseHandle } from '../db/database.ts';
import { createAuditService } from '../modules/audit/service.ts';
import type { AuditRecorder } from '../modules/audit/service.ts';
import { assertKeysUsable, openKeys } from '../modules/keys/open.ts';
import { createProtectedValueCounter } from '../modules/records/protected-values.ts';
import { hostname } from 'node:os';
import { censusOfValues } from '../modules/records/reencrypt.ts';
import type { ValueCensus } from '../modules/records/reencrypt.ts';
import { createTenantReencryption, pendingValues } from '../modules/records/reencrypt-run.ts';
import type { TenantReencryption } from '../modules/records/reencrypt-run.ts';
import { decodeCensus, readReencryption } from '../modules/records/reencrypt-progress.ts';
import type { ReencryptionRow } from '../modules/records/reencrypt-progress.ts';
import { CLI_ACTOR, withKeyEvent } from '../modules/keys/events.ts';
import type { KeyEvent } from '../modules/keys/events.ts';
import type { OpenedKeys } from '../modules/keys/open.ts';
import { initHsmRootKey } from '../modules/keys/providers.ts';
import type { KeyService } from '../modules/keys/service.ts';
import type { TenantKeyStatus } from '../modules/keys/status.ts';
import { SEALED_SPECS } from '../sealed-specs.ts';
import { CliExit } from './main.ts';

/**
 * `custos keys ...`: status, rotation with the re-wrap and re-encryption jobs, retirement, HSM
 * key creation. Key changes are audited as the system actor `cli` (see keys/events.ts).
 */

/** Every sealed object (records and users): the data map decides which fields are encrypted. */
const RECORD_SPECS = SEALED_SPECS;

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

interface KeyContext {
  keys: OpenedKeys;
  tenants: Tenants;
  database: DatabaseHandle;
  audit: AuditRecorder;
  reencryption: TenantReencryption;
  /** Runs a key operation and records its audit events (system actor `cli`). */
  audited: <T>(op: () => Promise<{ result: T; events: readonly KeyEvent[] }>) => Promise<T>;
}

/** Opens the data database (tenant names, audit log) and the keys, checks the root key. */
function withKeys<T>(deps: CliDeps, fn: (ctx: KeyContext) => Promise<T>): Promise<T> {
  return deps.withDatabase(async (database) => {
    const config = loadConfig();
    const tenants = await tenantsOf(database);
    const keys = await openKeys(config, {
      clock: systemClock,
      // `keys retire` refuses a version that still seals stored values.
      protectedValues: createProtectedValueCounter(database.db, RECORD_SPECS),
    });
    const audit = createAuditService({
      db: database.db,
      dialect: database.dialect,
      clock: systemClock,
      dataDir: config.dataDir,
      checkpointEvery: config.auditCheckpointEvery,
      checkpointIntervalMs: config.auditCheckpointMs,
    });
    try {
      await assertKeysUsable(keys);
      return await fn({
        keys,
        tenants,
        database,
        audit,
        // The server's job runs the same code; the lease keeps the two off the same tenant.
        reencryption: createTenantReencryption({
          db: database.db,
          keys: keys.service,
          audit,
          clock: systemClock,
          specs: RECORD_SPECS,
          owner: `cli:${hostname()}:${process.pid}`,
          actor: CLI_ACTOR,
        }),
        audited: (op) => withKeyEvent({ db: database.db, audit }, op),
      });
    } finally {
      await keys.service.close();
    }
  });
}

const dataKey = (version: number) => ({ type: 'tenant_data_key' as const, id: `v${version}` });

/** The values a tenant's keys protect: as the re-encryption job last counted them, or now. */
async function valueCounts(
  database: DatabaseHandle,
  tenantId: string,
  scan: boolean,
): Promise<{ census: ValueCensus; run: ReencryptionRow | undefined; countedAt?: string }> {
  const found = await readReencryption(database.db, tenantId);
  const run = found !== undefined && found.target_version > 0 ? found : undefined;
  if (run !== undefined && !scan) {
    return { census: decodeCensus(run.census), run, countedAt: run.census_at };
  }
  // No run yet (or --scan): read every protected value of the tenant.
  return { census: await censusOfValues(database.db, RECORD_SPECS, tenantId), run };
}

function printRun(
  status: TenantKeyStatus,
  run: ReencryptionRow,
  census: ValueCensus,
  out: (l: string) => void,
) {
  const moved = run.reencrypted + run.encrypted_clear;
  const counts = `${run.rewrapped} subject keys re-wrapped, ${moved} values re-encrypted`;
  if (status.activeVersion !== undefined && run.target_version < status.activeVersion) {
    out(
      `  re-encryption to v${status.activeVersion}: pending (the server's job starts it, or "custos keys reencrypt")`,
    );
  } else if (run.state === 'done') {
    out(`  re-encryption to v${run.target_version}: done at ${run.finished_at ?? '?'}, ${counts}`);
  } else {
    const holder =
      run.lease_owner === null ? 'paused' : `by ${run.lease_owner} until ${run.lease_until ?? '?'}`;
    out(
      `  re-encryption to v${run.target_version}: running (${run.phase}), ${counts}, ${pendingValues(census, run.target_version)} values left, last batch ${run.last_batch_at ?? 'none yet'}, ${holder}`,
    );
  }
}

function printStatus(
  status: TenantKeyStatus,
  counts: Awaited<ReturnType<typeof valueCounts>>,
  tenants: Tenants,
  out: (l: string) => void,
) {
  const { census } = counts;
  const active = status.activeVersion === undefined ? 'none' : `v${status.activeVersion}`;
  const index = status.indexVersion === undefined ? 'none' : `v${status.indexVersion}`;
  out(
    `${tenants.label(status.tenantId)}: data key ${active} active, decrypts from v${status.minDecryptVersion}, index key ${index}, ${status.destroyedSubjectKeys} subject keys destroyed`,
  );
  for (const v of status.versions) {
    const values = census.byVersion.get(v.version) ?? 0;
    out(
      `  v${v.version}  ${v.state.padEnd(12)}  ${v.subjectKeys} subject keys  ${values} values  since ${v.createdAt}`,
    );
  }
  out(`  ${census.subjectValues} values under subject keys`);
  if (census.clear > 0) {
    out(
      `  ${census.clear} values stored in clear (written before encryption): run "custos keys reencrypt"`,
    );
  }
  if (census.damaged > 0) out(`  ${census.damaged} values damaged (not readable envelopes)`);
  if (counts.run !== undefined) printRun(status, counts.run, census, out);
  if (counts.countedAt !== undefined) {
    out(
      `  values as counted by the re-encryption job at ${counts.countedAt} ("--scan" counts them now)`,
    );
  }
}

/**
 * Re-wraps subject keys, then re-encrypts values, for one tenant (the run the server's job also
 * does, resumed where any process left it); prints progress. The run records
 * `keys.reencryption_started` and, once nothing is left under an older version or in clear,
 * `keys.reencrypted`.
 */
async function finishRotation(
  ctx: KeyContext,
  id: string,
  options: { batchSize: number; pauseMs: number; signal: AbortSignal },
  out: (line: string) => void,
): Promise<boolean> {
  const name = ctx.tenants.label(id);
  const service: KeyService = ctx.keys.service;
  const [status] = await service.status(id);
  if (status?.activeVersion === undefined) {
    // A tenant without keys yet: only values left in clear (if any) need them.
    const census = await censusOfValues(ctx.database.db, RECORD_SPECS, id);
    if (census.clear === 0) {
      out(`${name}: no keys and no values in clear: nothing to do`);
      return true;
    }
    await service.tenantDataKey(id);
  }
  const result = await ctx.reencryption.runTenant(id, {
    ...options,
    onRewrap: (p) => out(`${name}: re-wrapped ${p.rewrapped}, ${p.remaining} left`),
    onValues: (p) =>
      out(`${name}: re-encrypted ${p.reencrypted + p.encryptedClear} values, ${p.remaining} left`),
  });
  if (result.outcome === 'busy') {
    out(
      `${name}: another process is re-encrypting this tenant (${result.holder ?? '?'}, until ${result.until ?? '?'}); "custos keys status" shows its progress`,
    );
    return false;
  }
  if (result.outcome === 'up_to_date') return true;
  if (!result.rewrap.done) {
    out(
      `${name}: stopped with ${result.rewrap.remaining} subject keys left; run "custos keys reencrypt" to continue`,
    );
    return false;
  }
  out(`${name}: every subject key is wrapped by v${result.targetVersion}`);
  const values = result.values;
  if (values !== undefined && values.failed > 0) {
    out(`${name}: ${values.failed} records could not be read (damaged values or erased keys)`);
  }
  if (values !== undefined && values.duplicates > 0) {
    out(`${name}: ${values.duplicates} contacts in clear shared an e-mail address with another`);
  }
  if (result.outcome !== 'done') {
    out(
      `${name}: stopped with ${values?.remaining ?? '?'} values left; run "custos keys reencrypt" to continue`,
    );
    return false;
  }
  out(`${name}: every value is encrypted under v${result.targetVersion} or its subject's key`);
  return true;
}

export function registerKeyCommands(program: Command, deps: CliDeps): void {
  const { out } = deps;
  const keys = program.command('keys').description('field-encryption keys: status, rotation');

  keys
    .command('status')
    .description('key versions per tenant, and how many subject keys and values each protects')
    .option('--tenant <slug>', 'only this tenant')
    .option(
      '--scan',
      "count the values now (reads every protected value) instead of the re-encryption job's count",
    )
    .action(async (opts: { tenant?: string; scan?: boolean }) => {
      await withKeys(deps, async ({ keys: { service }, tenants, database }) => {
        const id = opts.tenant === undefined ? undefined : tenants.idOf(opts.tenant);
        const all = await service.status(id);
        if (all.length === 0) out('No tenant keys yet: they are created on first use.');
        for (const status of all) {
          const counts = await valueCounts(database, status.tenantId, opts.scan === true);
          printStatus(status, counts, tenants, out);
        }
      });
    });

  keys
    .command('rotate')
    .description(
      'new data key version for new writes, then re-wrap subject keys and re-encrypt values under it',
    )
    .option('--tenant <slug>', 'only this tenant (default: every tenant with keys)')
    .option('--no-wait', 'only rotate; run the jobs later with "custos keys reencrypt"')
    .option('--batch-size <n>', 'keys or records per batch', positiveInt('--batch-size'), 500)
    .option('--pause-ms <n>', 'pause between batches', positiveInt('--pause-ms'), 50)
    .action(
      async (opts: { tenant?: string; wait: boolean; batchSize: number; pauseMs: number }) => {
        await withKeys(deps, async (ctx) => {
          const { service } = ctx.keys;
          const ids =
            opts.tenant === undefined
              ? (await service.status()).map((s) => s.tenantId)
              : [ctx.tenants.idOf(opts.tenant)];
          // Ctrl-C stops after the current batch; "custos keys reencrypt" resumes.
          const stop = new AbortController();
          const onSignal = () => stop.abort();
          process.once('SIGINT', onSignal);
          try {
            for (const id of ids) {
              const name = ctx.tenants.label(id);
              const { version, previous } = await ctx.audited(async () => {
                const rotated = await service.rotateTenantKey(id);
                return {
                  result: rotated,
                  events: [
                    {
                      type: 'keys.rotated',
                      tenantId: id,
                      actor: CLI_ACTOR,
                      target: dataKey(rotated.version),
                      reason:
                        rotated.previous === undefined ? 'first' : `previous_v${rotated.previous}`,
                    },
                  ],
                };
              });
              const was = previous === undefined ? '' : ` (v${previous} now decrypt-only)`;
              out(`${name}: data key v${version} active${was}`);
              if (!opts.wait) continue;
              await finishRotation(
                ctx,
                id,
                { batchSize: opts.batchSize, pauseMs: opts.pauseMs, signal: stop.signal },
                out,
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
      await withKeys(deps, async ({ keys: { service }, tenants }) => {
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
    .command('reencrypt')
    .description(
      'finish a rotation (re-wrap subject keys, re-encrypt values under the active version) and encrypt values left in clear; resumable',
    )
    .option('--tenant <slug>', 'only this tenant (default: every tenant)')
    .option('--batch-size <n>', 'keys or records per batch', positiveInt('--batch-size'), 500)
    .option('--pause-ms <n>', 'pause between batches', positiveInt('--pause-ms'), 50)
    .action(async (opts: { tenant?: string; batchSize: number; pauseMs: number }) => {
      await withKeys(deps, async (ctx) => {
        // Every tenant, keys or not: one created before encryption may hold only clear values.
        const ids =
          opts.tenant === undefined
            ? (
                await ctx.database.db.selectFrom('tenants').select('id').orderBy('slug').execute()
              ).map((t) => t.id)
            : [ctx.tenants.idOf(opts.tenant)];
        const stop = new AbortController();
        const onSignal = () => stop.abort();
        process.once('SIGINT', onSignal);
        let complete = true;
        try {
          for (const id of ids) {
            const options = {
              batchSize: opts.batchSize,
              pauseMs: opts.pauseMs,
              signal: stop.signal,
            };
            complete = (await finishRotation(ctx, id, options, out)) && complete;
            if (stop.signal.aborted) break;
          }
        } finally {
          process.removeListener('SIGINT', onSignal);
        }
        if (!complete) throw new CliExit('re-encryption is not complete', 3);
      });
    });

  keys
    .command('retire')
    .description('destroy an old data key version that nothing depends on any more')
    .requiredOption('--tenant <slug>', 'the tenant')
    .requiredOption('--version <n>', 'the version to retire', positiveInt('--version'))
    .action(async (opts: { tenant: string; version: number }) => {
      await withKeys(deps, async ({ keys: { service }, tenants, audited }) => {
        const id = tenants.idOf(opts.tenant);
        const { minDecryptVersion } = await audited(async () => {
          const retired = await service.retireVersion(id, opts.version);
          return {
            result: retired,
            events: [
              {
                type: 'keys.version_retired',
                tenantId: id,
                actor: CLI_ACTOR,
                target: dataKey(opts.version),
                reason: `min_decrypt_v${retired.minDecryptVersion}`,
              },
            ],
          };
        });
        out(`${opts.tenant}: v${opts.version} retired; values decrypt from v${minDecryptVersion}`);
      });
    });

  keys
    .command('init-hsm')
    .description('create the non-extractable root key in the PKCS#11 token if absent')
    .action(async () => {
      const config = loadConfig();
      await deps.withDatabase(async (database) => {
        const audit = createAuditService({
          db: database.db,
          dialect: database.dialect,
          clock: systemClock,
          dataDir: config.dataDir,
        });
        const tenants = await database.db.selectFrom('tenants').select('id').execute();
        const label = config.pkcs11KeyLabel;
        // The root key wraps every tenant's keys: its creation is in every tenant's log.
        const { created, describe } = await withKeyEvent({ db: database.db, audit }, async () => {
          const result = await initHsmRootKey(config);
          return {
            result,
            events: result.created
              ? tenants.map((t) => ({
                  type: 'keys.root_key_created' as const,
                  tenantId: t.id,
                  actor: CLI_ACTOR,
                  target: { type: 'root_key' as const, id: `pkcs11:${label}` },
                }))
              : [],
          };
        });
        out(created ? `Created ${describe}.` : `${describe} already exists.`);
      });
    });
}
