import type { Command } from 'commander';
import { systemClock } from '../clock.ts';
import { loadConfig } from '../config.ts';
import { AuditIntegrityError, toHex } from '../core/audit/index.ts';
import type { DatabaseHandle } from '../db/database.ts';
import { createAuditService } from '../modules/audit/service.ts';
import {
  checkWitnessedHeads,
  readWitnessFile,
  witnessFromConfig,
} from '../modules/audit/witness.ts';
import type { SignedCheckpoint } from '../core/audit/index.ts';
import { createMailAlertNotifier } from '../modules/detection/mail-notifier.ts';
import { createMailer } from '../modules/mail/mailer.ts';
import { createAlertService } from '../modules/detection/service.ts';
import { createLazyKeyService } from '../modules/keys/open.ts';
import { createUserCrypto } from '../modules/users/crypto.ts';
import { CliExit } from './main.ts';
import { createServices } from '../compose.ts';
import { systemActor } from './import-export.ts';
import type { AuditSettingsView } from '../modules/audit/settings.ts';

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
    .option(
      '--witness <file>',
      'also check every tree head in this witness file (CUSTOS_AUDIT_WITNESS_FILE) is a prefix of the log',
    )
    .action(async (opts: { tenant?: string; witness?: string }) => {
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
          // Heads signed here reach the configured witnesses too (file and/or syslog).
          witness: witnessFromConfig(config),
        });
        let heads: SignedCheckpoint[] | undefined;
        if (opts.witness !== undefined) {
          try {
            heads = readWitnessFile(opts.witness);
          } catch (error) {
            if (error instanceof AuditIntegrityError) throw new CliExit(error.message, 2);
            throw new CliExit(`cannot read the witness file ${opts.witness}`, 1);
          }
        }
        // A failed verification is also a security alert of the tenant (rule
        // audit_verification_failed), once per failure point however often verify runs.
        // ...mailed to the tenant's recipients (CUSTOS_SMTP_URL), as the server would.
        const stderr = (fields: object, message: string) =>
          process.stderr.write(`${message} ${JSON.stringify(fields)}\n`);
        const mailer = createMailer({
          smtpUrl: config.smtpUrl,
          from: config.mailFrom,
          log: { info: () => undefined, warn: stderr, error: stderr },
        });
        // The keys open only if an alert is mailed (the recipients' addresses are sealed).
        const keys = createLazyKeyService(config, { clock: systemClock });
        const alerts = createAlertService({
          db: database.db,
          clock: systemClock,
          audit: service,
          notifier: createMailAlertNotifier({ mailer, publicUrl: config.publicUrl }),
          users: createUserCrypto({ keys }),
        });
        const failed: string[] = [];
        if (heads !== undefined && opts.tenant === undefined) {
          // A tenant the witness knows but the database does not: removed with its whole log.
          const known = new Set(tenants.map((t) => t.id));
          for (const missing of new Set(
            heads.map((h) => h.tenantId).filter((id) => !known.has(id)),
          )) {
            out(
              `tenant ${missing}: FAILED: WITNESS_AHEAD (witnessed, but absent from the database)`,
            );
            failed.push(`${missing} (WITNESS_AHEAD)`);
          }
        }
        for (const tenant of tenants) {
          try {
            let witnessed = '';
            const { summary } = await service.verify(tenant.id, {
              beforeSign: async (s) => {
                if (heads === undefined) return;
                const w = await checkWitnessedHeads(
                  database.db,
                  { tenantId: tenant.id, treeSize: s.treeSize, root: s.root },
                  heads,
                  [service.signingKey().publicKey],
                );
                witnessed = `, ${w.headsChecked} witnessed heads consistent`;
              },
            });
            out(
              `${tenant.slug}: ${summary.treeSize} events verified, root ${toHex(summary.root)}, ${summary.checkpointsVerified} checkpoints verified${witnessed}`,
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
        await mailer.settled();
        mailer.close();
        await keys.close();
        if (failed.length > 0) {
          throw new CliExit(`audit log verification failed: ${failed.join(', ')}`, 2);
        }
      });
    });

  audit
    .command('prune')
    .description(
      'remove audit events older than the retention (tenants on legal hold are skipped); leaf hashes stay so verification still works',
    )
    .option('--tenant <slug>', 'only this tenant')
    .action(async (opts: { tenant?: string }) => {
      await deps.withDatabase(async (database) => {
        const services = createServices({ config: loadConfig(), database, clock: systemClock });
        const slugs = new Map(
          (await database.db.selectFrom('tenants').select(['id', 'slug']).execute()).map((t) => [
            t.id,
            t.slug,
          ]),
        );
        const results =
          opts.tenant === undefined
            ? await services.auditRetention.pruneAll('cli')
            : [
                await services.auditRetention.pruneTenant(
                  (await systemActor(database, opts.tenant)).tenantId,
                  'cli',
                ),
              ];
        const failed: string[] = [];
        for (const r of results) {
          const slug = slugs.get(r.tenantId) ?? r.tenantId;
          if ('error' in r) {
            const e = r.error as { code?: string; message?: string };
            out(`${slug}: FAILED: ${e.code ?? ''} ${e.message ?? String(r.error)}`);
            failed.push(slug);
          } else if (r.outcome === 'held') {
            out(`${slug}: on legal hold, nothing pruned`);
          } else {
            out(
              `${slug}: ${r.removed} events pruned (older than ${r.cutoff}); events from leaf ${r.prunedSize} kept`,
            );
          }
        }
        if (failed.length > 0) throw new CliExit(`audit prune failed: ${failed.join(', ')}`, 2);
      });
    });

  audit
    .command('retention')
    .description("show or change a tenant's audit retention and legal hold (audited)")
    .requiredOption('--tenant <slug>', 'the tenant')
    .option('--days <n>', 'keep events this many days (30..36500)')
    .option('--default', 'use the server default (CUSTOS_AUDIT_RETENTION_DAYS)')
    .option('--hold <reference>', 'place a legal hold, giving a case reference')
    .option('--release <reference>', 'release the legal hold, giving a case reference')
    .action(
      async (opts: {
        tenant: string;
        days?: string;
        default?: boolean;
        hold?: string;
        release?: string;
      }) => {
        if (opts.days !== undefined && !/^[0-9]{1,6}$/.test(opts.days)) {
          throw new CliExit('--days must be a whole number of days', 1);
        }
        if (opts.days !== undefined && opts.default) {
          throw new CliExit('give --days or --default, not both', 1);
        }
        if (opts.hold !== undefined && opts.release !== undefined) {
          throw new CliExit('give --hold or --release, not both', 1);
        }
        await deps.withDatabase(async (database) => {
          const services = createServices({ config: loadConfig(), database, clock: systemClock });
          const actor = await systemActor(database, opts.tenant);
          const settings = services.auditSettings;
          let view: AuditSettingsView = await settings.get(actor);
          if (opts.days !== undefined || opts.default) {
            view = await settings.update(actor, {
              retentionDays: opts.default ? null : Number(opts.days),
            });
          }
          if (opts.hold !== undefined) view = await settings.placeHold(actor, opts.hold);
          if (opts.release !== undefined) view = await settings.releaseHold(actor, opts.release);
          out(
            `${opts.tenant}: retention ${view.effectiveRetentionDays} days${view.retentionDays === null ? ' (server default)' : ''}; legal hold ${view.legalHold.enabled ? `ON since ${view.legalHold.since} (${view.legalHold.reason})` : 'off'}`,
          );
        });
      },
    );
}
