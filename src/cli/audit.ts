import type { Command } from 'commander';
import { systemClock } from '../clock.ts';
import { loadConfig } from '../config.ts';
import { AuditIntegrityError, toHex } from '../core/audit/index.ts';
import type { DatabaseHandle } from '../db/database.ts';
import { createAuditService } from '../modules/audit/service.ts';
import { noopAlertNotifier } from '../modules/detection/notifier.ts';
import { createAlertService } from '../modules/detection/service.ts';
import { CliExit } from './main.ts';

interface CliDeps {
  out: (line: string) => void;
  withDatabase: <T>(fn: (database: DatabaseHandle) => Promise<T>) => Promise<T>;
}

/** `custos audit verify`: recomputes every tenant's log, names the first bad leaf. */
export function registerAuditCommands(program: Command, deps: CliDeps): void {
  const { out } = deps;
  const audit = program.command('audit').description('tamper-evident audit log');
  audit
    .command('verify')
    .description(
      'recompute the audit log from the database and check every signed checkpoint; sign a checkpoint of what verified',
    )
    .option('--tenant <slug>', 'only this tenant')
    .action(async (opts: { tenant?: string }) => {
      const config = loadConfig();
      await deps.withDatabase(async (database) => {
        let query = database.db.selectFrom('tenants').select(['id', 'slug']).orderBy('slug');
        if (opts.tenant !== undefined) query = query.where('slug', '=', opts.tenant);
        const tenants = await query.execute();
        if (tenants.length === 0) throw new CliExit(`no tenant "${opts.tenant ?? ''}"`, 1);
        const service = createAuditService({
          db: database.db,
          dialect: database.dialect,
          clock: systemClock,
          dataDir: config.dataDir,
        });
        // A failed verification is also a security alert of the tenant (rule
        // audit_verification_failed), once per failure point however often verify runs.
        const alerts = createAlertService({
          db: database.db,
          clock: systemClock,
          audit: service,
          notifier: noopAlertNotifier,
        });
        const failed: string[] = [];
        for (const tenant of tenants) {
          try {
            const { summary } = await service.verify(tenant.id);
            out(
              `${tenant.slug}: ${summary.treeSize} events verified, root ${toHex(summary.root)}, ${summary.checkpointsVerified} checkpoints verified`,
            );
          } catch (error) {
            if (!(error instanceof AuditIntegrityError)) throw error;
            const at = error.leafIndex === undefined ? '' : ` at leaf ${error.leafIndex}`;
            out(`${tenant.slug}: FAILED${at}: ${error.code} (${error.message})`);
            failed.push(`${tenant.slug}${at} (${error.code})`);
            await alerts
              .raise({
                tenantId: tenant.id,
                rule: 'audit_verification_failed',
                dedupKey: `${error.code}:${error.leafIndex ?? 'head'}`,
                details: { code: error.code, leafIndex: error.leafIndex ?? null },
              })
              .catch((raiseError: unknown) => {
                // A log broken past appending cannot take the alert's event: say so, go on.
                const why = raiseError instanceof Error ? raiseError.message : String(raiseError);
                out(`${tenant.slug}: alert not recorded: ${why}`);
              });
          }
        }
        if (failed.length > 0) {
          throw new CliExit(`audit log verification failed: ${failed.join(', ')}`, 2);
        }
      });
    });
}
